"""Evaluation metrics against hand-computed values and against pycocotools run directly."""

from __future__ import annotations

import json
import math

import pytest

from vlm_r1.evaluation import (
    ImageAnnotations,
    ScoredBoxes,
    answer_metrics,
    coco_metrics,
    counting_metrics,
    paired_bootstrap,
    rec_metrics,
)
from vlm_r1.evaluation.rec import rec_scores
from vlm_r1.evaluation.runner import GenerationSettings, infer_task, row_tasks
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
    assert m["acc@0.5"] == pytest.approx(0.5, abs=1e-12)
    assert m["acc@0.75"] == pytest.approx(0.25, abs=1e-12)
    assert m["mean_iou"] == pytest.approx((1 + 0.5 + 1 / 3 + 0) / 4, abs=1e-12)
    assert m["answered"] == pytest.approx(0.75, abs=1e-12)


def test_rec_scores_single_box_rule_from_text():
    """Per-row REC scores are the `iou` reward's: exactly one valid box inside <answer>, else 0."""
    texts = [
        "<answer>[0, 0, 10, 5]</answer>",  # IoU 0.5
        "<answer>[0, 0, 10, 10] [5, 6, 7, 8]</answer>",  # hedging
        "<answer>[10, 10, 0, 0]</answer>",  # reversed
        "[0, 0, 10, 10]",  # no answer tags
    ]
    scores = rec_scores([parse_answer(t) for t in texts], ["[0, 0, 10, 10]"] * 4)
    assert scores == pytest.approx([0.5, 0.0, 0.0, 0.0], abs=1e-12)


# ------------------------------------------------------------------------------------------------ classification / counting
def test_classification_and_counting_hand_computed():
    answers = [parse_answer(t) for t in ("<answer>The Circle.</answer>", "<answer>circle or star</answer>", "circle")]
    m = answer_metrics("classification", answers, ['"circle"', '"circle"', '"circle"'])
    assert m == {"accuracy": pytest.approx(1 / 3, abs=1e-12), "answered": pytest.approx(2 / 3, abs=1e-12), "n": 3}

    answers = [parse_answer(t) for t in ("<answer>3</answer>", "<answer>three</answer>", "<answer>4</answer>", "no")]
    m = counting_metrics(answers, ["3", "3", "3", "3"])
    assert m["accuracy"] == pytest.approx(0.5, abs=1e-12)
    assert m["answered"] == pytest.approx(0.75, abs=1e-12)
    assert m["mae_answered"] == pytest.approx(1 / 3, abs=1e-12)  # |3-3|, |three-3| and |4-3|, by number_match's rule

    # what number_match does not read as a number stays out of the error: no NaN or inf in the metrics
    answers = [parse_answer(f"<answer>{t}</answer>") for t in ("nan", "inf", "1e999", "\u0663", "5")]
    m = counting_metrics(answers, [3] * 5)
    assert m["mae_answered"] == pytest.approx(2.0, abs=1e-12) and m["accuracy"] == 0.0


# ------------------------------------------------------------------------------------------------ detection
def test_detection_hand_computed_ap():
    gt = [ImageAnnotations([[0, 0, 10, 10]], ["red circle"], 100, 100)]
    perfect = coco_metrics(gt, [ScoredBoxes([[0, 0, 10, 10]], ["red circle"], [0.9])])
    assert perfect["mAP"] == pytest.approx(1.0, abs=1e-12) and perfect["AP50"] == pytest.approx(1.0, abs=1e-12)
    # a false positive ranked above the true positive: precision 1/2 at recall 1 -> AP 0.5 at every threshold
    fp_first = coco_metrics(gt, [ScoredBoxes([[50, 50, 60, 60], [0, 0, 10, 10]], ["red circle"] * 2, [0.9, 0.8])])
    assert fp_first["mAP"] == pytest.approx(0.5, abs=1e-12) and fp_first["AP50"] == pytest.approx(0.5, abs=1e-12)
    # ranked below: AP stays 1
    fp_last = coco_metrics(gt, [ScoredBoxes([[50, 50, 60, 60], [0, 0, 10, 10]], ["red circle"] * 2, [0.1, 0.8])])
    assert fp_last["mAP"] == pytest.approx(1.0, abs=1e-12)
    # wrong label: nothing matches that category's ground truth
    assert coco_metrics(gt, [ScoredBoxes([[0, 0, 10, 10]], ["blue star"], [0.9])])["mAP"] == 0.0
    # class-agnostic ignores the label
    agnostic = coco_metrics(gt, [ScoredBoxes([[0, 0, 10, 10]], ["blue star"])], class_agnostic=True)
    assert agnostic["mAP"] == pytest.approx(1.0, abs=1e-12)
    # no predictions at all: 0 where there is ground truth, COCOeval's -1 for area ranges without any (as with
    # predictions), so the per-area numbers of two runs compare
    empty = coco_metrics(gt, [ScoredBoxes()])
    assert (empty["mAP"], empty["AP_small"], empty["AP_medium"], empty["AP_large"]) == (0.0, 0.0, -1.0, -1.0)
    assert coco_metrics(gt, [ScoredBoxes([[50, 50, 60, 60]], ["red circle"], [0.9])])["AP_medium"] == -1.0
    # predictions that do not line up with their labels or scores, or carry a NaN score, are refused
    for bad in (ScoredBoxes([[0, 0, 10, 10], [1, 1, 9, 9]], ["red circle"], [0.9, 0.8]),
                ScoredBoxes([[0, 0, 10, 10], [1, 1, 9, 9]], ["red circle"] * 2, [0.9]),
                ScoredBoxes([[0, 0, 10, 10]], ["red circle"], [float("nan")])):  # fmt: skip
        with pytest.raises(ValueError, match="image 1: "):
            coco_metrics(gt, [bad])


def test_detection_map_does_not_depend_on_the_row_order_when_answers_carry_no_score():
    """Answers without scores all tie at 1.0, and COCOeval breaks ties across images by image id: a hit then a miss
    scored AP 1, the same two rows the other way round 0.5."""
    hit = (ImageAnnotations([[0, 0, 10, 10]], ["a"], 50, 50), ScoredBoxes([[0, 0, 10, 10]], ["a"]))
    miss = (ImageAnnotations([[0, 0, 10, 10]], ["a"], 60, 60), ScoredBoxes([[30, 30, 40, 40]], ["a"]))
    forward = coco_metrics([hit[0], miss[0]], [hit[1], miss[1]])
    backward = coco_metrics([miss[0], hit[0]], [miss[1], hit[1]])
    assert forward == backward
    with pytest.raises(ValueError, match="image 2: a predicted score is NaN"):  # errors still count rows in order
        coco_metrics([hit[0], miss[0]], [hit[1], ScoredBoxes([[0, 0, 1, 1]], ["a"], [float("nan")])])


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
    """From the decoded ground truth, decoded once: the string "7" (a gpt value '"7"') is a class, not a count."""
    assert infer_task([1, 2, 3, 4]) == "rec"
    assert infer_task([{"bbox_2d": [1, 2, 3, 4], "label": "x"}]) == "detection"
    assert infer_task([]) == "detection"
    assert infer_task(3) == "counting"
    assert infer_task("circle") == "classification"
    assert infer_task("7") == "classification" and infer_task("true") == "classification"
    with pytest.raises(ValueError):
        infer_task(True)


def _row(solution: str, line: int, reward: str | None = None):
    from vlm_r1.data import Sample

    return Sample(images=(), image_sizes=(), problem="q", solution=solution, reward=reward, source=f"rows.jsonl:{line}")


def test_row_tasks_checked_before_generation_with_file_line():
    from vlm_r1.data import DataError

    rows = [_row("[1, 2, 3, 4]", 1), _row('[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]', 2)]
    assert row_tasks(rows) == ["rec", "detection"]
    with pytest.raises(DataError, match=r"(?m)^rows.jsonl:2: solution: .*task 'rec'"):
        row_tasks(rows, "rec")  # a detection row under --task rec
    with pytest.raises(DataError, match=r"(?m)^rows.jsonl:3: solution: cannot tell the task"):
        row_tasks(rows + [_row("true", 3)])
    with pytest.raises(DataError, match=r"(?m)^rows.jsonl:4: solution: REC ground truth must have x2 > x1"):
        row_tasks([_row("[3, 2, 1, 4]", 4)])  # inferred REC, validated by the reward's validator
    with pytest.raises(ValueError, match="task must be"):
        row_tasks(rows, "grounding")


def test_a_count_is_a_whole_number_where_a_count_is_asked_for():
    """A row scored as a count (named "counting" or "count", or under `--task counting`) must hold a whole number >= 0;
    "numeric" rows, scored by the same exact-match rule, and rows whose number only gives the task its name (no
    `reward`: training's number_match accepts them) may hold any finite number."""
    from vlm_r1.data import DataError

    assert row_tasks([_row("-2.5", 1, "numeric"), _row("2.5", 2), _row("4.0", 3, "count")]) == ["counting"] * 3
    for row, task in ((_row("-1", 4, "counting"), "auto"), (_row("2.5", 5), "counting"), (_row("2.5", 6, "numeric"), "counting")):
        with pytest.raises(DataError, match=r"(?m)^rows.jsonl:\d: solution: a count must be a whole number >= 0"):
            row_tasks([row], task)


def test_row_tasks_reports_every_bad_row_at_once():
    from vlm_r1.data import DataError

    rows = [_row('"maybe"', 1, "yes_no"), _row("[1, 2, 3]", 2, "rec"), _row('{"foo": 1}', 3), _row("[1, 2, 3, 4]", 4),
            _row('"cat"', 5, "iuo")]  # fmt: skip
    with pytest.raises(DataError) as e:
        row_tasks(rows)
    assert [(p.source, p.field) for p in e.value.problems] == [
        ("rows.jsonl:1", "solution"), ("rows.jsonl:2", "solution"), ("rows.jsonl:3", "solution"),
        ("rows.jsonl:5", "reward")]  # fmt: skip
    assert "unknown accuracy reward 'iuo'" in str(e.value)  # not a guess from the ground truth's shape


def test_a_rows_reward_column_decides_its_task():
    """The reward a training row names decides how evaluation scores it; the ground truth's shape only without one."""
    rows = [_row('"A"', 1, "mc"), _row('"three"', 2, "count"), _row('"yes"', 3, "yes_no"), _row("[1, 2, 3, 4]", 4, "giou"),
            _row('[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]', 5, "det_iou"), _row('"cat"', 6, "my_rewards:score"),
            _row('"cat"', 7)]  # fmt: skip
    assert row_tasks(rows) == ["multiple_choice", "counting", "yes_no", "rec", "detection", "classification",
                               "classification"]  # fmt: skip
    assert row_tasks(rows[:1], "classification") == ["classification"]  # --task overrides the column
    with pytest.raises(ValueError, match=r"(?m)^rows.jsonl:8: solution: multiple-choice ground truth must be one"):
        row_tasks([_row('"cat"', 8, "mc")])
    with pytest.raises(ValueError, match=r"(?m)^rows.jsonl:9: reward: unknown accuracy reward 'iuo'"):
        row_tasks([_row("[1, 2, 3, 4]", 9, "iuo")], "rec")  # --task does not make an unknown name valid


def test_multiple_choice_yes_no_and_number_word_counting_by_their_training_rewards():
    def answers(*texts):
        return [parse_answer(f"<answer>{t}</answer>") for t in texts]

    m = answer_metrics("multiple_choice", answers("(B)", "B. Paris", "A or B"), ['"B"'] * 3)
    assert m == {"accuracy": pytest.approx(1 / 3, abs=1e-12), "answered": 1.0, "n": 3}
    assert answer_metrics("yes_no", answers("Yes!", "yes and no"), ['"yes"'] * 2)["accuracy"] == 0.5
    assert counting_metrics(answers("3", "3.0", "three"), ['"three"'] * 3)["accuracy"] == 1.0


def test_results_are_standard_json_even_when_an_error_overflows(tmp_path):
    import json

    from vlm_r1.evaluation.runner import write_json

    answers = [parse_answer(f"<answer>{t}</answer>") for t in ("3", "1e308", "-1e308")]
    assert counting_metrics(answers, [3] * 3)["mae_answered"] == pytest.approx(2 * (1e308 / 3), rel=1e-12)  # no overflow
    far = [parse_answer(f"<answer>{t}</answer>") for t in ("1e308", "1e308")]
    mae = counting_metrics(far, [-1e308] * 2)["mae_answered"]  # each error alone is beyond a float
    assert mae == math.inf
    text = write_json({"metrics": {"mae_answered": mae, "nan": math.nan}}, tmp_path / "r.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}")) == {
        "metrics": {"mae_answered": "inf", "nan": "nan"}}


def test_sampling_options_need_do_sample():
    GenerationSettings(do_sample=True, temperature=0.7, top_p=0.9, seed=3, num_samples=4)
    for option in ({"temperature": 0.7}, {"top_p": 0.9}, {"seed": 3}, {"num_samples": 4}):
        with pytest.raises(ValueError, match=f"{next(iter(option))} only applies when sampling.*--do_sample"):
            GenerationSettings(**option)


def test_eval_refuses_ignored_options():
    from vlm_r1.evaluate import parse_args

    base = ["--model_name_or_path", "x", "--data", "a.jsonl"]
    assert parse_args(base)[2].do_sample is False
    with pytest.raises(ValueError, match="--do_sample"):
        parse_args(base + ["--temperature", "0.5"])
    with pytest.raises(ValueError, match="lora_r only applies to training"):
        parse_args(base + ["--lora_r", "8"])
    with pytest.raises(ValueError, match="dtype"):
        parse_args(base + ["--dtype", "fp8"])
    with pytest.raises(ValueError, match="distinct names"):
        parse_args(["--model_name_or_path", "x", "--data", "a/t.jsonl", "b/t.jsonl"])


class _FakeProcessor:  # model_input_size of Qwen reads the image processor's settings
    class image_processor:  # noqa: N801
        size = {"shortest_edge": 56 * 56, "longest_edge": 224 * 224}
        patch_size = 14
        merge_size = 2


def test_answer_frames_relative_and_resized():
    """The runner converts through VLMModule.answer_to_original (the GRPO trainer's conversion)."""
    rel = get_module("qwen2_vl").answer_to_original(
        parse_answer("<answer>[500, 250, 1000, 500]</answer>"), [(200, 100)], _FakeProcessor()
    )
    assert rel.detections[0].box == pytest.approx((100, 25, 200, 50), abs=1e-9)
    # Qwen2.5-VL: 200x100 is resized to a multiple of 28 within [56², 224²]: 196x112
    pix = get_module("qwen2_5_vl").answer_to_original(
        parse_answer("<answer>[98, 56, 196, 112]</answer>"), [(200, 100)], _FakeProcessor()
    )
    assert pix.detections[0].box == pytest.approx((100, 50, 200, 100), abs=1e-9)


def test_paired_bootstrap():
    r = paired_bootstrap([0, 0, 1, 1] * 50, [1, 0, 1, 1] * 50)
    assert r["delta"] == pytest.approx(0.25, abs=1e-12) and r["n"] == 200
    lo, hi = r["ci95"]
    assert lo < 0.25 < hi and not math.isnan(lo)


@pytest.mark.parametrize("do_sample", [False, True])
def test_decoding_ignores_the_checkpoints_extras(tiny_model_dir, tmp_path, do_sample):
    """A checkpoint's generation_config.json with beams, penalties and truncations does not change evaluation."""
    import json
    import shutil

    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlm_r1.data import load_rows
    from vlm_r1.evaluation.runner import generate
    from vlm_r1.synthetic import write_split

    plain = tiny_model_dir("qwen2_vl")
    extras = tmp_path / "extras"
    shutil.copytree(plain, extras)
    config = json.loads((extras / "generation_config.json").read_text())
    config.update(num_beams=3, repetition_penalty=3.0, no_repeat_ngram_size=1, min_p=0.5, typical_p=0.3,
                  suppress_tokens=list(range(10)), min_new_tokens=12)
    (extras / "generation_config.json").write_text(json.dumps(config))
    samples = list(load_rows(write_split(tmp_path / "rows", "rec", "test", 3, seed=0)))
    settings = GenerationSettings(max_new_tokens=12, batch_size=3, do_sample=do_sample)
    texts = {}
    for name, folder in (("plain", plain), ("extras", extras)):
        model = AutoModelForImageTextToText.from_pretrained(folder)
        assert (model.generation_config.num_beams == 3) == (name == "extras")
        processor = AutoProcessor.from_pretrained(folder, padding_side="left")
        texts[name] = generate(model, processor, samples, "{question}", settings=settings)
    assert texts["extras"] == texts["plain"]


def test_greedy_evaluation_does_not_depend_on_batching_or_the_processors_padding_side(tiny_model_dir, tmp_path):
    """Rows of different prompt lengths, decoded one by one and five at a time, with a processor that pads on the
    right: the evaluator pads on the left itself, so every row gets the same completion."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlm_r1.data import load_rows
    from vlm_r1.evaluation.runner import generate
    from vlm_r1.synthetic import write_split

    folder = tiny_model_dir("qwen2_vl")
    model = AutoModelForImageTextToText.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder, padding_side="right")
    samples = [*load_rows(write_split(tmp_path, "rec", "test", 3, seed=0)),
               *load_rows(write_split(tmp_path, "counting", "test", 2, seed=0))]  # fmt: skip
    one_by_one = generate(model, processor, samples, "{question}", settings=GenerationSettings(max_new_tokens=10,
                                                                                                batch_size=1))
    together = generate(model, processor, samples, "{question}", settings=GenerationSettings(max_new_tokens=10,
                                                                                              batch_size=5))
    assert together == one_by_one


def test_sampling_settings_out_of_range_are_refused():
    for kwargs in ({"temperature": 0.0}, {"top_p": 1.5}, {"top_p": 0.0}):
        with pytest.raises(ValueError, match="temperature must be > 0 and top_p in"):
            GenerationSettings(do_sample=True, **kwargs)


@pytest.mark.parametrize("flag", [[], ["--trust_remote_code", "true"]])
def test_eval_passes_trust_remote_code_only_when_asked(tmp_path, monkeypatch, flag):
    import vlm_r1.loading
    from vlm_r1.evaluate import main
    from vlm_r1.synthetic import write_split

    seen = []

    def check(model_args, trust_remote_code=False):  # reads the config first: the flag reaches it too
        seen.append(trust_remote_code)

    def load(model_args, trust_remote_code=False):
        seen.append(trust_remote_code)
        raise RuntimeError("stop here")

    monkeypatch.setattr(vlm_r1.loading, "check_model_options", check)
    monkeypatch.setattr(vlm_r1.loading, "load_policy", load)
    data = write_split(tmp_path, "rec", "test", 2, seed=0)
    with pytest.raises(RuntimeError, match="stop here"):
        main(["--model_name_or_path", "x", "--data", str(data), *flag])
    assert seen == [bool(flag)] * 2


def test_eval_shows_a_progress_bar_per_file_in_rows(tiny_model_dir, rec_rows, capsys):
    from vlm_r1.evaluate import main

    argv = ["--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--data", str(rec_rows), "--device", "cpu",
            "--batch_size", "3", "--max_new_tokens", "4"]  # fmt: skip
    main(argv)
    err = capsys.readouterr().err
    assert f"{rec_rows.stem}: 100%" in err and "8/8 " in err
    main([*argv, "--disable_tqdm", "true"])
    assert "8/8" not in capsys.readouterr().err


def test_the_result_records_how_the_model_was_loaded_and_each_boxs_label_and_score(tiny_model_dir, rec_rows,
                                                                                  tmp_path, monkeypatch):
    """The JSON lacked the loading options (max_pixels alone moved Acc@0.5 from 0.25 to 0), held a relative model
    path, and kept no label or score per box (a detection mAP could not be recomputed from it)."""
    import vlm_r1.evaluation.runner as runner
    from vlm_r1.evaluate import main

    answer = '<answer>[{"bbox_2d": [1, 2, 30, 40], "label": "cat", "score": 0.25}, [5, 5, 9, 9]]</answer>'
    monkeypatch.setattr(runner, "generate", lambda model, processor, samples, *a, **k: [[answer] for _ in samples])
    monkeypatch.chdir(tiny_model_dir("qwen2_vl").parent)
    main(["--model_name_or_path", tiny_model_dir("qwen2_vl").name, "--data", str(rec_rows), "--device", "cpu",
          "--max_pixels", "12544", "--output_dir", str(tmp_path / "ev"), "--disable_tqdm", "true"])  # fmt: skip
    result = json.loads((tmp_path / "ev" / f"{rec_rows.stem}.json").read_text())
    assert result["model"] == str(tiny_model_dir("qwen2_vl")) and result["model_options"] == {"max_pixels": 12544}
    assert result["device"] == "cpu" and result["image_root"] is None
    row = result["predictions"][0]
    assert row["labels"] == [["cat", None]] and row["box_scores"] == [[0.25, None]] and len(row["boxes"][0]) == 2
