"""Open-vocabulary detection rewards of VLM-R1: COCO mAP (or AP50) times a redundancy penalty.

reward = AP * min(1, L_gt / L_pred), where L_pred counts EVERY prediction in the answer: ones with
labels absent from the ground truth, without a label, or with a malformed box included. Those never
enter the AP (COCOeval only evaluates the ground-truth categories) but they lower the penalty factor
once L_pred > L_gt. No other penalty is added. Empty cases as in `detection.py`.

`coco_ap` is a vectorised numpy replica of pycocotools' COCOeval (iouType "bbox") on one image:
categories = the ground-truth labels; areaRng "all" = [0, inf) (COCO's ends at 1e10 px², and a ground truth
beyond it was ignored: a perfect answer on a huge box scored 0; ground truth here may reach 1e7 px a side);
iscrowd = 0; maxDets = 100 per category
(after COCOeval's stable sort by score, highest first; missing scores count as 1.0); IoU thresholds
.50:.05:.95; 101 recall points; a detection takes the free ground truth of highest IoU (ties: the
later one), non-ignored ground truths first; precision made monotone; categories without a
non-ignored ground truth give -1 and are left out of the mean, exactly as `summarize()` does.
It equals COCOeval's stats[0] / stats[1] (run with that area range, `pycocotools_ap`) to 1e-9
(tests/test_rewards_ovd.py, benchmarks/rewards.py).
"""
from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np

from .boxes import as_boxes, box_area, box_iou
from .detection import _detection_reward, valid_predictions, validate_detections
from .registry import register_reward

IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)  # as COCOeval.Params
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = 100
AREA_ALL = (0.0, float("inf"))
_THR_INDEX = np.arange(len(IOU_THRS))[None, :, None]


def _match(ious: np.ndarray, gt_ignore: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.evaluateImg's greedy matching at all IoU thresholds at once.

    Rows of `ious` are detections in score order (-1 where labels differ). Each detection takes, per
    threshold, the free ground truth of highest IoU >= threshold (ties: the LAST one, as COCOeval),
    preferring non-ignored ground truths. Columns are reversed so that "last" becomes numpy's
    "first" argmax. Detections that share no candidate ground truth with another detection cannot
    be affected by the order and are matched in one vectorised step; only the others are visited
    one by one. Returns (D, T) "matched" and (D, T) "matched an ignored ground truth" flags.
    """
    n_det, n_gt = ious.shape
    n_thr = len(IOU_THRS)
    matched = np.zeros((n_det, n_thr), dtype=bool)
    matched_ignored = np.zeros((n_det, n_thr), dtype=bool)
    if n_det == 0 or n_gt == 0:
        return matched, matched_ignored
    ious_r, ignore_r = ious[:, ::-1], gt_ignore[::-1]
    cand = np.where(ious_r[:, None, :] >= IOU_THRS[None, :, None], ious_r[:, None, :], -1.0)  # (D, T, G)
    loose = ious_r >= IOU_THRS[0]  # (D, G) candidates at the loosest threshold
    contested = (loose & (loose.sum(axis=0) > 1)).any(axis=1)

    alone = np.flatnonzero(~contested & loose.any(axis=1))
    values = cand[alone]  # (A, T, G)
    if gt_ignore.any():  # a regular ground truth wins over any ignored one
        regular = np.where(ignore_r, -1.0, values)
        values = np.where(regular.max(axis=2, keepdims=True) >= 0, regular, values)
    best = values.argmax(axis=2)  # (A, T)
    hit = values.max(axis=2) >= 0
    matched[alone] = hit
    matched_ignored[alone] = hit & ignore_r[best]

    free = np.ones((n_thr, n_gt), dtype=bool)
    rows, cols = np.arange(n_thr), np.arange(n_gt)
    for d in np.flatnonzero(contested).tolist():
        values = np.where(free, cand[d], -1.0)
        if gt_ignore.any():
            regular = np.where(ignore_r, -1.0, values)
            values = np.where(regular.max(axis=1, keepdims=True) >= 0, regular, values)
        best = values.argmax(axis=1)
        hit = values[rows, best] >= 0
        free &= (cols != best[:, None]) | ~hit[:, None]
        matched[d] = hit
        matched_ignored[d] = hit & ignore_r[best]
    return matched, matched_ignored


def coco_ap(gt_boxes, gt_labels: Sequence, dt_boxes, dt_labels: Sequence,
            dt_scores: Sequence[float]) -> tuple[float, float]:
    """(AP@[.5:.95], AP@.5) of one image exactly as COCOeval's stats[0], stats[1]; (-1, -1) if nothing is evaluable.

    Boxes are [x1, y1, x2, y2] pixels; labels are any hashable; detections whose label has no ground
    truth are not evaluated (COCOeval's catIds = ground-truth categories).
    """
    gt, dt = as_boxes(gt_boxes), as_boxes(dt_boxes)
    cats = sorted(set(gt_labels), key=repr)
    if not cats:
        return -1.0, -1.0
    n_cat = len(cats)
    cat_of = {c: k for k, c in enumerate(cats)}
    gt_cat = np.array([cat_of[label] for label in gt_labels], dtype=np.int64)
    dt_cat = np.array([cat_of.get(label, -1) for label in dt_labels], dtype=np.int64).reshape(-1)
    scores = np.asarray(dt_scores, dtype=np.float64).reshape(-1)

    # COCOeval: per category, stable sort by score (highest first) and keep the first MAX_DETS
    evaluated = np.flatnonzero(dt_cat >= 0)
    order = evaluated[np.argsort(-scores[evaluated], kind="mergesort")]
    onehot = dt_cat[order][:, None] == np.arange(n_cat)[None, :]
    rank = np.cumsum(onehot, axis=0)[onehot] - 1  # position of each detection within its category
    keep = rank < MAX_DETS
    dt, dt_cat, rank = dt[order[keep]], dt_cat[order[keep]], rank[keep]

    if len(dt) == 0:  # nothing to match: AP is 0 wherever a category has a (non-ignored) ground truth
        gt_area = box_area(gt)
        evaluable = bool(np.any((gt_area >= AREA_ALL[0]) & (gt_area <= AREA_ALL[1])))
        return (0.0, 0.0) if evaluable else (-1.0, -1.0)
    area = box_area(np.concatenate([gt, dt]))
    outside_all = (area < AREA_ALL[0]) | (area > AREA_ALL[1])
    gt_ignore, outside = outside_all[:len(gt)], outside_all[len(gt):]
    ious = np.where(dt_cat[:, None] == gt_cat[None, :], box_iou(dt, gt), -1.0)
    matched, matched_ignored = _match(ious, gt_ignore)  # (D, T)
    counted = ~(matched_ignored | (~matched & outside[:, None]))

    # COCOeval.accumulate, all categories at once: (K, Dmax, T) arrays padded after each category's detections
    width = int(rank.max()) + 1 if rank.size else 1
    tps = np.zeros((n_cat, width, len(IOU_THRS)), dtype=bool)
    fps = np.zeros_like(tps)
    real = np.zeros((n_cat, width), dtype=bool)
    tps[dt_cat, rank] = matched & counted
    fps[dt_cat, rank] = ~matched & counted
    real[dt_cat, rank] = True
    n_dets = real.sum(axis=1)
    n_pos = np.bincount(gt_cat[~gt_ignore], minlength=n_cat)
    tp = np.cumsum(tps, axis=1).astype(dtype=float)
    fp = np.cumsum(fps, axis=1).astype(dtype=float)
    rc = tp / np.maximum(n_pos, 1)[:, None, None]  # categories with n_pos = 0 are set to -1 below
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.where(real[:, :, None], pr, 0.0)
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision made monotone, right to left
    rc = np.where(real[:, :, None], rc, np.inf)
    inds = np.count_nonzero(rc[:, :, :, None] < REC_THRS, axis=1)  # (K, T, R): np.searchsorted(rc, REC_THRS, "left")
    q = pr.transpose(0, 2, 1)[np.arange(n_cat)[:, None, None], _THR_INDEX, np.minimum(inds, width - 1)]
    precision = np.where(inds < n_dets[:, None, None], q, 0.0)
    precision[n_pos == 0] = -1.0  # a category with no (non-ignored) ground truth is left out
    precision = precision.transpose(1, 2, 0)  # (T, R, K), COCOeval's order, so the mean sums in the same order
    valid, valid50 = precision[precision > -1], precision[0][precision[0] > -1]
    return (float(np.mean(valid)) if valid.size else -1.0, float(np.mean(valid50)) if valid50.size else -1.0)


def pycocotools_ap(gt_boxes, gt_labels, dt_boxes, dt_labels, dt_scores) -> tuple[float, float]:
    """Reference for tests and benchmarks: build COCO objects and run COCOeval; returns (stats[0], stats[1])."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cats = sorted(set(gt_labels), key=repr)
    cat_id = {c: i + 1 for i, c in enumerate(cats)}
    for label in dt_labels:  # predictions with unknown labels get their own (never evaluated) ids
        cat_id.setdefault(label, len(cat_id) + 1)

    def xywh(b):
        x1, y1, x2, y2 = (float(v) for v in b)
        return [x1, y1, x2 - x1, y2 - y1]

    image = {"id": 1, "width": 1000, "height": 1000}
    categories = [{"id": cat_id[c], "name": str(c)} for c in cats]
    anns = []
    for i, (b, label) in enumerate(zip(gt_boxes, gt_labels)):
        bb = xywh(b)
        anns.append({"id": i + 1, "image_id": 1, "category_id": cat_id[label], "bbox": bb,
                     "area": bb[2] * bb[3], "iscrowd": 0})
    dts = [{"image_id": 1, "category_id": cat_id[label], "bbox": xywh(b), "score": float(s)}
           for b, label, s in zip(dt_boxes, dt_labels, dt_scores)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": [image], "categories": categories, "annotations": anns}
        coco_gt.createIndex()
        if dts:
            coco_dt = coco_gt.loadRes(dts)
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": [image], "categories": categories, "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.imgIds = [1]
        ev.params.areaRng[0] = list(AREA_ALL)  # COCO's "all" ends at 1e10 px²; ground truth may be larger here
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def _ovd_score(which: int):
    def score(parsed, gt_boxes, gt_labels):
        _, boxes, labels, scores = valid_predictions(parsed, missing_score=1.0)
        ap = coco_ap(gt_boxes, gt_labels, boxes, labels, scores)[which]
        return max(ap, 0.0) * min(1.0, len(gt_labels) / len(parsed.detections))
    return score


@register_reward("det_map", validator=validate_detections)
def det_map(completions, solution=None, **kwargs) -> list[float | None]:
    """VLM-R1 OVD reward in [0, 1]: COCO AP@[.5:.95] (single image) * min(1, L_gt / L_pred)."""
    return _detection_reward(_ovd_score(0), completions, solution, kwargs)


@register_reward("det_ap50", validator=validate_detections)
def det_ap50(completions, solution=None, **kwargs) -> list[float | None]:
    """Like `det_map` with AP@0.5 instead of AP@[.5:.95], in [0, 1]."""
    return _detection_reward(_ovd_score(1), completions, solution, kwargs)
