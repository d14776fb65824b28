"""Smoke test of the default job with tiny sizes: data, warm start by SFT, evaluation, GRPO, evaluation, table."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_pipeline_smoke(tmp_path, capsys):
    from vlm_r1.pipeline import main

    work = tmp_path / "job"
    sft = ["--sft_args", "--max_steps", "3", "--warmup_steps", "0", "--per_device_train_batch_size", "4", "--disable_tqdm", "true"]
    grpo = ["--grpo_args", "per_device_train_batch_size=8", "num_generations=4", "max_completion_length=16",
            "logging_steps=1", "disable_tqdm=true"]  # fmt: skip
    common = ["--work_dir", str(work), "--warm_start", "build", "--n_train", "16", "--n_test", "8",
              "--image_size", "112", "--eval_batch_size", "8", "--max_new_tokens", "16"]  # fmt: skip
    base = common + ["--grpo_max_steps", "2"]
    summary = main(base + grpo + sft)
    assert (work / "warm_start" / "DONE").exists() and (work / "grpo" / "DONE").exists()
    table = summary["comparison"]
    assert set(table) == {"test", "ood_pairs", "ood"} and table["ood"]["n"] == 8
    saved = json.loads((work / "summary.json").read_text())
    assert saved["comparison"]["test"]["n"] == 8 and "GRPO" in saved["timings_s"]
    for split in ("test", "ood"):
        result = json.loads((work / "eval_after" / f"{split}.json").read_text())
        assert len(result["predictions"]) == 8 and "acc@0.5" in result["metrics"]["rec"]
        assert result["generation"]["question_template"] == "{question}"  # the GRPO recipe's
    out = capsys.readouterr().out
    assert "Acc@0.5 warm start -> GRPO" in out and "GRPO training reward" in out

    def stamps():
        names = ["data/stamp.json", "warm_start/DONE", "eval_before/test.stamp.json", "grpo/DONE",
                 "eval_after/test.stamp.json"]  # fmt: skip
        return {name: (work / name).read_text() for name in names}

    # the same inputs reuse every stage (nothing retrained, same numbers)
    first = stamps()
    again = main(base + grpo + sft)
    assert again["comparison"] == summary["comparison"] and stamps() == first
    same_dir_written_otherwise = ["--work_dir", str(tmp_path / "." / "job")] + base[2:]
    main(same_dir_written_otherwise + grpo + sft)
    assert stamps() == first  # the GRPO command line is stamped with resolved paths

    # a finished stage whose weights were deleted is redone, not reused
    (work / "grpo" / "model.safetensors").unlink()
    main(base + grpo + sft)
    assert (work / "grpo" / "model.safetensors").exists() and stamps()["grpo/DONE"] != first["grpo/DONE"]
    # an interrupted stage started with other inputs is deleted, never resumed
    (work / "grpo" / "DONE").unlink()
    (work / "grpo" / "STARTED").write_text('{"argv": ["--learning_rate", "0.01"]}')
    (work / "grpo" / "checkpoint-1").mkdir()
    main(base + grpo + sft)
    assert not (work / "grpo" / "checkpoint-1").exists() and (work / "grpo" / "DONE").exists()
    # the GRPO stage may not start from a checkpoint inside the folder it deletes
    with pytest.raises(SystemExit):
        main(base + grpo + ["--warm_start", str(work / "grpo")])
    assert "lies in" in capsys.readouterr().err and (work / "grpo" / "model.safetensors").exists()
    first = stamps()

    # another prompt (set for GRPO; evaluation follows it) redoes the evaluations and GRPO, not the warm start
    capsys.readouterr()
    main(base + grpo + ["question_template=Where is it? {question}", "max_pixels=12544",
                        f"report_dir={tmp_path / 'report'}"] + sft)  # fmt: skip
    assert "GRPO training reward" in capsys.readouterr().out  # read from the report_dir GRPO wrote to
    now = stamps()
    assert [name for name in first if now[name] != first[name]] == [
        "eval_before/test.stamp.json", "grpo/DONE", "eval_after/test.stamp.json"
    ]  # fmt: skip
    result = json.loads((work / "eval_before" / "test.json").read_text())
    assert result["generation"]["question_template"] == "Where is it? {question}"
    assert result["model_options"] == {"dtype": "float32", "max_pixels": 12544}  # loaded as GRPO loads it

    # an interrupted GRPO stage with the same inputs goes on from its latest checkpoint; a damaged cached result is
    # evaluated again
    saving = grpo + ["save_strategy=steps", "save_steps=1", "save_total_limit=2"]
    main(base + saving + sft)
    grpo_dir = work / "grpo"
    first_checkpoint = (grpo_dir / "checkpoint-1" / "trainer_state.json").stat().st_mtime_ns
    (grpo_dir / "DONE").unlink()
    shutil.rmtree(grpo_dir / "checkpoint-2")
    (grpo_dir / "model.safetensors").unlink()
    (work / "eval_before" / "test.json").write_text('{"metrics": {"re')
    capsys.readouterr()
    main(base + saving + sft)
    assert (grpo_dir / "checkpoint-1" / "trainer_state.json").stat().st_mtime_ns == first_checkpoint  # not redone
    assert (grpo_dir / "checkpoint-2").is_dir() and (grpo_dir / "DONE").exists()
    assert "test.json: not the result its stamp records" in capsys.readouterr().out
    json.loads((work / "eval_before" / "test.json").read_text())  # written again, whole
    edited = json.loads((work / "eval_after" / "test.json").read_text())
    edited["metrics"]["rec"]["mean_iou"] = 0.9  # a result edited by hand is not reused
    (work / "eval_after" / "test.json").write_text(json.dumps(edited))
    summary = main(base + saving + sft)
    assert summary["after"]["test"]["rec"]["mean_iou"] != 0.9
    assert not list(work.rglob("*.stamp.json.tmp")) and not list(work.rglob("DONE.tmp"))  # stamps written whole
    now = stamps()

    # other data redoes everything downstream of it; a deleted image rewrites the data
    main(common + ["--data_seed", "1", "--skip_grpo"] + sft)
    later = stamps()
    for name in ("data/stamp.json", "warm_start/DONE", "eval_before/test.stamp.json"):
        assert later[name] != now[name], name
    image = next((work / "data" / "images").iterdir())
    image.unlink()
    main(common + ["--data_seed", "1", "--skip_grpo"] + sft)
    assert image.is_file()

    # a LoRA recipe: the adapter is merged into the warm start for the evaluation (it stopped there, after training)
    lora = ["--grpo_recipe", str(REPO / "recipes" / "tiny" / "rec_grpo_lora.yaml")]
    summary = main(base + lora + grpo + sft)
    merged = work / "grpo_merged" / "model"
    assert (work / "grpo" / "adapter_config.json").exists() and (merged / "config.json").exists()
    assert json.loads((work / "eval_after" / "test.json").read_text())["model"] == str(merged)
    assert set(summary["comparison"]) == {"test", "ood_pairs", "ood"}
    # a merge cut short (no DONE, a partial model/) is merged again, not refused as a non-empty folder; a merged
    # model edited afterwards is merged again too
    (work / "grpo_merged" / "DONE").unlink()
    (merged / "model.safetensors").write_bytes(b"cut short")
    main(base + lora + grpo + sft)
    assert (merged / "model.safetensors").stat().st_size > 1000
    (merged / "config.json").write_text((merged / "config.json").read_text() + " ")
    capsys.readouterr()
    main(base + lora + grpo + sft)
    assert "merging it into its base" in capsys.readouterr().out
    # the merged model may not be the next run's warm start: that stage deletes it
    with pytest.raises(SystemExit):
        main(base + lora + grpo + ["--warm_start", str(merged)])
    assert "grpo_merged, which a later stage deletes" in capsys.readouterr().err and merged.is_dir()


def test_grpo_is_stamped_with_the_code_of_its_custom_rewards_and_the_files_it_reads(tmp_path, monkeypatch):
    """A `module:function` reward's module file, eval_data and a DeepSpeed config file are in the GRPO stage's
    inputs: an edited reward module reused a stale GRPO result."""
    from types import SimpleNamespace

    from vlm_r1.pipeline import files_read

    (tmp_path / "my_rewards.py").write_text("def score(completions, **kw):\n    return [0.0] * len(completions)\n")
    (tmp_path / "eval.jsonl").write_text("{}\n")
    (tmp_path / "ds.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = SimpleNamespace(reward_funcs=["iou_acc", "my_rewards:score"], default_reward=None,
                           eval_data=[str(tmp_path / "eval.jsonl")])
    assert files_read(data, SimpleNamespace(deepspeed=str(tmp_path / "ds.json"))) == (
        str(tmp_path / "my_rewards.py"), str(tmp_path / "eval.jsonl"), str(tmp_path / "ds.json"))
    assert files_read(SimpleNamespace(reward_funcs=["iou_acc"], default_reward=None, eval_data=None),
                      SimpleNamespace(deepspeed=None)) == ()  # fmt: skip


def test_shipped_warm_start_refuses_another_image_size(tmp_path, capsys):
    from vlm_r1.pipeline import SHIPPED_WARM_START, check_shipped_image_size, main

    trained_at = json.loads((SHIPPED_WARM_START / "warm_start.json").read_text())["image_size"]
    check_shipped_image_size(trained_at)  # the size it was trained at passes
    other = 2 * trained_at
    with pytest.raises(ValueError, match=f"trained on {trained_at} px images, not {other} px: pass --image_size {trained_at}"):
        check_shipped_image_size(other)
    with pytest.raises(SystemExit):  # named rather than chosen by auto: checked all the same
        main(["--warm_start", str(SHIPPED_WARM_START), "--image_size", str(other), "--work_dir", str(tmp_path / "w")])
    assert f"not {other} px" in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_options_the_run_would_not_use_are_refused(tmp_path, capsys):
    from vlm_r1.pipeline import main

    base = ["--work_dir", str(tmp_path / "job"), "--n_train", "4", "--n_test", "2"]
    for extra, message in (
        (["--sft_args", "--max_steps", "5"], "--sft_args only applies when the warm start is built, and this run uses the shipped"),
        (["--grpo_max_steps", "5", "--grpo_args", "max_steps=6"], "max_steps is given twice"),
        (["--grpo_max_steps", "5", "--grpo_args", "num_train_epochs=1"], "both set GRPO's length"),
        (["--grpo_args", "warmup_steps=10"], "constant_with_warmup"),  # vlm-r1 train's own checks, before any stage
        (["--grpo_args", "output_dir=elsewhere"], "the pipeline sets output_dir itself; use --work_dir"),
        (["--grpo_args", "model_name_or_path=other"], "the pipeline sets model_name_or_path itself; use --warm_start"),
        (["--grpo_args", "seed=1", "seed=2"], "seed is given twice"),
        (["--skip_grpo", "--grpo_max_steps", "5", "--grpo_args", "learning_rate=1e-5", "max_pixels=12544"],
         "--grpo_max_steps, --grpo_args learning_rate: --skip_grpo runs no GRPO"),
        (["--grpo_args", "resume_from_checkpoint=auto"], "the pipeline sets resume_from_checkpoint itself"),
        # fewer rows than one generation batch's prompts: refused before the data stage, not at the GRPO stage
        (["--n_train", "3"], "--n_train 3 is below the 4 distinct prompts each GRPO generation batch takes"),
        # the parsers take dashed spellings too: the checks on the pipeline's own keys must see them
        (["--grpo_args", "output-dir=elsewhere"], "the pipeline sets output_dir itself; use --work_dir"),
        (["--grpo_max_steps", "5", "--grpo_args", "max-steps=6"], "max_steps is given twice"),
        (["--grpo_args", "max_steps=1", "max-steps=2"], "max_steps is given twice"),
        (["--warm_start", "build", "--sft_args", "--output-dir", "x"], "the pipeline sets output_dir itself"),
        (["--warm_start", "build", "--sft_args", "--train-data=x"], "the pipeline sets train_data itself"),
        # the warm start's SFT: its options are checked too, and those the pipeline sets are refused (an --output_dir
        # there left the stage stamped done on an empty folder)
        (["--warm_start", "build", "--sft_args", "--output_dir", "x"], "the pipeline sets output_dir itself; use --work_dir"),
        (["--warm_start", "build", "--sft_args", "--train_data=x"], "the pipeline sets train_data itself"),
        (["--warm_start", "build", "--sft_args", "--max_steps", "5", "--num_train_epochs", "2"], "max_steps and num_train_epochs"),
        (["--warm_start", "build", "--model_type", "foo"], "invalid choice: 'foo'"),
        (["--warm_start", "build", "--sft_args", "--max_steps", "3", "--grpo_max_steps", "2"],
         "--sft_args takes every argument after it, so --grpo_max_steps went to vlm-r1 sft"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as refused:  # one line on stderr, exit status 2, no traceback
            main(base + extra)
        assert refused.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "job").exists()  # refused before anything was written


def test_grpo_args_split_list_values_only():
    from vlm_r1.pipeline import key_value_args

    assert key_value_args(["reward_funcs=iou_acc think_format", "reward_weights=1 0.1",
                           "question_template=Where is it? {question}"]) == [
        "--reward_funcs", "iou_acc", "think_format", "--reward_weights", "1", "0.1",
        "--question_template", "Where is it? {question}"]  # fmt: skip
