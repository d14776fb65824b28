"""A restart continues only its own run: the run record (vlm_r1_run.json) refuses another run's checkpoints, a
finished run restarted trains nothing, and SFT stopped early saves where it stopped."""

from __future__ import annotations

import hashlib

import pytest

from vlm_r1.checkpoints import CheckpointError
from vlm_r1.run_record import RUN_RECORD_FILE


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_finished_run_restarted_with_auto_trains_nothing(tiny_model_dir, rec_rows, tmp_path, grpo_run):
    """3 steps of 4 per epoch: transformers trained a 4th step on a restart and overwrote the final weights."""
    run = dict(max_steps=3, save_strategy="steps", save_steps=1, lr_scheduler_type="constant")
    first = grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, **run)
    out = tmp_path / "out"
    weights = _sha(out / "model.safetensors")
    again = grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", "auto", **run)
    steps = lambda summary: [e for e in summary["log_history"] if "train_runtime" not in e]  # noqa: E731
    assert steps(again) == steps(first) and again["train_seconds"] == 0.0  # checkpoint-3's history
    assert not (out / "checkpoint-4").exists() and _sha(out / "model.safetensors") == weights
    final_files = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    (out / "model.safetensors").unlink()  # stopped after its last checkpoint, before the final save
    grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", "auto", **run)
    assert _sha(out / "model.safetensors") == _sha(out / "checkpoint-3" / "model.safetensors") == weights
    assert not (out / "optimizer.pt").exists()  # the model files only
    (out / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes()[:1000])  # killed while saving:
    (out / "tokenizer_config.json").unlink()  # the weights cut short, the processor not yet written
    grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", "auto", **run)
    assert _sha(out / "model.safetensors") == weights and (out / "tokenizer_config.json").is_file()
    (out / "processor_config.json").write_text("")  # present but cut short: every later load failed on it
    grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", "auto", **run)
    assert _sha(out / "processor_config.json") == _sha(out / "checkpoint-3" / "processor_config.json")
    # whole files that differ by right are kept: a LoRA checkpoint's README (PEFT's) is not the final model card
    (out / "checkpoint-3" / "README.md").write_text("PEFT's card")
    (out / "README.md").write_text("TRL's model card, longer")
    grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", "auto", **run)
    assert (out / "README.md").read_text() == "TRL's model card, longer"
    untouched = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", "auto", **run)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == untouched  # whole: left alone
    assert set(untouched) >= set(final_files) - {"skipped_rows.jsonl"}


def test_another_runs_checkpoints_are_neither_resumed_nor_mixed_with(tiny_model_dir, rec_rows, tmp_path, grpo_run,
                                                                      caplog):
    run = dict(max_steps=2, save_strategy="steps", save_steps=1)
    grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, learning_rate=1e-3, **run)
    assert (tmp_path / "out" / "checkpoint-2" / RUN_RECORD_FILE).is_file() and (tmp_path / "out" / RUN_RECORD_FILE).is_file()
    earlier_list = tmp_path / "out" / "skipped_rows.jsonl"
    earlier_list.write_text('{"source": "a.jsonl:3", "reasons": []}\n')  # as if the first run had skipped a row
    with pytest.raises(CheckpointError, match=r"checkpoint-2 was made by a run with other settings \(learning_rate: "
                                              r"0.001 -> 0.0001\).*Use a new output_dir for this one"):
        grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", "auto", learning_rate=1e-4,
                 max_steps=4, save_strategy="steps", save_steps=1)  # fmt: skip
    named = str(tmp_path / "out" / "checkpoint-2")  # named rather than found: a new output_dir would not help
    with pytest.raises(CheckpointError, match=r"other settings .*Drop --resume_from_checkpoint to start afresh"):
        grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", named, learning_rate=1e-4,
                 max_steps=4, save_strategy="steps", save_steps=1)  # fmt: skip
    with pytest.raises(CheckpointError, match="holds checkpoints of another run .checkpoint-1, checkpoint-2; "
                                              "learning_rate: 0.001 -> 0.0001.*Use a new output_dir"):
        grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, learning_rate=1e-4, **run)  # a fresh run in the used folder
    assert earlier_list.is_file()  # a refused run writes nothing into the folder it was refused
    with pytest.raises(CheckpointError, match="holds checkpoints of this run .checkpoint-1, checkpoint-2.: pass "
                                              "--resume_from_checkpoint auto"):  # a fresh start would leave them
        grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, learning_rate=1e-3, max_steps=1, save_strategy="steps",
                 save_steps=1)  # fmt: skip
    longer = grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", "auto", learning_rate=1e-3,
                      max_steps=3, save_strategy="steps", save_steps=1)  # its length may change on a restart
    assert longer["log_history"][-2]["step"] == 3
    assert "was written by a run of 2 steps, and this one has max_steps 3: its linear learning-rate schedule" in (
        caplog.text)  # said, since the rates then differ from a 3-step run's


def test_auto_over_only_unfinished_saves_starts_afresh(tiny_model_dir, rec_rows, tmp_path, grpo_run, caplog):
    """A run killed during its first checkpoint's save left a checkpoint-N that can never be resumed: every restart
    with --resume_from_checkpoint auto was refused, telling it to pass auto. Now the leftover is deleted (said)."""
    cut = tmp_path / "out" / "checkpoint-1"
    cut.mkdir(parents=True)
    (cut / "model.safetensors").write_bytes(b"cut short")
    (tmp_path / "out" / "checkpoint-2").mkdir()
    (tmp_path / "out" / "checkpoint-2" / "trainer_state.json").write_text('{"global_step": 2, "log_hi')  # cut short
    with pytest.raises(CheckpointError, match="whose save was cut short .checkpoint-1, checkpoint-2.: pass "
                                              "--resume_from_checkpoint auto to delete them"):  # unset: said what to do
        grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, max_steps=1, save_strategy="steps", save_steps=1)
    summary = grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", "auto", max_steps=1,
                       save_strategy="steps", save_steps=1)  # fmt: skip
    assert summary["log_history"][0]["step"] == 1 and "its save was cut short" in caplog.text
    assert (cut / "trainer_state.json").is_file()  # the new run's own checkpoint-1, nothing of the old one
    assert not (tmp_path / "out" / "checkpoint-2").exists()
    with pytest.raises(CheckpointError, match="holds checkpoints of this run"):  # unset: still refused, as before
        grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, max_steps=1, save_strategy="steps", save_steps=1)
    # saved whole (trainer_state.json, written last, is there) but incomplete now, as a node-local output_dir's
    # checkpoint lacking the other node's RNG state: refused under auto, never deleted
    (cut / "rng_state.pth").unlink()
    with pytest.raises(CheckpointError, match="holds checkpoints of this run that cannot be resumed .checkpoint-1"):
        grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--resume_from_checkpoint", "auto", max_steps=2,
                 save_strategy="steps", save_steps=1)  # fmt: skip
    assert (cut / "trainer_state.json").is_file() and (cut / "model.safetensors").is_file()


def test_sft_stopped_early_saves_where_it_stopped(tiny_model_dir, rec_rows, tmp_path):
    from vlm_r1.sft import main

    main(["--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--train_data", str(rec_rows),
          "--per_device_train_batch_size", "4", "--use_cpu", "true", "--bf16", "false", "--report_to", "none",
          "--gradient_checkpointing", "false", "--disable_tqdm", "true", "--max_steps", "6", "--save_strategy", "steps",
          "--save_steps", "4", "--stop_at_step", "3", "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-3"]  # not only an older one


def test_the_record_holds_the_batch_per_step_not_how_processes_share_it(monkeypatch, parse_only_argv, rec_rows):
    """A restart on 2 processes with half the per-device batch is the same run; TRL's generation_batch_size (which
    counts the processes) is not recorded."""
    from vlm_r1.run_record import run_record
    from vlm_r1.train import parse_args

    def record(processes: int, per_device: int) -> dict:
        argv = [*parse_only_argv, "--bf16", "false", "--train_data", str(rec_rows), "--num_generations", "4",
                "--per_device_train_batch_size", str(per_device)]  # fmt: skip
        args = parse_args(argv)
        monkeypatch.setenv("WORLD_SIZE", str(processes))  # as accelerate launch sets it in each process
        try:
            return run_record(*args)
        finally:
            monkeypatch.delenv("WORLD_SIZE")

    one = record(1, 8)
    assert one == record(2, 4) and "generation_batch_size" not in one and one["rows_per_optimizer_step"] == 8
    assert record(2, 8)["rows_per_optimizer_step"] == 16  # twice the rows per step: another run


def test_every_setting_defines_the_run_but_those_that_may_change(parse_only_argv, rec_rows):
    """The record used to hold a hand-picked list of settings: shuffle_dataset, entropy_coef and a field a new TRL adds
    changed on a restart without a word. Now every field is recorded unless it is listed as one that may change."""
    import dataclasses

    from vlm_r1.config import DataArguments, ModelArguments, VLMGRPOConfig
    from vlm_r1.run_record import SETTINGS_THAT_MAY_CHANGE, differences, run_record
    from vlm_r1.sft import VLMSFTConfig
    from vlm_r1.train import parse_args

    def record(*extra: str) -> dict:
        return run_record(*parse_args([*parse_only_argv, "--bf16", "false", "--train_data", str(rec_rows), *extra]))

    same = record()
    assert differences(same, record("--shuffle_dataset", "false")) == ["shuffle_dataset: true -> false"]
    assert differences(same, record("--entropy_coef", "0.01")) == ["entropy_coef: 0.0 -> 0.01"]
    assert same == record("--logging_steps", "7", "--save_steps", "7", "--max_steps", "9", "--eval_data", str(rec_rows),
                          "--eval_strategy", "steps", "--eval_steps", "2", "--eval_greedy", "true", "--report_to", "tensorboard", "--dataloader_num_workers", "1", "--share_prompt_tokens",
                          "false", "--model_name_or_path", "moved", "--gradient_checkpointing", "false")  # fmt: skip
    fields = {f.name for cls in (DataArguments, ModelArguments, VLMGRPOConfig, VLMSFTConfig)
              for f in dataclasses.fields(cls)}  # fmt: skip
    assert SETTINGS_THAT_MAY_CHANGE <= fields  # a name no field has any more would leave its successor recorded
    assert "hub_token" not in same  # nothing secret is written


def test_a_checkpoint_has_its_records_before_its_trainer_state(tiny_model_dir, rec_rows, tmp_path, grpo_run):
    """The records were written after transformers' files: a kill in between left a checkpoint that counted as
    complete without them, and `auto` resumed it with any settings."""
    grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, max_steps=1, save_strategy="steps", save_steps=1)
    folder = tmp_path / "out" / "checkpoint-1"
    written = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    for record in (RUN_RECORD_FILE, "vlm_r1_prompt.json"):
        assert written[record] <= written["trainer_state.json"], record


def test_a_setting_the_record_lacks_is_not_a_difference():
    """A record written by an older vlm-r1, or before a TRL upgrade added a field, lacks some settings: resuming
    it was refused with two dozen `null -> default` differences the user never made."""
    from vlm_r1.run_record import differences

    now = {"learning_rate": 0.001, "entropy_coef": 0.0, "seed": 0}
    assert differences({"learning_rate": 0.001, "seed": 0}, now) == []
    assert differences({"learning_rate": 0.01, "seed": 0, "dropped_field": 1}, now) == ["learning_rate: 0.01 -> 0.001"]
