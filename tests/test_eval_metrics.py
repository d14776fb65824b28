"""Evaluation metrics against hand-computed values and against pycocotools run directly."""

from __future__ import annotations

import math

import pytest

from vlm_r1.evaluation import (
    ImageAnnotations,
    ScoredBoxes,
    classification_metrics,
    coco_metrics,
    counting_metrics,
    paired_bootstrap,
    rec_metrics,
)
from vlm_r1.evaluation.runner import FrameConverter, infer_task
from vlm_r1.modules import get_module
from vlm_r1.rewards.parsing import parse_answer


# ------------------------------------------------------------------------------------------------ REC
def test_rec_metrics_hand_computed():
    gt = [[0, 0, 10, 10], [0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 4, 4]]
    preds = [
        [0, 0, 10, 10],  # IoU 1
        [0, 0, 10, 5],  # IoU 0.5 exactly -> a hit at 0.5
        [15, 10, 25, 20],  # IoU 50 / 150 = 1/3 -> a miss
        None,  # no valid single box -> IoU 0, still counted
    ]
    m = rec_metrics(preds, gt, thresholds=(0.5, 0.75))
    assert m["n"] == 4
    assert m["acc@0.5"] == pytest.approx(0.5)
    assert m["acc@0.75"] == pytest.approx(0.25)
    assert m["mean_iou"] == pytest.approx((1 + 0.5 + 1 / 3 + 0) / 4)
    assert m["answered"] == pytest.approx(0.75)


def test_rec_single_box_rule_from_text():
    from vlm_r1.evaluation import single_box

    assert single_box(parse_answer("<answer>[1, 2, 3, 4]</answer>")) == (1, 2, 3, 4)
    assert single_box(parse_answer("<answer>[1, 2, 3, 4] [5, 6, 7, 8]</answer>")) is None  # hedging
    assert single_box(parse_answer("<answer>[3, 2, 1, 4]</answer>")) is None  # reversed
    assert single_box(parse_answer("[1, 2, 3, 4]")) is None  # no answer tags


# ------------------------------------------------------------------------------------------------ classification / counting
def test_classification_and_counting_hand_computed():
    answers = [parse_answer(t) for t in ("<answer>The Circle.</answer>", "<answer>circle or star</answer>", "circle")]
    m = classification_metrics(answers, ['"circle"', '"circle"', '"circle"'])
    assert m == {"accuracy": pytest.approx(1 / 3), "answered": pytest.approx(2 / 3), "n": 3}

    answers = [parse_answer(t) for t in ("<answer>3</answer>", "<answer>three</answer>", "<answer>4</answer>", "no")]
    m = counting_metrics(answers, ["3", "3", "3", "3"])
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["answered"] == pytest.approx(0.75)
    assert m["mae_answered"] == pytest.approx(0.5)  # |3-3| and |4-3| ("three" is not a numeral here)


# ------------------------------------------------------------------------------------------------ detection
def test_detection_hand_computed_ap():
    gt = [ImageAnnotations([[0, 0, 10, 10]], ["red circle"], 100, 100)]
    perfect = coco_metrics(gt, [ScoredBoxes([[0, 0, 10, 10]], ["red circle"], [0.9])])
    assert perfect["mAP"] == pytest.approx(1.0) and perfect["AP50"] == pytest.approx(1.0)
    # a false positive ranked above the true positive: precision 1/2 at recall 1 -> AP 0.5 at every threshold
    fp_first = coco_metrics(gt, [ScoredBoxes([[50, 50, 60, 60], [0, 0, 10, 10]], ["red circle"] * 2, [0.9, 0.8])])
    assert fp_first["mAP"] == pytest.approx(0.5) and fp_first["AP50"] == pytest.approx(0.5)
    # ranked below: AP stays 1
    fp_last = coco_metrics(gt, [ScoredBoxes([[50, 50, 60, 60], [0, 0, 10, 10]], ["red circle"] * 2, [0.1, 0.8])])
    assert fp_last["mAP"] == pytest.approx(1.0)
    # wrong label: nothing matches that category's ground truth
    assert coco_metrics(gt, [ScoredBoxes([[0, 0, 10, 10]], ["blue star"], [0.9])])["mAP"] == 0.0
    # class-agnostic ignores the label
    assert coco_metrics(gt, [ScoredBoxes([[0, 0, 10, 10]], ["blue star"])], class_agnostic=True)["mAP"] == pytest.approx(1.0)
    # no predictions at all
    assert coco_metrics(gt, [ScoredBoxes()])["mAP"] == 0.0


def test_detection_matches_pycocotools_directly():
    """Random scenes: our xyxy/label conversion + COCOeval equals COCOeval on hand-built xywh COCO dicts."""
    import contextlib
    import io

    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    labels = ["red circle", "blue square", "green star"]
    gts, preds, images, anns, results = [], [], [], [], []
    for image_id in range(1, 31):
        boxes, names = [], []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.uniform(0, 80, 2)
            w, h = rng.uniform(4, 40, 2)
            boxes.append([x, y, x + w, y + h])
            names.append(labels[rng.integers(3)])
            anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": labels.index(names[-1]) + 1,
                         "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
        pboxes, pnames, pscores = [], [], []
        for box, name in zip(boxes, names):  # jittered copies, some relabelled, plus random false positives
            if rng.random() < 0.8:
                j = rng.normal(0, 3, 4)
                b = [box[0] + j[0], box[1] + j[1], box[2] + abs(j[2]), box[3] + abs(j[3])]
                pboxes.append(b)
                pnames.append(name if rng.random() < 0.9 else labels[rng.integers(3)])
                pscores.append(float(rng.random()))
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 80, 2)
            pboxes.append([x, y, x + 10, y + 10])
            pnames.append(labels[rng.integers(3)])
            pscores.append(float(rng.random()))
        for b, n, s in zip(pboxes, pnames, pscores):
            results.append({"image_id": image_id, "category_id": labels.index(n) + 1,
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s})  # fmt: skip
        images.append({"id": image_id, "width": 120, "height": 120})
        gts.append(ImageAnnotations(boxes, names, 120, 120))
        preds.append(ScoredBoxes(pboxes, [n.upper() for n in pnames], pscores))  # case must not matter
    ours = coco_metrics(gts, preds)

    present = sorted({a["category_id"] for a in anns})
    dataset = {"images": images, "annotations": anns,
               "categories": [{"id": i + 1, "name": n} for i, n in enumerate(labels)]}  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert len(present) == 3
    for name, value in zip(("mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"), ev.stats[:6]):
        assert ours[name] == pytest.approx(float(value), abs=1e-12), name
    assert ours["n_images"] == 30


# ------------------------------------------------------------------------------------------------ runner pieces
def test_infer_task():
    assert infer_task("[1, 2, 3, 4]") == "rec"
    assert infer_task('[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]') == "detection"
    assert infer_task("[]") == "detection"
    assert infer_task("3") == "counting"
    assert infer_task('"circle"') == "classification"
    with pytest.raises(ValueError):
        infer_task("true")


class _FakeProcessor:  # model_input_size of Qwen reads the image processor's settings
    class image_processor:  # noqa: N801
        size = {"shortest_edge": 56 * 56, "longest_edge": 224 * 224}
        patch_size = 14
        merge_size = 2


def test_frame_converter_relative_and_resized():
    rel = FrameConverter(get_module("qwen2_vl"), _FakeProcessor())
    answer = rel("<answer>[500, 250, 1000, 500]</answer>", [(200, 100)])
    assert answer.detections[0].box == pytest.approx((100, 25, 200, 50))
    pix = FrameConverter(get_module("qwen2_5_vl"), _FakeProcessor())
    # 200x100 is resized to a multiple of 28 within [56², 224²]: 196x112
    answer = pix("<answer>[98, 56, 196, 112]</answer>", [(200, 100)])
    assert answer.detections[0].box == pytest.approx((100, 50, 200, 100))


def test_paired_bootstrap():
    r = paired_bootstrap([0, 0, 1, 1] * 50, [1, 0, 1, 1] * 50)
    assert r["delta"] == pytest.approx(0.25) and r["n"] == 200
    lo, hi = r["ci95"]
    assert lo < 0.25 < hi and not math.isnan(lo)
