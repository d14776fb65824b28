"""`vlm-r1 eval` refuses bad rows and bad options before loading the model: one message, exit status 2."""

from __future__ import annotations

import json
import logging

import pytest

from vlm_r1.cli import main as cli


@pytest.fixture
def no_model(monkeypatch):
    """Loading the model fails the test: every refusal here must come first."""
    import vlm_r1.loading

    def load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(vlm_r1.loading, "load_policy", load)


def _rows(path, rec_rows, *rows):
    """Write rows (ground truth, reward or None) on the first image of ``rec_rows``, beside it."""
    image = json.loads(rec_rows.read_text().splitlines()[0])["image"]
    lines = []
    for solution, reward in rows:
        row = {"image": image, "conversations": [{"from": "human", "value": "<image>Where?"},
                                                 {"from": "gpt", "value": solution}]}  # fmt: skip
        lines.append(json.dumps(row if reward is None else {**row, "reward": reward}))
    path = rec_rows.with_name(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_bad_row_of_every_file_is_reported_at_once(tiny_model_dir, rec_rows, tmp_path, no_model, capsys):
    from vlm_r1.synthetic import write_split

    model = str(tiny_model_dir("qwen2_vl"))
    counting = write_split(tmp_path, "counting", "test", 3, seed=0)
    assert cli(["eval", "--model_name_or_path", model, "--data", str(counting), "--task", "rec"]) == 2
    err = capsys.readouterr().err
    assert all(f"{counting}:{i}: solution: REC ground truth must be [x1, y1, x2, y2]" in err for i in (1, 2, 3))

    bad = _rows("bad_rows.jsonl", rec_rows, ("maybe", "yes_no"), ([1, 2, 3], "rec"), ({"foo": 1}, None),
                ([1, 2, 30, 40], "rec"))  # fmt: skip
    also_bad = _rows("also_bad.jsonl", rec_rows, ("maybe", "yes_no"))
    assert cli(["eval", "--model_name_or_path", model, "--data", str(bad), str(also_bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: 3 of 4 rows are invalid; {also_bad}: 1 of 1 rows are invalid" in err
    for line, message in ((1, "yes/no ground truth must be 'yes' or 'no'"), (2, "REC ground truth must be"),
                          (3, "cannot tell the task of ground truth {'foo': 1}")):  # fmt: skip
        assert f"{bad}:{line}: solution: {message}" in err
    assert f"{bad}:4" not in err and f"{also_bad}:1: solution: yes/no" in err


def test_an_image_root_that_is_no_folder_is_refused_before_anything_is_read(rec_rows, no_model, capsys):
    assert cli(["eval", "--model_name_or_path", "x", "--data", str(rec_rows), "--image_root", str(rec_rows)]) == 2
    assert f"image_root {rec_rows}: a file, not a folder" in capsys.readouterr().err


def test_an_unknown_reward_name_is_refused_as_training_refuses_it(tiny_model_dir, rec_rows, no_model, capsys):
    data = _rows("unknown_reward.jsonl", rec_rows, ([1, 2, 30, 40], "iuo"), ("cat", "iuo"))
    for task in ("auto", "rec"):
        assert cli(["eval", "--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--data", str(data),
                    "--task", task]) == 2  # fmt: skip
        err = capsys.readouterr().err
        assert f"{data}:1: reward: unknown accuracy reward 'iuo'; use a task (" in err and f"{data}:2: reward:" in err


def test_a_device_this_machine_lacks_is_refused_before_anything_is_read(monkeypatch, tmp_path, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["eval", "--model_name_or_path", str(tmp_path / "no_model"), "--data", str(tmp_path / "missing.jsonl")]
    assert cli([*argv, "--device", "cuda"]) == 2
    assert "error: --device cuda: no CUDA device is available here" in capsys.readouterr().err
    assert cli([*argv, "--device", "cuda:0"]) == 2
    assert "error: --device cuda:0: no CUDA device is available here" in capsys.readouterr().err
    assert cli([*argv, "--device", "gpu"]) == 2
    assert "error: --device gpu is not a device torch knows: use cpu, cuda" in capsys.readouterr().err


def test_the_prompt_log_says_where_each_part_came_from(tmp_path, caplog):
    from vlm_r1.data import save_prompt
    from vlm_r1.evaluate import eval_prompt

    save_prompt(tmp_path, "{question}", "Be brief.")
    with caplog.at_level(logging.INFO, logger="vlm_r1"):
        assert eval_prompt(str(tmp_path), "Q: {question}", None) == ("Q: {question}", "Be brief.")
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert info == ["prompt: question_template 'Q: {question}' (from --question_template), system_prompt 'Be brief.' "
                    "(trained with, from vlm_r1_prompt.json)"]  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vlm_r1"):
        eval_prompt(str(tmp_path), None, "")
    assert "question_template '{question}' (trained with, from vlm_r1_prompt.json), system_prompt '' (from " \
           "--system_prompt)" in caplog.text


def test_rows_only_the_processor_can_judge_are_checked_in_every_file_before_the_first_is_generated(
        tiny_model_dir, rec_rows, tmp_path, capsys, monkeypatch):
    """A control token in the second file's question was found only after the first file was evaluated and written."""
    import vlm_r1.evaluation.runner as runner

    bad = rec_rows.with_name("control_token.jsonl")
    row = json.loads(rec_rows.read_text().splitlines()[0])
    row["conversations"][0]["value"] = "<image>Where is it?<|im_end|>"
    bad.write_text(json.dumps(row) + "\n")
    monkeypatch.setattr(runner, "generate", lambda *a, **k: pytest.fail("generated before every row was checked"))
    out = tmp_path / "eval"
    code = cli(["eval", "--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--data", str(rec_rows), str(bad),
                "--output_dir", str(out)])  # fmt: skip
    assert code == 2 and f"{bad}:1: " in capsys.readouterr().err
    assert not out.exists()  # nothing written


def test_results_never_replace_what_is_not_an_earlier_result(tiny_model_dir, rec_rows, tmp_path, capsys, no_model):
    """<output_dir>/<stem>.json replaced the data file itself, a checkpoint's config.json, or crashed on a folder
    after the whole evaluation; an earlier result of the same file is replaced as before."""
    data = tmp_path / "rows.json"
    data.write_text(rec_rows.read_text())
    model = str(tiny_model_dir("qwen2_vl"))
    for output_dir, message in ((tmp_path, "would be written over the data file"),
                                (tmp_path / "config_dir", "is a file that is no evaluation result")):
        (tmp_path / "config_dir").mkdir(exist_ok=True)
        (tmp_path / "config_dir" / "rows.json").write_text('{"model_type": "qwen2_vl"}')
        assert cli(["eval", "--model_name_or_path", model, "--data", str(data), "--output_dir", str(output_dir)]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "folder" / "rows.json").mkdir(parents=True)
    assert cli(["eval", "--model_name_or_path", model, "--data", str(data), "--output_dir", str(tmp_path / "folder")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert data.read_text() == rec_rows.read_text()
