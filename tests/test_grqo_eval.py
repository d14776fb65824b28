"""`vlm-r1 eval` on a Grounding DINO checkpoint: zero-shot, after `vlm-r1 grqo`, and the options it refuses."""

from __future__ import annotations

import json
import shutil

import pytest

from vlm_r1.cli import main as cli
from vlm_r1.grqo.checkpointing import CLASSES_FILE
from vlm_r1.grqo.data import class_names, load_detection_examples


def _eval(capsys, *argv):
    code = cli(["eval", *map(str, argv), "--disable_tqdm", "true"])
    return code, capsys.readouterr()


def test_a_grqo_run_scores_the_same_under_vlm_r1_eval(tiny_dino, shapes, tmp_path, capsys, caplog):
    """The saved model records its prompt's classes (here not in sorted order), and `vlm-r1 eval` prompts with them:
    its COCO metrics equal the ones the run computed at its end."""
    from vlm_r1.grqo.train import main as grqo

    train_labels = class_names(load_detection_examples(shapes[0]))
    classes = train_labels[::-1]  # another order than the default's
    run = tmp_path / "run"
    assert grqo([str(a) for a in ("--model_name_or_path", tiny_dino, "--train_data", shapes[0], "--eval_data",
                                  shapes[1], "--output_dir", run, "--max_steps", "2", "--batch_size", "2",
                                  "--save_steps", "2", "--classes", *classes)]) == 0  # fmt: skip
    capsys.readouterr()
    for folder in (run, run / "checkpoint-2"):
        assert json.loads((folder / CLASSES_FILE).read_text())["classes"] == classes
    expected = json.loads((run / "metrics.json").read_text())["metrics"]["grqo_detection_test"]

    code, out = _eval(capsys, "--model_name_or_path", run, "--data", shapes[1], "--output_dir", tmp_path / "eval")
    assert code == 0, out.err
    result = json.loads((tmp_path / "eval" / "grqo_detection_test.json").read_text())
    assert result["classes"][: len(classes)] == classes
    metrics = result["metrics"]["detection"]
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key
    assert "grqo_detection_test" in out.out and "mAP" in out.out  # the table

    # without the record the prompt is the file's labels, sorted
    bare = tmp_path / "bare"
    shutil.copytree(run, bare)
    (bare / CLASSES_FILE).unlink()
    with caplog.at_level("INFO", logger="vlm_r1"):
        code, out = _eval(capsys, "--model_name_or_path", bare, "--data", shapes[1], "--output_dir", tmp_path / "eval_bare")
    assert code == 0 and "records no training classes" in caplog.text
    result = json.loads((tmp_path / "eval_bare" / "grqo_detection_test.json").read_text())
    assert result["classes"] == class_names(load_detection_examples(shapes[1]))


def test_zero_shot_evaluation_writes_every_images_detections(tiny_dino, shapes, tmp_path, capsys):
    code, out = _eval(capsys, "--model_name_or_path", tiny_dino, "--data", shapes[1], "--output_dir", tmp_path / "ev",
                      "--max_samples", "3", "--classes", "Red Circle")  # fmt: skip
    assert code == 0, out.err
    result = json.loads((tmp_path / "ev" / "grqo_detection_test.json").read_text())
    examples = load_detection_examples(shapes[1])[:3]
    assert result["n"] == 3 and result["metrics"]["detection"]["n_images"] == 3
    assert result["classes"] == class_names(examples, ["red circle"])  # given first (normalised), then the file's
    for prediction, example in zip(result["predictions"], examples):
        assert prediction["source"] == example.source
        assert [o["label"] for o in prediction["solution"]] == list(example.labels)
        assert len(prediction["boxes"]) == len(prediction["labels"]) == len(prediction["scores"]) > 0
        assert set(prediction["labels"]) <= set(result["classes"])


def test_options_a_detector_does_not_read_are_refused(tiny_dino, shapes, tmp_path, capsys):
    base = ["--model_name_or_path", tiny_dino, "--data", shapes[1]]
    for extra, named in ((["--do_sample", "true"], "do_sample"), (["--question_template", "Q: {question}"], "question_template"),
                         (["--max_pixels", "5000"], "max_pixels"), (["--task", "rec"], "task rec"),
                         (["--max_new_tokens", "5", "--dtype", "bfloat16"], "max_new_tokens, dtype")):  # fmt: skip
        code, out = _eval(capsys, *base, *extra)
        assert code == 2 and f"it does not read {named}, which only VLM checkpoints take" in out.err, (extra, out.err)
    code, out = _eval(capsys, *base, "--classes", "red. circle")
    assert code == 2 and "--classes: class names must be non-empty and contain no '.' or '?'" in out.err


def test_rows_that_are_not_detection_rows_are_listed_before_the_model_loads(tiny_dino, shapes, tmp_path, capsys):
    rows = shapes[1].read_text().splitlines()
    bad = json.loads(rows[1])
    bad["conversations"][1]["value"] = [1, 2, 3, 4]  # a REC answer
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([rows[0], json.dumps(bad), rows[2]]) + "\n")
    shutil.copytree(shapes[1].parent / "grqo_source_test", tmp_path / "grqo_source_test")
    code, out = _eval(capsys, "--model_name_or_path", tiny_dino, "--data", path)
    assert code == 2 and f"{path}:2: solution: a detector is scored on detection rows only" in out.err
    assert "nothing was evaluated" in out.err


def test_classes_are_refused_for_a_vlm_and_an_unreadable_record_is_named(tiny_model_dir, tiny_dino, shapes, tmp_path,
                                                                         capsys):  # fmt: skip
    code, out = _eval(capsys, "--model_name_or_path", tiny_model_dir(), "--data", shapes[1], "--classes", "red circle")
    assert code == 2 and "classes only applies to a detector checkpoint" in out.err
    broken = tmp_path / "broken"
    shutil.copytree(tiny_dino, broken)
    (broken / CLASSES_FILE).write_text('{"classes": "red circle"}')
    code, out = _eval(capsys, "--model_name_or_path", broken, "--data", shapes[1])
    assert code == 2 and f"{broken / CLASSES_FILE}: unreadable" in out.err and "pass --classes" in out.err
    code, out = _eval(capsys, "--model_name_or_path", broken, "--data", shapes[1], "--classes", "red circle")
    assert code == 0, out.err  # the advice works: the given classes replace the unreadable record
