"""Two CPU processes (DDP over gloo, launched as in test_distributed_ddp.py): what only shows with more than one.

* A run resumed inside its second epoch draws the same rows per step and rank as the uninterrupted run (the sampler's
  epoch did not reach it through the resumed data loader's wrappers, and the rest of that epoch replayed epoch 0's).
* Processes that decide their start differently (other rows, a missing file on one node) all stop with one error
  instead of training apart or waiting on each other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_distributed_ddp import free_port

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, os

def rows_seen(completions, source, trainer_state=None, **kwargs):
    with open(os.environ["RANK_PROBE"], "a") as f:
        f.write(json.dumps({"rank": int(os.environ["RANK"]), "step": trainer_state.global_step,
                            "rows": sorted(set(source))}) + "\\n")
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [float(len(t) % 5) for t in texts]
"""

# rank 1 reads the JSONL named by RANK1_TRAIN_DATA instead of the recipe's: two nodes with different copies
PER_RANK_DATA = """
import os, sys
from vlm_r1.train import main

argv = sys.argv[1:]
if os.environ["RANK"] == "1":
    argv += ["--train_data", os.environ["RANK1_TRAIN_DATA"]]
main(argv)
"""


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_model_dir):
    """A folder with 8 REC rows, the probe reward, the per-rank launcher and a recipe: 2 processes x 1 prompt per step,
    4 steps per epoch."""
    from vlm_r1.synthetic import write_split

    root = tmp_path_factory.mktemp("agreement")
    data = write_split(root / "data", "rec", "train", 8, seed=0)
    (root / "probe_rows.py").write_text(PROBE)
    (root / "per_rank_data.py").write_text(PER_RANK_DATA)
    recipe = {"model_name_or_path": str(tiny_model_dir("qwen2_vl")), "train_data": [str(data)],
              "reward_funcs": ["probe_rows:rows_seen"], "bf16": False, "use_cpu": True, "per_device_train_batch_size": 4,
              "num_generations": 4, "max_completion_length": 8, "max_steps": 7, "learning_rate": 1e-3,
              "logging_steps": 1, "save_strategy": "steps", "save_steps": 5, "report_to": "none",
              "gradient_checkpointing": False, "seed": 0, "disable_tqdm": True}  # fmt: skip
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return root


def launch(job, module: str, *extra, env=None) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), "-m", module, "--config", str(job / "recipe.yaml"), *extra]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
                   "PYTHONPATH": os.pathsep.join([str(job), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
                   **(env or {})}  # fmt: skip
    return subprocess.run(command, cwd=job, env=environment, capture_output=True, text=True, timeout=600)


def rows_by_step(probe: Path) -> dict[tuple[int, int], list[str]]:
    return {(c["step"], c["rank"]): c["rows"] for c in map(json.loads, probe.read_text().splitlines())}


def test_a_two_process_run_resumed_in_its_second_epoch_draws_the_uninterrupted_rows(job):
    whole = launch(job, "vlm_r1.train", "--output_dir", str(job / "whole"), env={"RANK_PROBE": str(job / "whole.jsonl")})
    assert whole.returncode == 0, (whole.stdout + whole.stderr)[-4000:]
    resumed_dir = job / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(job / "whole" / "checkpoint-5", resumed_dir / "checkpoint-5")  # step 5: inside epoch 2 (steps 5-8)
    resumed = launch(job, "vlm_r1.train", "--output_dir", str(resumed_dir), "--resume_from_checkpoint", "auto",
                     env={"RANK_PROBE": str(job / "resumed.jsonl")})  # fmt: skip
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]

    expected, got = rows_by_step(job / "whole.jsonl"), rows_by_step(job / "resumed.jsonl")
    assert sorted(got) == [(step, rank) for step in (5, 6) for rank in (0, 1)]  # the global step while scoring
    assert {key: expected[key] for key in got} == got
    assert got[(5, 0)] != expected[(1, 0)] or got[(5, 1)] != expected[(1, 1)]  # not epoch 0's order again


RAISING_ON_RANK_1 = """
import os

def nothing(completions, **kwargs):
    return [0.0] * len(completions)

def fails_on_rank_1(completions, **kwargs):
    if os.environ["RANK"] == "1":
        raise RuntimeError("this reward fails on process 1 only")
    return [1.0] * len(completions)
"""


def test_a_reward_that_fails_on_one_process_scores_no_row_of_the_step(job):
    """Each group of 8 completions is split over the two processes. A reward whose call failed on process 1 only
    scored its half of every group None and the other half 1.0: advantages made of the failure (reward_std 0.53)."""
    (job / "raising_reward.py").write_text(RAISING_ON_RANK_1)
    out = job / "one_fails"
    with_a_bad_row = job / "data" / "with_a_bad_row.jsonl"  # (also: a warning every process would give, given once)
    with_a_bad_row.write_text((job / "data" / "rec_train.jsonl").read_text() + '{"conversations": []}\n')
    result = launch(job, "vlm_r1.train", "--output_dir", str(out), "--num_generations", "8", "--max_steps", "2",
                    "--save_strategy", "no", "--reward_funcs", "raising_reward:nothing", "raising_reward:fails_on_rank_1",
                    "--train_data", str(with_a_bad_row), "--skip_invalid_rows", "true")  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert log.count("skipped 1 of 9 invalid rows") == 1, log[-4000:]
    steps = [e for e in json.loads((out / "report" / "log_history.json").read_text())["log_history"] if "reward_std" in e]
    assert len(steps) == 2 and all(e["reward_std"] == 0.0 for e in steps), steps
    assert all(e["guards/nonfinite_reward_frac"] == 0.5 for e in steps), steps  # 8 of the 16 values were dropped


def test_processes_that_read_other_rows_or_miss_a_file_all_stop_with_one_error(job):
    rows = (job / "data" / "rec_train.jsonl").read_text().splitlines()
    fewer = job / "data" / "fewer.jsonl"
    fewer.write_text("\n".join(rows[:-1]) + "\n")  # another copy of the data on the second node: one row short
    result = launch(job, "per_rank_data", "--output_dir", str(job / "disagree"), env={"RANK1_TRAIN_DATA": str(fewer)})
    log = result.stdout + result.stderr
    assert result.returncode != 0 and log.count("the processes of this run disagree on the rows") >= 2, log[-4000:]
    assert "process 0: ((8," in log and "process 1: ((7," in log

    edited = job / "other_copy" / "rec_train.jsonl"  # same name, as many rows, other questions: caught too (before,
    edited.parent.mkdir(exist_ok=True)  # only names and line numbers were compared, and the processes trained apart)
    shutil.copytree(job / "data" / "images", edited.parent / "images", dirs_exist_ok=True)
    edited.write_text("\n".join(rows).replace("Find the", "Locate the") + "\n")
    result = launch(job, "per_rank_data", "--output_dir", str(job / "edited"), env={"RANK1_TRAIN_DATA": str(edited)})
    log = result.stdout + result.stderr
    assert result.returncode != 0 and log.count("the processes of this run disagree on the rows") >= 2, log[-4000:]

    result = launch(job, "per_rank_data", "--output_dir", str(job / "missing"),
                    env={"RANK1_TRAIN_DATA": str(job / "data" / "not_copied.jsonl")})  # fmt: skip
    log = result.stdout + result.stderr
    assert result.returncode != 0 and "(process 1) JSONL file not found" in log, log[-4000:]  # rank 0's error
    assert log.count("JSONL file not found") >= 2  # and rank 1's own
