"""Evaluation: REC Acc@0.5 / mean IoU, COCO mAP (pycocotools), classification, multiple-choice, yes/no and counting
accuracy.

``runner.evaluate_samples`` generates (greedy, batched), converts boxes through the VLM module and scores;
``vlm-r1 eval`` (:mod:`vlm_r1.evaluate`) is its command line. The metric functions take plain per-row inputs in
original-image pixels, so other trainers (GRQO) call them directly. See docs/evaluation.md.
"""

from .answers import answer_metrics
from .compare import hits, paired_bootstrap
from .counting import counting_metrics
from .detection import ImageAnnotations, ScoredBoxes, coco_metrics, coco_metrics_from_dicts, detections_from_answer
from .rec import rec_ious, rec_metrics, rec_summary

__all__ = [
    "ImageAnnotations",
    "ScoredBoxes",
    "answer_metrics",
    "coco_metrics",
    "coco_metrics_from_dicts",
    "counting_metrics",
    "detections_from_answer",
    "hits",
    "paired_bootstrap",
    "rec_ious",
    "rec_metrics",
    "rec_summary",
]
