"""Smoke test of the default job with tiny sizes: data, warm start by SFT, evaluation, GRPO, evaluation, table."""

from __future__ import annotations

import json


def test_pipeline_smoke(tmp_path, capsys):
    from vlm_r1.pipeline import main

    work = tmp_path / "job"
    summary = main([
        "--work_dir", str(work), "--warm_start", "build", "--n_train", "16", "--n_test", "8",
        "--grpo_max_steps", "2", "--eval_batch_size", "8", "--max_new_tokens", "16",
        "--grpo_args", "per_device_train_batch_size=8", "num_generations=4", "max_completion_length=16",
        "logging_steps=1", "disable_tqdm=true",
        "--sft_args", "--max_steps", "3", "--per_device_train_batch_size", "4", "--disable_tqdm", "true",
    ])  # fmt: skip
    assert (work / "warm_start" / "DONE").exists() and (work / "grpo" / "DONE").exists()
    table = summary["comparison"]
    assert set(table) == {"test", "ood"} and table["ood"]["n"] == 8
    saved = json.loads((work / "summary.json").read_text())
    assert saved["comparison"]["test"]["n"] == 8 and "GRPO" in saved["timings_s"]
    for split in ("test", "ood"):
        result = json.loads((work / "eval_after" / f"{split}.json").read_text())
        assert len(result["predictions"]) == 8 and "acc@0.5" in result["metrics"]["rec"]
    assert "Acc@0.5 warm start -> GRPO" in capsys.readouterr().out

    # a second run reuses every stage (nothing retrained, same numbers)
    again = main(["--work_dir", str(work), "--warm_start", "build", "--n_train", "16", "--n_test", "8"])
    assert again["comparison"] == summary["comparison"]
