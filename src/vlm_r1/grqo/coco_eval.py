"""COCO box mAP of a Grounding DINO model on detection examples.

The metric itself is the project's one detection evaluator (`vlm_r1.evaluation.detection.coco_metrics`,
pycocotools, standard protocol); this module only turns the detector's outputs into its per-image
`ScoredBoxes`. Every image is prompted with the same class list as in training. The score of
query q for class c is the mean sigmoid probability over c's prompt tokens (the label maps of
transformers' `build_label_maps`). The top `max_dets` (query, class) pairs of an image become its
detections (DINO's evaluation does the same top-k over queries x classes). Boxes are scaled from
the normalised frame to original pixels.
"""

from __future__ import annotations

import torch
from torchvision.ops import box_convert

from vlm_r1.evaluation.detection import ImageAnnotations, ScoredBoxes, coco_metrics
from vlm_r1.grqo.data import MODEL_INPUT_KEYS, make_batch


def class_scores(logits: torch.Tensor, label_maps: torch.Tensor) -> torch.Tensor:
    """(Q, T) text-token logits and (C, T) label maps -> (Q, C) mean token probability per class."""
    weights = label_maps.float()
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1)
    return logits.float().sigmoid() @ weights.t()


@torch.no_grad()
def predict_detections(model, processor, examples, classes, batch_size: int = 8, max_dets: int = 100,
                       progress=None) -> list[ScoredBoxes]:  # fmt: skip
    """Per-image detections ([x1, y1, x2, y2] original pixels, class names, scores), in example order.
    `progress(done, total)` is called after each batch."""
    from transformers.models.grounding_dino.modeling_grounding_dino import build_label_maps

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        batch = make_batch(chunk, processor, classes, model.config.max_text_len)
        out = model(**{k: batch[k].to(device) for k in MODEL_INPUT_KEYS if k in batch})
        label_maps = build_label_maps(out.logits, batch["input_ids"].to(device))
        for i, example in enumerate(chunk):
            if label_maps[i].shape[0] != len(classes):
                raise ValueError(f"prompt splits into {label_maps[i].shape[0]} phrases, expected {len(classes)}")
            scores = class_scores(out.logits[i], label_maps[i])  # (Q, C)
            top = scores.flatten().topk(min(max_dets, scores.numel()))
            query, cls = top.indices // scores.shape[1], top.indices % scores.shape[1]
            scale = torch.tensor([example.width, example.height] * 2, dtype=torch.float32, device=device)
            xyxy = box_convert(out.pred_boxes[i][query].float(), "cxcywh", "xyxy") * scale
            predictions.append(ScoredBoxes(xyxy.tolist(), [classes[c] for c in cls.tolist()], top.values.tolist()))
        if progress is not None:
            progress(len(predictions), len(examples))
    model.train(was_training)
    return predictions


def ground_truth(examples) -> list[ImageAnnotations]:
    """The examples' boxes and labels in the shared evaluator's form."""
    return [ImageAnnotations(e.boxes, e.labels, e.width, e.height) for e in examples]


def evaluate(model, processor, examples, classes, batch_size: int = 8) -> dict[str, float]:
    """Predict on `examples` and return their COCO metrics (mAP, AP50, AP75, per-area AP / AR, counts)."""
    return coco_metrics(ground_truth(examples), predict_detections(model, processor, examples, classes, batch_size))
