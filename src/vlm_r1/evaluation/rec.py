"""REC (visual grounding) metrics: Acc@0.5 and mean IoU over every sample of a split.

Per-row IoU is the ``iou`` reward's (:mod:`vlm_r1.rewards.rec`), so training and evaluation agree: an answer
scores only when it holds EXACTLY ONE valid box; no ``<answer>``, several boxes (hedging) or a malformed box is a
miss with IoU 0 and stays in the denominator. Boxes are ``[x1, y1, x2, y2]`` in pixels of the original image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..rewards.boxes import box_iou
from ..rewards.parsing import ParsedAnswer
from ..rewards.registry import get_reward

Box = Sequence[float]
HIT_IOU = 0.5  # a REC answer is a hit at IoU >= 0.5 (Acc@0.5), the metric and the iou_acc reward alike


def rec_scores(answers: Sequence[ParsedAnswer], solutions: Sequence[Any]) -> list[float]:
    """IoU of each parsed answer (boxes in original pixels) with its ground truth, by the ``iou`` reward."""
    scores = get_reward("iou")([a.text for a in answers], solution=list(solutions), answers=list(answers))
    return [float(v or 0.0) for v in scores]


def rec_ious(predictions: Sequence[Box | None], ground_truth: Sequence[Box]) -> np.ndarray:
    """(N,) IoU of each predicted box with its ground truth (0 for a missing prediction)."""
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} predictions for {len(ground_truth)} ground-truth boxes")
    out = np.zeros(len(ground_truth), dtype=np.float64)
    for i, (pred, gt) in enumerate(zip(predictions, ground_truth)):
        if pred is not None:
            out[i] = box_iou([pred], [gt])[0, 0]
    return out


def rec_summary(ious: Sequence[float], answered: Sequence[bool], thresholds: Sequence[float] = (HIT_IOU,)) -> dict:
    """``{"acc@0.5": …, "mean_iou": …, "answered": …, "n": N}`` from per-row IoUs (fractions in [0, 1])."""
    ious = np.asarray(ious, dtype=np.float64)
    n = len(ious)
    metrics: dict[str, float] = {f"acc@{t:g}": float((ious >= t).mean()) if n else 0.0 for t in thresholds}
    metrics["mean_iou"] = float(ious.mean()) if n else 0.0
    metrics["answered"] = float(np.mean(answered)) if n else 0.0
    metrics["n"] = n
    return metrics


def rec_metrics(
    predictions: Sequence[Box | None], ground_truth: Sequence[Box], thresholds: Sequence[float] = (HIT_IOU,)
) -> dict[str, float]:
    """Metrics of predicted boxes (or None) against ground-truth boxes; ``answered`` = fraction not None.

    >>> rec_metrics([[0, 0, 10, 10], None], [[0, 0, 10, 20], [0, 0, 5, 5]])
    {'acc@0.5': 0.5, 'mean_iou': 0.25, 'answered': 0.5, 'n': 2}
    """
    return rec_summary(rec_ious(predictions, ground_truth), [p is not None for p in predictions], thresholds)
