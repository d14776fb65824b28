"""Matching costs between decoder queries and ground-truth objects (DETR / DINO form).

One image at a time: a query has text-token logits (one per prompt token) and a box
(cx, cy, w, h) normalised to [0, 1]; a ground-truth object has a *label map* (which prompt
tokens spell its label) and a box in the same frame. The cost of pairing query i with object j is

    C_ij = w_cls * focal_ij + w_l1 * ||b_i - g_j||_1 + w_giou * (-GIoU(b_i, g_j))

with the focal classification cost of Deformable-DETR / Grounding DINO (alpha 0.25, gamma 2):
for p = sigmoid(logit) of one token,

    pos = alpha * (1 - p)^gamma * -log(p + 1e-8)        (cost of calling it positive)
    neg = (1 - alpha) * p^gamma * -log(1 - p + 1e-8)    (cost of calling it negative)
    focal_ij = mean over the label tokens of object j of (pos - neg)

which is what transformers' `GroundingDinoHungarianMatcher` computes (its label maps are
normalised by the number of tokens). GIoU comes from torchvision (the one implementation we use).
Default weights 2 / 5 / 2 are the DINO-R1 paper's (= Grounding DINO's loss weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.ops import box_convert, generalized_box_iou

FOCAL_EPS = 1e-8


@dataclass(frozen=True)
class CostWeights:
    """Weights of the three cost terms, and the focal form's alpha / gamma."""

    cls: float = 2.0
    l1: float = 5.0
    giou: float = 2.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


def focal_class_cost(logits: torch.Tensor, label_maps: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Focal classification cost, shape (Q, G).

    logits: (Q, T) text-token logits (padding positions may be -inf).
    label_maps: (G, T) 0/1 (or weights) marking the tokens of each object's label; rows are
    normalised to sum 1 here, so the cost is the mean over the label's tokens.
    """
    prob = logits.float().sigmoid()
    pos = alpha * (1 - prob) ** gamma * -(prob + FOCAL_EPS).log()
    neg = (1 - alpha) * prob**gamma * -(1 - prob + FOCAL_EPS).log()
    weights = label_maps.float()
    weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-12)
    per_token = pos - neg  # finite everywhere: p=0 gives pos=alpha*log(1e8), neg=0
    return per_token @ weights.t()


def l1_cost(boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise L1 distance between (Q, 4) and (G, 4) cxcywh boxes, shape (Q, G)."""
    return torch.cdist(boxes.float(), gt_boxes.float(), p=1)


def giou_cost(boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """Negative pairwise generalised IoU of cxcywh boxes, shape (Q, G), in [-1, 1]."""
    a = box_convert(boxes.float(), "cxcywh", "xyxy")
    b = box_convert(gt_boxes.float(), "cxcywh", "xyxy")
    return -generalized_box_iou(a, b)


def matching_cost(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    gt_label_maps: torch.Tensor,
    gt_boxes: torch.Tensor,
    weights: CostWeights = CostWeights(),
) -> torch.Tensor:
    """Total matching cost C (Q, G) of one image's queries against its ground-truth objects."""
    cost = weights.cls * focal_class_cost(logits, gt_label_maps, weights.focal_alpha, weights.focal_gamma)
    cost = cost + weights.l1 * l1_cost(boxes, gt_boxes) + weights.giou * giou_cost(boxes, gt_boxes)
    # Only a non-finite prediction (NaN logits or boxes) gives a non-finite cost; a zero-area box still has a
    # finite GIoU. Such a query gets a large finite cost so the step does not fail; its outlier reward then
    # dominates its group's spread and shrinks the other queries' advantages (the guard is for survival, not
    # for a clean signal).
    return torch.nan_to_num(cost, nan=1e4, posinf=1e4, neginf=-1e4)


def min_cost_rewards(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward r_i = -min_j C_ij of each query, and the index j of that best-matching object.

    cost: (..., Q, G) with G >= 1. Returns (rewards (..., Q), argmin (..., Q)).
    """
    if cost.shape[-1] == 0:
        raise ValueError("min_cost_rewards needs at least one ground-truth object")
    best, index = cost.min(dim=-1)
    return -best, index
