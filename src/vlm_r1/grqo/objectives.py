"""GRQO objectives: query-group advantages, the policy-gradient surrogate, the objectness KL.

DINO-R1 (arXiv 2505.24025) treats the decoder queries of one image as a GRPO "group":

* reward of query i: r_i = -min_j C_ij, its lowest matching cost against any ground-truth
  object of the image (`costs.matching_cost`), computed at every decoder layer separately;
* advantage: A_i = (r_i - mean(r)) / (std(r) + eps) over the queries of one image at one layer
  (population std; all-equal rewards give A = 0 exactly, never NaN);
* a KL term keeps the encoder's *objectness* (max text-token probability of each proposal) of the
  top-k selected proposals close to a frozen reference model's: by default the exact Bernoulli KL;
  the paper's GRPO-style k3 form is an option (below).

Interpretation (the paper writes the objective in GRPO form, -1/N sum_i A_i, plus the KL term).
Read literally that is not trainable: the advantages are standardised, so sum_i A_i = 0 for every
group and the term is constant (its gradient through the normalisation is exactly zero). A
detector's query is a deterministic "action" with no sampled token whose log-probability could
carry A_i, so we choose the differentiable quantity explicitly and stop the gradient on A:

    surrogate="logprob" (default):  L = -mean_i sg(A_i) * log p_i
        p_i is the query's probability of the label of its best-matching object j*(i):
        log p_i = mean over that label's tokens of log sigmoid(logit). Better-than-average queries
        are pushed to say their object's label more confidently, worse-than-average ones less.
        This is REINFORCE with a group baseline where the policy is the query's
        classification head; boxes are not a stochastic action, so they learn only from the
        supervised losses (and through shared features). Unbounded below: driving a
        negative-advantage query's p to 0 lowers it forever, so keep alpha small (see docs/grqo.md).
    surrogate="neg_cost":  L = -mean_i sg(A_i) * r_i = mean_i sg(A_i) * C_{i j*(i)}
        the cost itself is differentiated: good queries move towards their object (class and box),
        bad ones are pushed away from it (a repulsion / de-duplication effect). For ablation.

The mean runs over every (layer, image, query) of images that have at least one object; images
without objects add nothing (no matching cost exists). The total loss of a step is
`L_supervised + alpha * L_GRQO + beta * KL` (`trainer.py`); GRQO is never used alone.

KL on objectness: p = sigmoid(objectness logit) of the policy and q of the reference at the same
proposal, each a Bernoulli (object / background).
    outcomes="exact" (default): KL(p || q) = p (log p - log q) + (1 - p) (log(1 - p) - log(1 - q)),
        from logsigmoids, so saturated probabilities stay finite. It is >= 0, zero iff p == q, and at
        most |logit gap| (each log-ratio is bounded by the gap).
    outcomes="both" / "positive": the k3 penalty k3(r) = r - log r - 1 with r = q / p for the object
        outcome, plus (for "both") r = (1 - q) / (1 - p) for the background outcome, each unweighted.
        This is NOT a KL: k3(r) of outcome o estimates KL(p || q) without bias only as an expectation
        over outcomes drawn from the policy, p * k3(q / p) + (1 - p) * k3((1 - q) / (1 - p)) = KL(p || q);
        the unweighted terms are not of the KL's order. A term k3(q_o / p_o) grows like q_o / p_o where
        the policy gives outcome o less probability than the reference, up to exp(|logit gap|) when o is
        rare under both (the object outcome for logits far below 0, the background one far above), and
        like log(p_o / q_o) <= |gap| where it gives o more. On proposals of low objectness (p, q near 0),
        the object term is about |gap| - 1 where the policy's logit is the higher and about e^|gap| where
        it is the lower, while the KL is about |q - p|. The log ratio is clamped to +-50, so one proposal
        can add up to e^50.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vlm_r1.grqo.costs import CostWeights, matching_cost, min_cost_rewards

SURROGATES = ("logprob", "neg_cost")
KL_OUTCOMES = ("exact", "both", "positive")
_LOG_RATIO_CLAMP = 50.0


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Standardise rewards over the last dim (one group): (r - mean) / (std + eps), population std.

    Computed in float64 from each group's offset to its first reward, so that equal rewards give exactly 0: the
    float32 mean of 900 equal values is not always that value, and its residual d over a std of |d| made an
    advantage of d / (|d| + eps), of order 1 and one sign for every query."""
    offsets = rewards.double() - rewards.double()[..., :1]
    centred = offsets - offsets.mean(dim=-1, keepdim=True)
    std = offsets.std(dim=-1, keepdim=True, correction=0)
    return (centred / (std + eps)).float()


def label_log_prob(logits: torch.Tensor, label_maps: torch.Tensor) -> torch.Tensor:
    """Mean log sigmoid of the logits over each row's label tokens.

    logits: (..., T); label_maps: (..., T) 0/1 masks of the label's tokens (same leading shape).
    Positions outside the label never contribute (their logits may be -inf).
    """
    mask = label_maps > 0
    logp = torch.where(mask, F.logsigmoid(logits.float()), torch.zeros((), device=logits.device))
    return logp.sum(-1) / mask.sum(-1).clamp(min=1)


@dataclass
class GRQOStats:
    """What one batch's GRQO term saw (for logging)."""

    reward_mean: float = 0.0
    adv_abs_mean: float = 0.0
    groups: int = 0


def grqo_loss(
    layer_logits: torch.Tensor,
    layer_boxes: torch.Tensor,
    targets: list[dict],
    label_maps: tuple[torch.Tensor, ...],
    weights: CostWeights = CostWeights(),
    surrogate: str = "logprob",
    eps: float = 1e-6,
) -> tuple[torch.Tensor, GRQOStats]:
    """GRQO surrogate loss of a batch.

    layer_logits: (L, B, Q, T) text-token logits per decoder layer; layer_boxes: (L, B, Q, 4)
    cxcywh in [0, 1]; targets: per image {"class_labels": (G,), "boxes": (G, 4)} (the model's
    `labels`); label_maps: per image (num_classes_in_prompt, T) token masks (transformers'
    `build_label_maps`). Returns (scalar loss, stats); the loss is 0 when no image
    has an object (then without a graph).
    """
    if surrogate not in SURROGATES:
        raise ValueError(f"surrogate must be one of {SURROGATES}, got {surrogate!r}")
    total = torch.zeros((), device=layer_logits.device)
    count, reward_sum, adv_abs_sum, groups = 0, 0.0, 0.0, 0
    for b, target in enumerate(targets):
        classes = target["class_labels"]
        if classes.numel() == 0:
            continue
        gt_maps = label_maps[b][classes].to(layer_logits.device)  # (G, T)
        gt_boxes = target["boxes"].to(layer_boxes.device)
        logits, boxes = layer_logits[:, b], layer_boxes[:, b]  # (L, Q, T), (L, Q, 4)
        with torch.no_grad():
            cost = torch.stack([matching_cost(lg, bx, gt_maps, gt_boxes, weights) for lg, bx in zip(logits, boxes)])
            rewards, best = min_cost_rewards(cost)  # (L, Q)
            adv = group_advantages(rewards, eps)
        if surrogate == "logprob":
            quantity = label_log_prob(logits, gt_maps[best])  # (L, Q)
        else:  # neg_cost: the (differentiable) reward of each query
            quantity = -torch.stack(
                [matching_cost(lg, bx, gt_maps, gt_boxes, weights).gather(1, j[:, None])[:, 0]
                 for lg, bx, j in zip(logits, boxes, best)]
            )  # fmt: skip
        total = total - (adv * quantity).sum()
        count += adv.numel()
        reward_sum += rewards.sum().item()
        adv_abs_sum += adv.abs().sum().item()
        groups += adv.shape[0]
    if count == 0:
        return total, GRQOStats()
    return total / count, GRQOStats(reward_sum / count, adv_abs_sum / count, groups)


def bernoulli_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """Exact KL(policy || reference) of Bernoulli probabilities given as logits, elementwise.

    p (log p - log q) + (1 - p) (log(1 - p) - log(1 - q)) with every log from `F.logsigmoid`: finite for any
    finite logits, exactly 0 where logits == ref_logits, and at most |logits - ref_logits|.
    """
    ref_logits = ref_logits.detach().float()
    logits = logits.float()
    log_p, log_q = F.logsigmoid(logits), F.logsigmoid(ref_logits)
    log_1p, log_1q = F.logsigmoid(-logits), F.logsigmoid(-ref_logits)
    return log_p.exp() * (log_p - log_q) + log_1p.exp() * (log_1p - log_1q)


def bernoulli_k3(logits: torch.Tensor, ref_logits: torch.Tensor, outcomes: str = "both") -> torch.Tensor:
    """The k3 penalty r - log r - 1 of Bernoulli probabilities given as logits, summed unweighted over the outcomes
    (`outcomes="both"`) or on the object outcome only ("positive"); not a KL (see the module docstring).

    Elementwise; exactly 0 where logits == ref_logits and > 0 elsewhere. Computed in log space, with the
    log ratio clamped to +-50, so probabilities near 0 or 1 stay finite.
    """
    if outcomes not in ("both", "positive"):
        raise ValueError(f"outcomes must be 'both' or 'positive', got {outcomes!r}")
    ref_logits = ref_logits.detach().float()
    logits = logits.float()
    log_ratio = (F.logsigmoid(ref_logits) - F.logsigmoid(logits)).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
    k3 = log_ratio.exp() - log_ratio - 1
    if outcomes == "both":
        log_ratio0 = (F.logsigmoid(-ref_logits) - F.logsigmoid(-logits)).clamp(-_LOG_RATIO_CLAMP, _LOG_RATIO_CLAMP)
        k3 = k3 + (log_ratio0.exp() - log_ratio0 - 1)
    return k3


def objectness_kl(
    enc_class_logits: torch.Tensor, ref_enc_class_logits: torch.Tensor, top_k: int, outcomes: str = "exact"
) -> torch.Tensor:
    """Mean objectness term (the exact Bernoulli KL, or a k3 penalty) over the policy's top-k encoder proposals.

    enc_class_logits / ref_enc_class_logits: (B, S, T) text-token logits of every encoder proposal
    (`enc_outputs_class`); objectness = max over tokens (as Grounding DINO's query selection ranks
    them). The top-k indices are the ones the policy selects as decoder queries.
    """
    if outcomes not in KL_OUTCOMES:
        raise ValueError(f"outcomes must be one of {KL_OUTCOMES}, got {outcomes!r}")
    objectness = enc_class_logits.max(dim=-1).values  # (B, S)
    ref_objectness = ref_enc_class_logits.max(dim=-1).values
    k = min(top_k, objectness.shape[1])
    index = objectness.detach().topk(k, dim=1).indices
    policy, reference = objectness.gather(1, index), ref_objectness.gather(1, index)
    if outcomes == "exact":
        return bernoulli_kl(policy, reference).mean()
    return bernoulli_k3(policy, reference, outcomes).mean()
