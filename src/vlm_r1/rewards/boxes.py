"""Box geometry and matching: the one place for IoU, GIoU, greedy and Hungarian matching.

Pixel convention: boxes are `[x1, y1, x2, y2]` in continuous pixel coordinates of the original
image; width = x2 - x1, area = (x2 - x1) * (y2 - y1) (no "+1"). A zero-area box has IoU 0 with
everything. The right / bottom edges of the intersection are computed as `x1 + w` exactly like
pycocotools' `bbIou`, so `box_iou` is bitwise equal to COCOeval's IoU (this matters for matches
that sit exactly on an IoU threshold).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


def is_four_numbers(value, finite: bool = False) -> bool:
    """True for a list or tuple of exactly four real numbers (bools excluded): the shape of `[x1, y1, x2, y2]`.

    With `finite`, NaN and infinities are refused too. Order and range are not checked here (see
    `vlm_r1.rewards.parsing.make_box` and the data loader's box checks)."""
    return (isinstance(value, (list, tuple)) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and (not finite or all(math.isfinite(v) for v in value)))


def as_boxes(boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """An (N, 4) float64 array from a sequence of boxes (N may be 0)."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def box_area(boxes) -> np.ndarray:
    """(N,) areas (x2 - x1) * (y2 - y1)."""
    b = as_boxes(boxes)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def _overlap(a: np.ndarray, b: np.ndarray):
    """Intersection areas (N, M), whether they are positive, and the areas of a and b."""
    wh_a, wh_b = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]
    # right/bottom edges as x1 + w, like pycocotools' bbIou
    side = (np.minimum((a[:, :2] + wh_a)[:, None], (b[:, :2] + wh_b)[None])
            - np.maximum(a[:, None, :2], b[None, :, :2]))  # (N, M, 2): overlap width, height
    positive = (side[..., 0] > 0) & (side[..., 1] > 0)
    inter = np.where(positive, side[..., 0] * side[..., 1], 0.0)
    return inter, positive, wh_a[:, 0] * wh_a[:, 1], wh_b[:, 0] * wh_b[:, 1]


def box_iou(a, b) -> np.ndarray:
    """(N, M) IoU matrix in [0, 1] between boxes `a` (N, 4) and `b` (M, 4).

    >>> float(box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2]])[0, 0])  # 2 / (4 + 4 - 2)
    0.3333333333333333
    """
    inter, positive, area_a, area_b = _overlap(as_boxes(a), as_boxes(b))
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=positive)


def generalized_box_iou(a, b) -> np.ndarray:
    """(N, M) GIoU in [-1, 1]: IoU - (C - U) / C with C the smallest enclosing box's area (GIoU = IoU when C is 0)."""
    a, b = as_boxes(a), as_boxes(b)
    inter, positive, area_a, area_b = _overlap(a, b)
    union = area_a[:, None] + area_b[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=positive)
    side = np.maximum(a[:, None, 2:], b[None, :, 2:]) - np.minimum(a[:, None, :2], b[None, :, :2])
    enclose = side[..., 0] * side[..., 1]
    penalty = np.divide(enclose - union, enclose, out=np.zeros_like(inter), where=enclose > 0)
    return np.clip(iou - penalty, -1.0, 1.0)


def greedy_match(ious: np.ndarray, order: Sequence[int], tau: float, allowed: np.ndarray | None = None) -> np.ndarray:
    """Greedy one-to-one matching of predictions (rows) to ground truths (columns).

    Predictions are visited in `order` (e.g. by confidence, highest first); each takes the unmatched,
    allowed ground truth with the highest IoU if that IoU is >= `tau` (ties: the lowest column).
    Returns (N,) ground-truth indices, -1 for an unmatched prediction.
    """
    ious = np.asarray(ious, dtype=np.float64)
    n, m = ious.shape
    match = np.full(n, -1, dtype=np.int64)
    if n == 0 or m == 0:
        return match
    ok = ious >= tau
    if allowed is not None:
        ok &= allowed
    free = np.ones(m, dtype=bool)
    for i in order:
        cand = ok[i] & free
        if cand.any():
            j = int(np.argmax(np.where(cand, ious[i], -1.0)))
            match[i] = j
            free[j] = False
    return match


def hungarian_match(ious: np.ndarray, tau: float, allowed: np.ndarray | None = None) -> np.ndarray:
    """One-to-one matching maximising the summed IoU over pairs with IoU >= `tau` (and `allowed`).

    Uses `scipy.optimize.linear_sum_assignment`. Returns (N,) ground-truth indices, -1 if unmatched.
    """
    ious = np.asarray(ious, dtype=np.float64)
    n, m = ious.shape
    match = np.full(n, -1, dtype=np.int64)
    if n == 0 or m == 0:
        return match
    gain = np.where(ious >= tau, ious, 0.0)
    if allowed is not None:
        gain = np.where(allowed, gain, 0.0)
    rows, cols = linear_sum_assignment(gain, maximize=True)
    keep = gain[rows, cols] > 0
    match[rows[keep]] = cols[keep]
    return match
