"""Box geometry and matching (vlm_r1.rewards.boxes)."""
import numpy as np
import pytest

from vlm_r1.rewards.boxes import box_area, box_iou, generalized_box_iou, greedy_match, hungarian_match


def test_iou_hand_worked():
    a = [[0, 0, 10, 10]]
    assert box_iou(a, [[0, 0, 10, 10]])[0, 0] == 1.0
    assert box_iou(a, [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert box_iou(a, [[10, 0, 20, 10]])[0, 0] == 0.0  # touching: no "+1" pixel convention
    assert box_iou(a, [[2, 2, 4, 4]])[0, 0] == pytest.approx(4 / 100)
    assert box_iou([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0  # zero area, no NaN
    assert box_iou([], a).shape == (0, 1) and box_area([[1, 2, 4, 6]])[0] == 12.0


def test_giou_hand_worked():
    a = [[0, 0, 10, 10]]
    assert generalized_box_iou(a, a)[0, 0] == 1.0
    # disjoint: IoU 0, enclosing 20x10=200, union 200 -> 0; far apart tends to -1
    assert generalized_box_iou(a, [[10, 0, 20, 10]])[0, 0] == pytest.approx(0.0)
    assert generalized_box_iou(a, [[1000, 1000, 1010, 1010]])[0, 0] == pytest.approx(-1.0, abs=1e-3)
    assert generalized_box_iou(a, [[20, 0, 30, 10]])[0, 0] == pytest.approx(0 - (300 - 200) / 300)


def test_matches_torchvision_on_random_boxes():
    torchvision = pytest.importorskip("torchvision")
    import torch
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, size=(2, 40, 2))
    wh = rng.uniform(0, 50, size=(2, 40, 2))
    a, b = np.concatenate([xy[0], xy[0] + wh[0]], 1), np.concatenate([xy[1], xy[1] + wh[1]], 1)
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    np.testing.assert_allclose(box_iou(a, b), torchvision.ops.box_iou(ta, tb).numpy(), atol=1e-12)
    np.testing.assert_allclose(generalized_box_iou(a, b), torchvision.ops.generalized_box_iou(ta, tb).numpy(), atol=1e-12)


def test_greedy_match_follows_order_and_threshold():
    ious = np.array([[0.9, 0.6], [0.95, 0.0], [0.4, 0.45]])
    assert greedy_match(ious, [0, 1, 2], 0.5).tolist() == [0, -1, -1]
    assert greedy_match(ious, [1, 0, 2], 0.5).tolist() == [1, 0, -1]
    allowed = np.array([[False, True], [True, True], [True, True]])
    assert greedy_match(ious, [0, 1, 2], 0.5, allowed).tolist() == [1, 0, -1]
    assert greedy_match(np.zeros((0, 3)), [], 0.5).tolist() == []


def test_hungarian_maximises_total_iou():
    ious = np.array([[0.9, 0.8], [0.85, 0.0]])
    assert greedy_match(ious, [0, 1], 0.5).tolist() == [0, -1]  # greedy: 0.9
    assert hungarian_match(ious, 0.5).tolist() == [1, 0]  # optimal: 0.8 + 0.85
    assert hungarian_match(ious, 0.86).tolist() == [0, -1]
    assert hungarian_match(np.zeros((2, 0)), 0.5).tolist() == [-1, -1]
