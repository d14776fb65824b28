"""Detection rewards of Visual-RFT: IoU reward and confidence reward over a list of labelled boxes.

Ground truth: `[{"bbox_2d": [x1, y1, x2, y2], "label": str}, ...]` in original-image pixels (may be `[]`).
Predictions: the detections of the last `<answer>` (`answers_from`: already in pixels). A prediction
matches a ground truth only when their labels agree (case/whitespace-insensitive); a prediction
without a label never matches. Malformed predictions (box None) never match but still count.

Empty cases, shared by every detection reward here and in `ovd.py`:
no `<answer>` -> 0; no prediction (the answer is "[]", "none", "" ...) and no ground truth -> 1;
exactly one side empty -> 0 (an answer with text but no box counts as no prediction only if it is
one of the "empty" answers of `parsing.is_empty_answer`, otherwise it scores 0).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .boxes import as_boxes, box_iou, greedy_match, hungarian_match
from .parsing import MAX_COORD, ParsedAnswer, is_empty_answer, load_solution, normalize_label, score_rows
from .registry import register_reward


def validate_detections(solution: Any) -> None:
    """Raise ValueError unless `solution` is a list of {"bbox_2d": [x1, y1, x2, y2], "label": str}."""
    if not isinstance(solution, list):
        raise ValueError("detection ground truth must be a list of {'bbox_2d', 'label'} objects, "
                         f"got {solution!r:.200}")
    for i, obj in enumerate(solution):
        if not isinstance(obj, dict) or "bbox_2d" not in obj or "label" not in obj:
            raise ValueError(f"detection ground truth item {i} must have 'bbox_2d' and 'label': {obj!r:.200}")
        box, label = obj["bbox_2d"], obj["label"]
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"detection ground truth item {i}: label must be a non-empty string, got {label!r:.100}")
        if (not isinstance(box, (list, tuple)) or len(box) != 4
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in box)):
            raise ValueError(f"detection ground truth item {i}: bbox_2d must be 4 numbers, got {box!r:.200}")
        if not all(abs(v) <= MAX_COORD for v in box):  # False for NaN and ±inf; exact for ints of any size
            raise ValueError(f"detection ground truth item {i}: non-finite or huge coordinate in {box!r:.200}")
        if not (box[2] > box[0] and box[3] > box[1]):
            raise ValueError(f"detection ground truth item {i}: need x2 > x1 and y2 > y1, got {box!r:.200}")


def gt_detections(solution: Any) -> tuple[np.ndarray, list[str]] | None:
    """(boxes (G, 4), normalised labels) of a detection ground truth, or None when it is unusable."""
    value = load_solution(solution)
    try:
        validate_detections(value)
    except ValueError:
        return None
    return as_boxes([o["bbox_2d"] for o in value]), [normalize_label(o["label"]) for o in value]


def empty_case(parsed: ParsedAnswer, n_gt: int) -> float | None:
    """The reward fixed by the empty rules above, or None when both sides are non-empty."""
    if parsed.answer is None:
        return 0.0
    n_pred = len(parsed.detections)
    if n_pred == 0:
        return 1.0 if (n_gt == 0 and is_empty_answer(parsed.answer)) else 0.0
    if n_gt == 0:
        return 0.0
    return None


def valid_predictions(parsed: ParsedAnswer, missing_score: float = 1.0):
    """(indices, boxes (P, 4), normalised labels, scores) of the predictions that have a box."""
    idx = [i for i, d in enumerate(parsed.detections) if d.box is not None]
    dets = [parsed.detections[i] for i in idx]
    boxes = as_boxes([d.box for d in dets])
    labels = [normalize_label(d.label) for d in dets]
    scores = np.array([missing_score if d.score is None else d.score for d in dets], dtype=np.float64)
    return idx, boxes, labels, scores


def match_predictions(parsed: ParsedAnswer, gt_boxes, gt_labels, tau: float, hungarian: bool = False):
    """Per-prediction (matched gt index or -1, IoU with it or 0); predictions visited by confidence, highest first."""
    n = len(parsed.detections)
    gt_index, gt_iou = np.full(n, -1), np.zeros(n)
    idx, boxes, labels, scores = valid_predictions(parsed)
    if not idx or len(gt_labels) == 0:
        return gt_index, gt_iou
    ious = box_iou(boxes, gt_boxes)
    codes = {label: i for i, label in enumerate(dict.fromkeys(gt_labels))}
    pred_codes = np.array([codes.get(p, -1) if p is not None else -1 for p in labels])
    allowed = pred_codes[:, None] == np.array([codes[g] for g in gt_labels])[None, :]
    if hungarian:
        match = hungarian_match(ious, tau, allowed)
    else:
        match = greedy_match(ious, np.argsort(-scores, kind="stable"), tau, allowed)
    for k, j in enumerate(match):
        if j >= 0:
            gt_index[idx[k]], gt_iou[idx[k]] = j, ious[k, j]
    return gt_index, gt_iou


def _detection_reward(score: Callable[[ParsedAnswer, np.ndarray, list], float], completions, solution, kwargs):
    def score_answer(parsed: ParsedAnswer, gt) -> float:
        fixed = empty_case(parsed, len(gt[1]))
        return fixed if fixed is not None else score(parsed, *gt)

    return score_rows(completions, solution, kwargs, gt_detections, score_answer)


def make_det_iou_reward(tau: float = 0.5, hungarian: bool = False, name: str | None = None):
    """Visual-RFT IoU reward: sum of matched IoUs / max(#gt, #pred), in [0, 1].

    Greedy (default): predictions by confidence (missing = 1.0, ties keep answer order), each takes the
    free same-label ground truth of highest IoU if IoU >= tau. `hungarian=True`: the one-to-one
    assignment that maximises the summed IoU of pairs with IoU >= tau (order-free).
    """
    def reward(completions, solution=None, **kwargs):
        def score(parsed, gt_boxes, gt_labels):
            _, matched_iou = match_predictions(parsed, gt_boxes, gt_labels, tau, hungarian)
            return matched_iou.sum() / max(len(gt_labels), len(parsed.detections))
        return _detection_reward(score, completions, solution, kwargs)

    default_name = f"det_iou{'_hungarian' if hungarian else ''}_{tau:g}".replace(".", "")
    reward.__name__ = reward.__qualname__ = name or default_name
    matching = "one-to-one assignment maximising the summed IoU" if hungarian else "greedy matching by confidence"
    reward.__doc__ = (f"Visual-RFT IoU reward ({matching}, same label, IoU >= {tau:g}): sum of matched IoUs / "
                      "max(#gt, #pred), in [0, 1].")
    return reward


det_iou = register_reward("det_iou", validator=validate_detections)(make_det_iou_reward(0.5, name="det_iou"))
det_iou_hungarian = register_reward("det_iou_hungarian", validator=validate_detections)(
    make_det_iou_reward(0.5, hungarian=True, name="det_iou_hungarian"))


@register_reward("det_confidence", validator=validate_detections)
def det_confidence(completions, solution=None, **kwargs) -> list[float | None]:
    """Visual-RFT confidence reward in [0, 1]: mean over predictions of c if matched (IoU >= 0.5) else 1 - c.

    c is the prediction's score clipped to [0, 1]. A prediction WITHOUT a score, or with a malformed
    box, contributes 0 (a confidence reward needs a confidence). Matching as in `det_iou`.
    Use it next to `det_iou`: on its own a wrong box with c = 0 earns 1.
    """
    def score(parsed, gt_boxes, gt_labels):
        gt_index, _ = match_predictions(parsed, gt_boxes, gt_labels, 0.5)
        total = 0.0
        for det, j in zip(parsed.detections, gt_index):
            if det.box is None or det.score is None:
                continue
            c = min(1.0, max(0.0, det.score))
            total += c if j >= 0 else 1.0 - c
        return total / len(parsed.detections)

    return _detection_reward(score, completions, solution, kwargs)
