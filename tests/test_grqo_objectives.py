"""GRQO pieces against small cases worked by hand: costs, rewards, advantages, surrogate, KL."""

from __future__ import annotations

import math

import pytest
import torch

from vlm_r1.grqo.costs import CostWeights, focal_class_cost, giou_cost, l1_cost, matching_cost, min_cost_rewards
from vlm_r1.grqo.objectives import bernoulli_k3, group_advantages, grqo_loss, label_log_prob, objectness_kl

LN9 = math.log(9.0)  # logit of p = 0.9


# ---- costs ----------------------------------------------------------------------------------


def test_focal_class_cost_by_hand():
    # p = 0.5: pos = 0.25 * 0.5^2 * ln 2 = 0.0433217, neg = 0.75 * 0.5^2 * ln 2 = 0.1299651
    # p = 0.9: pos = 0.25 * 0.1^2 * -ln 0.9 = 0.0002634, neg = 0.75 * 0.9^2 * -ln 0.1 = 1.3988204
    logits = torch.tensor([[0.0, LN9, float("-inf")]])  # one query, 3 tokens, the last is padding
    maps = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0]])  # three objects: token 0, token 1, both
    cost = focal_class_cost(logits, maps)
    expected = torch.tensor([[-0.0866434, -1.3985570, (-0.0866434 - 1.3985570) / 2]])
    assert torch.allclose(cost, expected, atol=1e-6)


def test_focal_class_cost_confident_wrong_is_positive():
    # p ~ 0 on the label token: pos = 0.25 * -ln(1e-8 + ~0) (large), neg ~ 0
    cost = focal_class_cost(torch.tensor([[-30.0]]), torch.tensor([[1]]))
    assert cost.item() == pytest.approx(0.25 * -math.log(1e-8 + 1 / (1 + math.exp(30))), rel=1e-4)


def test_l1_cost_by_hand():
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    gt = torch.tensor([[0.4, 0.5, 0.2, 0.4], [0.5, 0.5, 0.2, 0.2]])
    assert torch.allclose(l1_cost(boxes, gt), torch.tensor([[0.3, 0.0]]), atol=1e-6)


def test_giou_cost_by_hand():
    a = torch.tensor([[0.25, 0.25, 0.5, 0.5], [1.0, 1.0, 2.0, 2.0]])  # xyxy (0,0,.5,.5) and (0,0,2,2)
    b = torch.tensor([[0.75, 0.75, 0.5, 0.5], [2.0, 2.0, 2.0, 2.0]])  # xyxy (.5,.5,1,1) and (1,1,3,3)
    cost = giou_cost(a, b)
    # corner-touching: IoU 0, hull 1, union 0.5 -> GIoU -0.5; overlap 1 of union 7 in hull 9 -> 1/7 - 2/9
    assert cost[0, 0].item() == pytest.approx(0.5, abs=1e-6)
    assert cost[1, 1].item() == pytest.approx(-(1 / 7 - 2 / 9), abs=1e-6)
    assert giou_cost(a[:1], a[:1]).item() == pytest.approx(-1.0, abs=1e-6)  # identical boxes


def test_matching_cost_combines_with_weights():
    logits = torch.tensor([[0.0, 0.0]])
    maps = torch.tensor([[1, 0]])
    box = torch.tensor([[0.5, 0.5, 0.2, 0.2]])
    gt = torch.tensor([[0.4, 0.5, 0.2, 0.4]])
    expected = 2 * -0.0866434 + 5 * 0.3 + 2 * giou_cost(box, gt).item()
    assert matching_cost(logits, box, maps, gt).item() == pytest.approx(expected, abs=1e-5)
    only_l1 = CostWeights(cls=0.0, l1=1.0, giou=0.0)
    assert matching_cost(logits, box, maps, gt, only_l1).item() == pytest.approx(0.3, abs=1e-6)


def test_min_cost_rewards():
    cost = torch.tensor([[1.0, 3.0], [2.0, 0.5], [4.0, 4.0]])
    rewards, best = min_cost_rewards(cost)
    assert rewards.tolist() == [-1.0, -0.5, -4.0]
    assert best.tolist() == [0, 1, 0]
    with pytest.raises(ValueError):
        min_cost_rewards(torch.zeros(3, 0))


# ---- advantages -----------------------------------------------------------------------------


def test_group_advantages_by_hand_and_per_group():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 40.0]])
    adv = group_advantages(rewards, eps=0.0)
    s = math.sqrt(2 / 3)  # population std of (1, 2, 3)
    assert torch.allclose(adv[0], torch.tensor([-1 / s, 0.0, 1 / s]), atol=1e-6)
    assert torch.allclose(adv[1], torch.tensor([-1 / math.sqrt(2), -1 / math.sqrt(2), math.sqrt(2)]), atol=1e-6)
    assert torch.allclose(adv.sum(-1), torch.zeros(2), atol=1e-6)


def test_group_advantages_all_equal_is_zero_not_nan():
    adv = group_advantages(torch.full((2, 5), -3.7))
    assert torch.equal(adv, torch.zeros(2, 5))
    assert torch.equal(group_advantages(torch.tensor([[4.2]])), torch.zeros(1, 1))  # a group of one
    # Grounding DINO's 900 queries: the float32 mean of 900 equal values missed the value, and the rounding residual
    # over a std of its own size gave every query an advantage near 0.5
    for value in (-7.123456, 0.1, -3.7, 1234.567):
        assert torch.equal(group_advantages(torch.full((3, 900), value)), torch.zeros(3, 900)), value


# ---- surrogate ------------------------------------------------------------------------------


def test_label_log_prob_ignores_padding():
    logits = torch.tensor([[0.0, LN9, float("-inf")]])
    value = label_log_prob(logits, torch.tensor([[1, 1, 0]]))
    assert value.item() == pytest.approx((math.log(0.5) + math.log(0.9)) / 2, abs=1e-6)


def _one_image(logits, boxes):
    targets = [{"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2]])}]
    label_maps = (torch.tensor([[0, 1, 1, 0]]),)  # class 0 = tokens 1 and 2
    return logits, boxes, targets, label_maps


def test_grqo_loss_pushes_good_queries_up_and_bad_down():
    # one layer, one image, 3 queries with equal logits: the query on the object (best reward) must get
    # its label logits raised by gradient descent, the far one lowered. With equal log-probs the loss
    # value is -log(0.5) * mean(A) = 0, but its gradient is not.
    logits = torch.zeros(1, 1, 3, 4, requires_grad=True)
    boxes = torch.tensor([[[[0.3, 0.3, 0.2, 0.2], [0.35, 0.3, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]]])
    loss, stats = grqo_loss(*_one_image(logits, boxes))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    grad = logits.grad[0, 0]
    assert grad[0, 1] < 0 and grad[0, 2] < 0  # best query: descent increases its label logits
    assert grad[2, 1] > 0 and grad[2, 2] > 0  # worst query: decreases them
    assert torch.all(grad[:, [0, 3]] == 0)  # tokens outside the label get nothing
    assert stats.groups == 1 and stats.adv_abs_mean > 0


def test_grqo_loss_value_is_minus_mean_adv_times_logprob():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 5, 4)  # two layers -> two groups
    boxes = torch.rand(2, 1, 5, 4) * 0.5 + 0.25
    loss, _ = grqo_loss(*_one_image(logits, boxes))
    expected = 0.0
    for layer in range(2):
        cost = matching_cost(logits[layer, 0], boxes[layer, 0], torch.tensor([[0, 1, 1, 0]]),
                             torch.tensor([[0.3, 0.3, 0.2, 0.2]]))  # fmt: skip
        adv = group_advantages(-cost[:, 0])
        logp = torch.nn.functional.logsigmoid(logits[layer, 0, :, 1:3]).mean(-1)
        expected += -(adv * logp).sum().item()
    assert loss.item() == pytest.approx(expected / 10, abs=1e-5)


def test_grqo_loss_degenerate_groups():
    logits = torch.zeros(1, 2, 3, 4, requires_grad=True)
    boxes = torch.full((1, 2, 3, 4), 0.3)  # identical queries: all rewards equal -> A = 0
    targets = [{"class_labels": torch.tensor([0]), "boxes": torch.tensor([[0.3, 0.3, 0.2, 0.2]])},
               {"class_labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4)}]  # fmt: skip
    loss, stats = grqo_loss(logits, boxes, targets, (torch.tensor([[0, 1, 1, 0]]),) * 2)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logits.grad == 0) and not torch.isnan(logits.grad).any()
    assert stats.groups == 1  # the image without objects forms no group
    empty, _ = grqo_loss(logits, boxes, [targets[1]] * 2, (torch.tensor([[0, 1, 1, 0]]),) * 2)
    assert empty.item() == 0.0


def test_grqo_neg_cost_surrogate_reaches_boxes():
    logits = torch.zeros(1, 1, 3, 4, requires_grad=True)
    boxes = torch.tensor([[[[0.3, 0.3, 0.2, 0.2], [0.35, 0.3, 0.2, 0.2], [0.8, 0.8, 0.1, 0.1]]]], requires_grad=True)
    loss, _ = grqo_loss(*_one_image(logits, boxes), surrogate="neg_cost")
    loss.backward()
    assert boxes.grad.abs().sum() > 0 and torch.isfinite(boxes.grad).all()
    with pytest.raises(ValueError):
        grqo_loss(*_one_image(logits, boxes), surrogate="nope")


# ---- KL -------------------------------------------------------------------------------------


def test_k3_zero_when_equal_positive_otherwise():
    x = torch.tensor([-30.0, -2.0, 0.0, 3.0, 30.0])
    assert torch.equal(bernoulli_k3(x, x), torch.zeros(5))
    assert torch.equal(bernoulli_k3(x, x, outcomes="positive"), torch.zeros(5))
    assert torch.all(bernoulli_k3(x, x + 0.5) > 0) and torch.all(bernoulli_k3(x + 0.5, x) > 0)
    assert torch.isfinite(bernoulli_k3(torch.tensor([40.0]), torch.tensor([-40.0]))).all()


def test_k3_by_hand():
    # p = 0.5 (policy), q = 0.9 (reference): object r = 1.8, background r = 0.2
    one = bernoulli_k3(torch.tensor([0.0]), torch.tensor([LN9]), outcomes="positive").item()
    both = bernoulli_k3(torch.tensor([0.0]), torch.tensor([LN9])).item()
    assert one == pytest.approx(0.8 - math.log(1.8), abs=1e-6)
    assert both == pytest.approx(0.8 - math.log(1.8) + (0.2 - math.log(0.2) - 1), abs=1e-6)


def test_objectness_kl_uses_policy_top_k():
    inf = float("-inf")
    enc = torch.tensor([[[3.0, 0.0, inf], [-1.0, -2.0, inf], [0.5, 2.0, inf], [-4.0, -3.0, inf]]])  # max 3, -1, 2, -3
    assert objectness_kl(enc, enc.clone(), top_k=2).item() == 0.0
    off_top = enc.clone()
    off_top[0, 1, 0] = 5.0  # a proposal the policy did not select
    assert objectness_kl(enc, off_top, top_k=2).item() == 0.0
    on_top = enc.clone()
    on_top[0, 2, 1] = -1.0  # a selected proposal: objectness logit 2 -> 0.5
    kl = objectness_kl(enc, on_top, top_k=2, outcomes="both")
    expected = bernoulli_k3(torch.tensor([2.0]), torch.tensor([0.5])).item() / 2
    assert kl.item() == pytest.approx(expected, abs=1e-6)
    p, q = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(-0.5))  # the default: the exact KL, by hand
    exact = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    assert objectness_kl(enc, on_top, top_k=2).item() == pytest.approx(exact / 2, abs=1e-6)


def test_exact_bernoulli_kl_by_hand():
    from vlm_r1.grqo.objectives import bernoulli_kl

    # p = 0.5 (policy), q = 0.9 (reference): 0.5 ln(0.5 / 0.9) + 0.5 ln(0.5 / 0.1)
    kl = bernoulli_kl(torch.tensor([0.0]), torch.tensor([LN9])).item()
    assert kl == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1), abs=1e-6)
    # p = 0.9, q = 0.5: the other direction
    back = bernoulli_kl(torch.tensor([LN9]), torch.tensor([0.0])).item()
    assert back == pytest.approx(0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5), abs=1e-6)
    x = torch.tensor([-30.0, -2.0, 0.0, 3.0, 30.0])
    assert torch.equal(bernoulli_kl(x, x), torch.zeros(5))
    # k3 weighted by the policy's outcome probabilities is the KL (k3 is unbiased only in that expectation)
    lp, lq = torch.tensor([-1.3, 0.4, 2.5]), torch.tensor([0.7, -2.0, 2.4])
    p = torch.sigmoid(lp)
    positive = bernoulli_k3(lp, lq, "positive")
    weighted = p * positive + (1 - p) * (bernoulli_k3(lp, lq) - positive)  # "both" minus "positive": background
    torch.testing.assert_close(bernoulli_kl(lp, lq), weighted, rtol=0, atol=1e-6)


def test_exact_kl_grows_like_the_logit_gap_and_k3_like_its_exponential():
    from vlm_r1.grqo.objectives import bernoulli_kl

    for gap in (8.0, 16.0, 25.0):  # policy and reference logits symmetric about 0, the policy's the lower
        lp = torch.tensor([-gap / 2], requires_grad=True)
        lq = torch.tensor([gap / 2])
        kl = bernoulli_kl(lp, lq)
        assert 0 < kl.item() <= gap and kl.item() == pytest.approx(gap / 2, rel=0.05)
        (grad,) = torch.autograd.grad(kl.sum(), lp)
        assert abs(grad.item()) <= 1.0  # bounded: no single proposal takes over a clipped update
        assert bernoulli_k3(lp, lq).item() > math.exp(gap / 2) - gap  # the k3 penalty: about e^(gap/2) each side
    saturated = bernoulli_kl(torch.tensor([40.0, -40.0]), torch.tensor([-40.0, 40.0]))
    assert torch.isfinite(saturated).all() and (saturated <= 80.0).all()
