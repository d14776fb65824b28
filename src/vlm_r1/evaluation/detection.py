"""COCO box mAP through pycocotools: the project's one detection evaluator (VLM answers and GRQO both call it).

Standard protocol: COCOeval ``bbox`` with its default parameters (IoU 0.50:0.95 in steps of 0.05, up to 100
detections per image, all / small / medium / large areas); mAP averages over the categories that have ground truth
("every category queried": each category in the ground truth counts once, whatever question asked for it).

Inputs are plain per-image lists, in pixels of the original image, ``[x1, y1, x2, y2]``:

* ground truth: :class:`ImageAnnotations` (boxes, labels, optional width / height) — an image may have no boxes;
* predictions: :class:`ScoredBoxes` (boxes, labels, scores) for the same images, in the same order.

Labels are compared after :func:`vlm_r1.rewards.parsing.normalize_label` (case and spacing). A prediction whose
label is not a ground-truth category (or has no label) matches nothing: it cannot be a true positive, and COCOeval
ignores categories without ground truth. With ``class_agnostic=True`` every label becomes ``"object"``.
A missing score counts as 1.0; COCOeval's stable sort then keeps the model's own order among equal scores within an
image. Across images it breaks ties by image id: :func:`coco_metrics` numbers the images in an order of their
content (not the rows' order), so the same rows in another order score the same.

For VLM answers, one evaluation "image" is one (image, question) row; :func:`detections_from_answer` turns a parsed
answer into :class:`ScoredBoxes`.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..rewards.parsing import ParsedAnswer, normalize_label

COCO_STAT_NAMES = (
    "mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
    "AR1", "AR10", "AR100", "AR_small", "AR_medium", "AR_large",
)  # fmt: skip
AGNOSTIC_LABEL = "object"


@dataclass(frozen=True)
class ImageAnnotations:
    """Ground truth of one image: boxes ``[x1, y1, x2, y2]`` (pixels) and one label per box."""

    boxes: Sequence[Sequence[float]]
    labels: Sequence[str]
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ScoredBoxes:
    """Predictions for one image: boxes (pixels), labels (None: unlabelled), scores (None: 1.0)."""

    boxes: Sequence[Sequence[float]] = ()
    labels: Sequence[str | None] = ()
    scores: Sequence[float | None] = ()


def detections_from_answer(answer: ParsedAnswer) -> ScoredBoxes:
    """The valid boxes of a parsed answer (boxes already in original pixels) with their labels and scores."""
    dets = [d for d in answer.detections if d.box is not None]
    return ScoredBoxes([d.box for d in dets], [d.label for d in dets], [d.score for d in dets])


def _label(label, class_agnostic: bool) -> str | None:
    return AGNOSTIC_LABEL if class_agnostic else normalize_label(label)


def to_coco(
    ground_truth: Sequence[ImageAnnotations],
    predictions: Sequence[ScoredBoxes],
    class_agnostic: bool = False,
) -> tuple[dict, list[dict]]:
    """COCO-format ``(dataset, results)``: image ids 1..N in order, category ids 1..C in order of first appearance
    in the ground truth. Predictions with a label outside the categories are dropped (see the module docstring)."""
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(predictions)} prediction lists for {len(ground_truth)} images")
    categories: dict[str, int] = {}
    images, annotations = [], []
    for image_id, gt in enumerate(ground_truth, start=1):
        if len(gt.boxes) != len(gt.labels):
            raise ValueError(f"image {image_id}: {len(gt.boxes)} boxes but {len(gt.labels)} labels")
        width = gt.width if gt.width is not None else max([b[2] for b in gt.boxes] + [1])
        height = gt.height if gt.height is not None else max([b[3] for b in gt.boxes] + [1])
        images.append({"id": image_id, "width": width, "height": height})
        for box, label in zip(gt.boxes, gt.labels):
            name = _label(label, class_agnostic)
            if name is None:
                raise ValueError(f"image {image_id}: ground-truth label {label!r} is not a class name")
            cat = categories.setdefault(name, len(categories) + 1)
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })  # fmt: skip
    results = []
    for image_id, pred in enumerate(predictions, start=1):
        scores = list(pred.scores) if len(pred.scores) else [None] * len(pred.boxes)
        labels = list(pred.labels) if len(pred.labels) else [None] * len(pred.boxes)
        if not len(scores) == len(labels) == len(pred.boxes):
            raise ValueError(f"image {image_id}: {len(pred.boxes)} predicted boxes but {len(labels)} labels and "
                             f"{len(scores)} scores (give one of each per box, or none)")
        if any(score is not None and not math.isfinite(float(score)) for score in scores):
            raise ValueError(f"image {image_id}: a predicted score is NaN or infinite")
        for box, label, score in zip(pred.boxes, labels, scores):
            cat = categories.get(_label(label, class_agnostic))
            if cat is None:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append({
                "image_id": image_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": 1.0 if score is None else float(score),
            })  # fmt: skip
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": name} for name, i in categories.items()],
    }
    return dataset, results


def coco_metrics_from_dicts(dataset: dict, results: list[dict]) -> dict[str, float]:
    """Run COCOeval (bbox, default parameters) on a COCO dataset dict and a results list.

    Returns the 12 summary numbers (``COCO_STAT_NAMES``); COCOeval's -1 (undefined: no ground truth in that area
    range) is kept, with results or without (no results: 0.0 where there is ground truth, nothing was found).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not dataset.get("annotations"):
        return dict.fromkeys(COCO_STAT_NAMES, -1.0)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        if results:
            dt = gt.loadRes(results)
        else:  # loadRes refuses an empty list: an empty detection set instead
            dt = COCO()
            dt.dataset = {"images": dataset["images"], "categories": dataset["categories"], "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(COCO_STAT_NAMES, ev.stats)}


def _in_canonical_order(ground_truth, predictions):
    """The (ground truth, predictions) pairs sorted by their content. COCOeval breaks ties of equal scores across
    images by image id, and answers without scores all tie (1.0): in row order, the same rows shuffled scored a
    different mAP (0.209 / 0.218 / 0.216). Sorted, the images are numbered the same whatever the row order; rows
    of equal content are interchangeable."""
    def key(pair):
        gt, pred = pair
        return json.dumps([gt.boxes, gt.labels, gt.width, gt.height, pred.boxes, pred.labels, pred.scores],
                          default=lambda value: value.tolist() if hasattr(value, "tolist") else str(value))

    pairs = sorted(zip(ground_truth, predictions), key=key)
    return [gt for gt, _ in pairs], [pred for _, pred in pairs]


def coco_metrics(
    ground_truth: Sequence[ImageAnnotations],
    predictions: Sequence[ScoredBoxes],
    class_agnostic: bool = False,
) -> dict[str, float]:
    """COCO mAP, AP50, AP75, per-area APs and ARs of per-image predictions against per-image ground truth.

    >>> gt = [ImageAnnotations([[0, 0, 10, 10]], ["red circle"])]
    >>> round(coco_metrics(gt, [ScoredBoxes([[0, 0, 10, 10]], ["Red  Circle"], [0.9])])["mAP"], 6)
    1.0
    """
    to_coco(ground_truth, predictions, class_agnostic)  # refuses malformed input naming images in the caller's order
    dataset, results = to_coco(*_in_canonical_order(ground_truth, predictions), class_agnostic)
    metrics = coco_metrics_from_dicts(dataset, results)
    metrics.update(
        n_images=len(dataset["images"]),
        n_categories=len(dataset["categories"]),
        n_ground_truth=len(dataset["annotations"]),
        n_predictions=sum(len(p.boxes) for p in predictions),
        n_predictions_scored=len(results),
    )
    return metrics
