"""The OVD mAP reward: numpy COCO AP equals pycocotools' COCOeval, plus the reward's own rules."""
import json
import random

import pytest

from vlm_r1.rewards import parse_answer
from vlm_r1.rewards.ovd import coco_ap, det_ap50, det_map, pycocotools_ap


def random_case(rng: random.Random):
    """Small integer boxes (many overlaps, IoUs exactly on thresholds), label mix-ups, score ties, empty sides."""
    labels = ["a", "b", "c", "d"]  # "d" never appears in the ground truth
    n_gt = rng.choice([0, 1, 1, 2, 3, 5, 8])
    n_dt = rng.choice([0, 1, 2, 3, 4, 7, 12, 25])
    span = rng.choice([4, 10, 30, 100])

    def box():
        x, y = rng.randint(0, span), rng.randint(0, span)
        return [x, y, x + rng.randint(0, span), y + rng.randint(0, span)]  # zero-area boxes included

    gt_boxes = [box() for _ in range(n_gt)]
    gt_boxes = [[x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)] for x1, y1, x2, y2 in gt_boxes]
    gt_labels = [rng.choice(labels[:3]) for _ in range(n_gt)]
    dt_boxes = []
    for _ in range(n_dt):
        if gt_boxes and rng.random() < 0.6:  # near a ground truth, sometimes exactly on it
            b = [v + rng.choice([0, 0, -1, 1, 2]) for v in rng.choice(gt_boxes)]
            dt_boxes.append([b[0], b[1], max(b[0], b[2]), max(b[1], b[3])])
        else:
            dt_boxes.append(box())
    dt_labels = [rng.choice(labels) for _ in range(n_dt)]
    dt_scores = [rng.choice([None, 1.0, 0.5, 0.5, 0.9, 0.1, rng.random()]) for _ in range(n_dt)]
    dt_scores = [1.0 if s is None else s for s in dt_scores]  # the reward's rule for a missing score
    if rng.random() < 0.05:  # huge boxes: areas above COCO's "all" range (1e10) are ignored
        gt_boxes = [[0, 0, 2e5, 2e5] if rng.random() < 0.5 else b for b in gt_boxes]
        dt_boxes = [[0, 0, 2e5, 1.5e5] if rng.random() < 0.5 else b for b in dt_boxes]
    return gt_boxes, gt_labels, dt_boxes, dt_labels, dt_scores


def test_coco_ap_equals_pycocotools_on_random_cases():
    rng = random.Random(1234)
    cases = [random_case(rng) for _ in range(300)]
    worst = 0.0
    for case in cases:
        ours, ref = coco_ap(*case), pycocotools_ap(*case)
        worst = max(worst, abs(ours[0] - ref[0]), abs(ours[1] - ref[1]))
        assert ours == pytest.approx(ref, abs=1e-9), case
    assert worst <= 1e-9


def test_coco_ap_max_dets_and_ignored_areas_match_pycocotools():
    rng = random.Random(7)
    gt = [[i * 10, 0, i * 10 + 8, 8] for i in range(30)] + [[0, 0, 2e5, 2e5]]
    gl = ["a"] * 31
    dt = [[i * 10 + rng.randint(0, 2), 0, i * 10 + 8, 8] for i in range(30)] * 4 + [[0, 0, 2e5, 1e5], [0, 0, 3e5, 3e5]]
    dl = ["a"] * len(dt)
    ds = [rng.choice([0.3, 0.6, 0.9]) for _ in dt]  # 122 detections: maxDets=100 cuts, with ties
    assert coco_ap(gt, gl, dt, dl, ds) == pytest.approx(pycocotools_ap(gt, gl, dt, dl, ds), abs=1e-9)


def test_coco_ap_hand_worked():
    # one gt, one prediction with IoU 0.8: matched at thresholds .50..0.80 (7 of 10) -> AP 0.7, AP50 1
    ap, ap50 = coco_ap([[0, 0, 10, 10]], ["a"], [[0, 0, 10, 8]], ["a"], [1.0])
    assert ap == pytest.approx(0.7, abs=1e-12) and ap50 == pytest.approx(1.0, abs=1e-12)
    # a category with no prediction averages in as 0: (1 + 0) / 2
    ap, _ = coco_ap([[0, 0, 10, 10], [20, 20, 30, 30]], ["a", "b"], [[0, 0, 10, 10]], ["a"], [1.0])
    assert ap == pytest.approx(0.5, abs=1e-12)
    assert coco_ap([], [], [[0, 0, 1, 1]], ["a"], [1.0]) == (-1.0, -1.0)
    huge = [[0, 0, 200000, 100000]]  # 2e10 px²: beyond COCO's "all" area range, which ignored it (AP 0)
    assert coco_ap(huge, ["a"], huge, ["a"], [1.0]) == pytest.approx((1.0, 1.0), abs=1e-12)


def det(*items):
    return "<think>.</think><answer>" + json.dumps(list(items)) + "</answer>"


GT = json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "cat"}, {"bbox_2d": [20, 20, 40, 40], "label": "dog"}])
CAT = {"bbox_2d": [0, 0, 10, 10], "label": "cat", "score": 0.9}
DOG = {"bbox_2d": [20, 20, 40, 40], "label": "dog", "score": 0.8}


def test_det_map_perfect_partial_and_penalty():
    perfect, one, ghost, dup = det(CAT, DOG), det(CAT), det(CAT, DOG, {"bbox_2d": [50, 50, 60, 60], "label": "unicorn"}), det(CAT, DOG, CAT)
    r = det_map([perfect, one, ghost, dup], solution=[GT] * 4)
    assert r[0] == pytest.approx(1.0, abs=1e-12)
    assert r[1] == pytest.approx(0.5, abs=1e-12)  # the dog category has AP 0
    assert r[2] == pytest.approx(2 / 3, abs=1e-12)  # AP 1 x min(1, 2/3): the hallucinated label costs
    assert r[3] == pytest.approx(2 / 3, abs=1e-12)  # a duplicate: AP stays 1 (lower score), penalty 2/3
    assert r[2] < r[0] and r[3] < r[0]


def test_det_map_counts_unlabelled_and_malformed_predictions():
    bad = det(CAT, DOG, {"bbox_2d": [10, 10, 0, 0], "label": "cat"}, {"bbox_2d": [1, 1, 5, 5]})
    assert det_map([bad], solution=[GT])[0] == pytest.approx(0.5, abs=1e-12)  # L_pred = 4


def test_det_map_empty_rules():
    empty = json.dumps([])
    out = det_map(["<answer>[]</answer>", "<answer>None</answer>", "no answer", det(CAT), "<answer>[]</answer>",
                   "<answer>I see things</answer>"], solution=[empty, empty, empty, empty, GT, empty])
    assert out == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0]


def test_det_ap50_uses_iou_half():
    loose = det({"bbox_2d": [0, 0, 10, 6], "label": "cat"}, DOG)  # IoU 0.6: counts at .5 only up to .6
    ap50, ap = det_ap50([loose], solution=[GT])[0], det_map([loose], solution=[GT])[0]
    assert ap50 == pytest.approx(1.0, abs=1e-12) and ap == pytest.approx((0.3 + 1.0) / 2, abs=1e-12)


def test_missing_scores_are_one_and_keep_answer_order():
    # both without a score (= 1.0): COCOeval's stable sort keeps the answer's order
    a = det({"bbox_2d": [0, 0, 10, 10], "label": "cat"}, {"bbox_2d": [0, 0, 10, 9], "label": "cat"})
    gt = json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "cat"}])
    parsed = parse_answer(a)
    boxes = [d.box for d in parsed.detections]
    expected = pycocotools_ap([[0, 0, 10, 10]], ["cat"], boxes, ["cat", "cat"], [1.0, 1.0])[0]
    assert det_map([a], solution=[gt])[0] == pytest.approx(expected * 0.5, abs=1e-12)


def test_invalid_ground_truth_gives_none():
    assert det_map([det(CAT)], solution=['[{"bbox_2d": [0, 0, 10], "label": "cat"}]']) == [None]
    assert det_map([det(CAT)]) == [None]
