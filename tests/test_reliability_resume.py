"""Crash and resume, end to end: `python -m vlm_r1.train` is SIGKILLed at chosen moments and resumed.

One uninterrupted run is compared with a run that is killed three times — right after a checkpoint, while a
checkpoint is being written, and between checkpoints — and resumed with ``--resume_from_checkpoint auto`` and with a
path. With the same seed, the finished runs have the same logged metrics (every key except wall-clock timings) and the
same final weights, to 1e-6 (on this CPU they are bit-identical). The run crosses an epoch boundary (8 rows, 2 prompts
per step: 4 steps per epoch) and resumes inside the second epoch, which checks that data order is restored.

The kills come from a test-only reward module (written below into the run's folder, imported by the trainer as
``crash_rewards:digits``): ``VLMR1_TEST_KILL_AT=N`` kills the process when a reward is computed at ``global_step == N``
(steps 1..N done); ``VLMR1_TEST_KILL_IN_SAVE=N`` patches ``torch.save`` so that ``checkpoint-N/optimizer.pt`` is
written half-way and the process is killed.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml

from vlm_r1.synthetic import write_split

CRASH_REWARDS = '''
import io, os, signal
import torch

_KILL_AT = os.environ.get("VLMR1_TEST_KILL_AT")
_KILL_IN_SAVE = os.environ.get("VLMR1_TEST_KILL_IN_SAVE")

if _KILL_IN_SAVE:
    _real_save = torch.save
    _target = os.path.join("checkpoint-" + _KILL_IN_SAVE, "optimizer.pt")

    def _save_half_then_die(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and str(f).endswith(_target):
            buffer = io.BytesIO()
            _real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            with open(f, "wb") as handle:
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return _real_save(obj, f, *args, **kwargs)

    torch.save = _save_half_then_die


def digits(completions, trainer_state=None, **kwargs):
    """Share of digits plus a length bonus: varies between sampled completions, so advantages are non-zero."""
    if _KILL_AT is not None and trainer_state is not None and trainer_state.global_step == int(_KILL_AT):
        os.kill(os.getpid(), signal.SIGKILL)
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) + 0.002 * len(t) for t in texts]
'''

TIMING_KEYS = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss"}
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("resume")
    data = write_split(root / "data", "rec", "train", 8, seed=0)
    (root / "crash_rewards.py").write_text(textwrap.dedent(CRASH_REWARDS))
    recipe = {
        "model_name_or_path": str(tiny_model_dir("qwen2_vl")),
        "train_data": [str(data)],
        "reward_funcs": ["crash_rewards:digits"],
        "bf16": False,
        "use_cpu": True,
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 12,
        "max_steps": 10,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": 3,
        "report_to": "none",
        "gradient_checkpointing": False,
        "seed": 0,
        "disable_tqdm": True,
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return root


def start(workdir, output_dir, *extra, env=None) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(workdir), *sys.path])}
    environment.update(env or {})
    command = [sys.executable, "-m", "vlm_r1.train", "--config", str(workdir / "recipe.yaml")]
    command += ["--output_dir", str(output_dir), *extra]
    return subprocess.Popen(
        command, cwd=workdir, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def train(workdir, output_dir, *extra, env=None) -> subprocess.CompletedProcess:
    return finish(start(workdir, output_dir, *extra, env=env))


def assert_killed(result):
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]


def final_state(output_dir):
    from safetensors.torch import load_file

    log = json.loads((output_dir / "checkpoint-10" / "trainer_state.json").read_text())["log_history"]
    return log, load_file(str(output_dir / "model.safetensors"))


def test_killed_three_times_and_resumed_matches_uninterrupted(workdir):
    full, crash = workdir / "full", workdir / "crash"
    uninterrupted = start(workdir, full)  # alongside the first crash run (one thread each)

    # 1. killed right after checkpoint-3 was written (step 4 generating)
    assert_killed(train(workdir, crash, env={"VLMR1_TEST_KILL_AT": "3"}))
    result = finish(uninterrupted)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in crash.glob("checkpoint-*")) == ["checkpoint-3"]

    # 2. resumed (auto: checkpoint-3), then killed while checkpoint-6/optimizer.pt is half written
    result = train(workdir, crash, "--resume_from_checkpoint", "auto", env={"VLMR1_TEST_KILL_IN_SAVE": "6"})
    assert_killed(result)
    assert "resuming from" in result.stderr and "checkpoint-3" in result.stderr
    assert not (crash / "checkpoint-6" / "trainer_state.json").exists()

    # 3. auto passes over the half-written checkpoint-6, takes checkpoint-3; killed at step 8 (between 6 and 9)
    result = train(workdir, crash, "--resume_from_checkpoint", "auto", env={"VLMR1_TEST_KILL_AT": "8"})
    assert_killed(result)
    assert "passing over incomplete checkpoint" in result.stderr and "checkpoint-6" in result.stderr
    assert "resume_from_checkpoint=auto: resuming from" in result.stderr
    assert result.stderr.split("resuming from")[1].split()[0].endswith("checkpoint-3")
    assert (crash / "checkpoint-6" / "trainer_state.json").exists() and not (crash / "checkpoint-9").exists()

    # 4. resumed from an explicit path (checkpoint-6, in the second epoch) to the end
    result = train(workdir, crash, "--resume_from_checkpoint", str(crash / "checkpoint-6"))
    assert result.returncode == 0, result.stderr[-3000:]

    log_full, weights_full = final_state(full)
    log_crash, weights_crash = final_state(crash)
    assert [e.get("step") for e in log_full] == [e.get("step") for e in log_crash]
    assert sum("loss" in e for e in log_full) == 10
    worst = 0.0
    for a, b in zip(log_full, log_crash):
        assert set(a) == set(b)
        for key in set(a) - TIMING_KEYS:
            if isinstance(a[key], float) or isinstance(b[key], float):
                worst = max(worst, abs(a[key] - b[key]))
                assert math.isclose(a[key], b[key], rel_tol=TOLERANCE, abs_tol=TOLERANCE), (a["step"], key)
            else:
                assert a[key] == b[key], (a.get("step"), key)
    assert set(weights_full) == set(weights_crash)
    max_weight_diff = max((weights_full[k] - weights_crash[k]).abs().max().item() for k in weights_full)
    assert max_weight_diff <= TOLERANCE
    print(f"resume: worst metric difference {worst}, worst weight difference {max_weight_diff}")


def test_incomplete_path_is_refused_before_training(workdir, monkeypatch):
    """An explicit path to a half-written checkpoint stops the run with the reasons, before any step."""
    from vlm_r1.checkpoints import CheckpointError
    from vlm_r1.train import main

    monkeypatch.syspath_prepend(str(workdir))
    out = workdir / "refused"
    bad = out / "checkpoint-2"
    bad.mkdir(parents=True)
    (bad / "optimizer.pt").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(CheckpointError, match="incomplete") as err:
        main(["--config", str(workdir / "recipe.yaml"), "--output_dir", str(out), "--resume_from_checkpoint", str(bad)])
    assert any("trainer_state.json: missing" in p for p in err.value.problems)
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint-3").exists()
