"""Checkpoint validation (vlm_r1.checkpoints): a half-written checkpoint is never chosen for resuming.

Checkpoints here are built with the same writers transformers uses (safetensors, torch.save, json), then damaged the
ways an interrupted save leaves them.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from vlm_r1.checkpoints import (
    CheckpointError,
    check_checkpoint,
    latest_complete_checkpoint,
    list_checkpoints,
    resolve_resume,
)


def make_checkpoint(output_dir, step: int, *, model_only: bool = False):
    folder = output_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({"w": torch.randn(8, 8), "b": torch.zeros(8)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text("{}")
    if not model_only:
        torch.save({"state": {0: {"exp_avg": torch.randn(8, 8)}}}, folder / "optimizer.pt")
        torch.save({"last_epoch": step}, folder / "scheduler.pt")
        torch.save({"cpu": torch.random.get_rng_state()}, folder / "rng_state.pth")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    return folder


def truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_complete_checkpoint_passes(tmp_path):
    folder = make_checkpoint(tmp_path, 4)
    check = check_checkpoint(folder)
    assert check.complete and check.step == 4, check.problems
    assert check_checkpoint(make_checkpoint(tmp_path, 6, model_only=True)).complete  # save_only_model


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda f: (f / "trainer_state.json").unlink(), "trainer_state.json: missing"),
        (lambda f: truncate(f / "trainer_state.json"), "trainer_state.json: unreadable"),
        (lambda f: (f / "trainer_state.json").write_text('{"global_step": 3}'), "does not match"),
        (lambda f: truncate(f / "model.safetensors", 0.9), "model.safetensors"),
        (lambda f: truncate(f / "model.safetensors", 0.0), "model.safetensors"),
        (lambda f: (f / "model.safetensors").unlink(), "no model weights"),
        (lambda f: truncate(f / "optimizer.pt"), "optimizer.pt: not a whole"),
        (lambda f: (f / "optimizer.pt").unlink(), "optimizer.pt: missing"),
        (lambda f: truncate(f / "scheduler.pt", 0.8), "scheduler.pt"),
        (lambda f: (f / "rng_state.pth").unlink(), "rng_state.pth: missing"),
        (lambda f: truncate(f / "rng_state.pth", 0.7), "rng_state.pth"),
        (lambda f: (f / "guards_state.json").write_text('{"global_st'), "guards_state.json: unreadable"),
        (lambda f: (f / "sft_state.json").write_text('{"global_step": 3}'), "sft_state.json: global_step 3 does"),
    ],
)
def test_damaged_checkpoint_is_incomplete(tmp_path, damage, expected):
    folder = make_checkpoint(tmp_path, 4)
    damage(folder)
    check = check_checkpoint(folder)
    assert not check.complete
    assert any(expected in p for p in check.problems), check.problems


def test_a_multi_process_checkpoint_needs_every_ranks_rng_state(tmp_path):
    folder = make_checkpoint(tmp_path, 4)
    (folder / "rng_state.pth").rename(folder / "rng_state_0.pth")
    check = check_checkpoint(folder)  # one file per process is written only when there are two or more
    assert not check.complete and any("rng_state_1.pth: missing" in p for p in check.problems), check.problems
    torch.save({"cpu": torch.random.get_rng_state()}, folder / "rng_state_2.pth")
    assert any("rng_state_1.pth: missing" in p for p in check_checkpoint(folder).problems)
    torch.save({"cpu": torch.random.get_rng_state()}, folder / "rng_state_1.pth")
    assert check_checkpoint(folder).complete


def test_sharded_weights_need_every_shard(tmp_path):
    folder = make_checkpoint(tmp_path, 2)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    save_file({"c": torch.ones(3)}, str(folder / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"w": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert check_checkpoint(folder).complete
    (folder / "model-00002-of-00002.safetensors").unlink()
    assert any("missing" in p for p in check_checkpoint(folder).problems)


def test_latest_complete_skips_newer_partial_ones(tmp_path):
    make_checkpoint(tmp_path, 2)
    make_checkpoint(tmp_path, 10)
    truncate(tmp_path / "checkpoint-10" / "optimizer.pt")  # killed while writing checkpoint-10
    partial = tmp_path / "checkpoint-12"  # killed right after the folder was created
    partial.mkdir()
    (tmp_path / "checkpoint-notanumber").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-10", "checkpoint-12"]
    assert latest_complete_checkpoint(tmp_path).name == "checkpoint-2"
    # transformers' own choice (resume_from_checkpoint=True) would be the broken one:
    from transformers.trainer_utils import get_last_checkpoint

    assert get_last_checkpoint(str(tmp_path)).endswith("checkpoint-12")


def test_resolve_resume(tmp_path):
    out = tmp_path / "out"
    assert resolve_resume(None, out) is None
    assert resolve_resume("", out) is None
    assert resolve_resume("auto", out) is None  # nothing yet: a fresh start with the same command line
    good = make_checkpoint(out, 3)
    bad = make_checkpoint(out, 6)
    (bad / "trainer_state.json").unlink()
    assert resolve_resume("auto", out) == str(good)
    assert resolve_resume(True, out) == str(good)
    assert resolve_resume(str(good), out) == str(good)
    assert resolve_resume(str(out), tmp_path / "elsewhere") == str(good)  # an output dir: its latest complete one
    with pytest.raises(CheckpointError, match="incomplete") as err:
        resolve_resume(str(bad), out)
    assert any("trainer_state.json" in p for p in err.value.problems)
    with pytest.raises(CheckpointError, match="not a folder"):
        resolve_resume(str(tmp_path / "nope"), out)
    shutil.rmtree(good)
    with pytest.raises(CheckpointError, match="no complete"):
        resolve_resume(str(out), tmp_path)
