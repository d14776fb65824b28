"""Each script in benchmarks/ runs end to end at toy sizes, as a user runs it, and writes what it promises.

These check that the scripts work, not what they measure: no speed or result is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    """stdout of `python benchmarks/<script> args` (fails the test, with its stderr, on a non-zero exit)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_grqo_vs_sft(tmp_path):
    out = tmp_path / "grqo"
    _run("grqo_vs_sft.py", "--out", str(out), "--n_train", "8", "--n_eval", "4", "--warm_steps", "2", "--steps", "1",
         "--batch_size", "2", "--seeds", "0", "1", "--extra_alpha", "0", "--no-k3_arm")
    results = json.loads((out / "results.json").read_text())
    assert [w["seed"] for w in results["warm_starts"]] == [0, 1]  # one initialisation and warm start per seed
    assert [(r["arm"], r["seed"]) for r in results["runs"]] == [("sft", 0), ("grqo", 0), ("sft", 1), ("grqo", 1)]
    table = (out / "results.md").read_text()
    assert "| grqo (+1 steps) |" in table and "| 1.00× |" in table  # sft against itself: the ratio column


def test_rl_vs_sft(tmp_path):
    out = tmp_path / "rl"
    _run("rl_vs_sft.py", "--out", str(out), "--seeds", "0", "--n_labelled", "8", "--n_test", "4", "--grpo_steps", "1",
         "--eval_batch_size", "4", "--grpo_args", "per_device_train_batch_size=4", "num_generations=4",
         "max_completion_length=8")  # fmt: skip
    assert {"results.json", "table.md", "rl_vs_sft.png"} <= {p.name for p in out.iterdir()}
    grpo_dir = out / "grpo_seed0"
    assert grpo_dir.is_dir() and not list(grpo_dir.glob("checkpoint-*"))  # a save would count as training time


def test_grpo_throughput():
    stdout = _run("grpo_throughput.py", "--image-size", "112", "--prompts", "2", "--g", "2", "--max-completion-length",
                  "4", "--steps", "1", "--rounds", "1")  # fmt: skip
    assert "ratio ours/vanilla samples/s" in stdout and "ratio packed/vanilla samples/s" in stdout


def test_rewards_benchmark_agrees_with_pycocotools():
    stdout = _run("rewards.py", "--cases", "20", "--repeats", "1")
    assert "pycocotools" in stdout


def test_soak(tmp_path):
    stdout = _run("soak.py", "--steps", "16", "--every", "4", "--warmup", "4", "--save-steps", "8", "--rows", "8",
                  "--max-slope", "1e9", "--workdir", str(tmp_path / "soak"))  # fmt: skip
    assert stdout.splitlines()[-1] == "OK"
    # too few samples after the warm-up for a slope: refused before anything runs (it used to train, then report
    # a NaN slope as a leak)
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "soak.py"), "--steps", "12", "--every", "4",
                           "--warmup", "4"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2 and "leave 2 RSS samples after the warm-up" in done.stderr
