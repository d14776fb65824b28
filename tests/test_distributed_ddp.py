"""Data-parallel GRPO on two CPU processes (DDP over gloo, no DeepSpeed): each rank trains on its own rows.

`accelerate launch --cpu --num_processes 2` starts ONE process (accelerate's simple launcher ignores the count
under `--cpu`); two CPU processes take `--multi_gpu` on a machine without GPUs, which launches through torchrun
with the gloo backend (docs/distributed.md). A probe reward records, per rank, which rows it was given.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

PROBE = """
import json, os

def rows_seen(completions, source, **kwargs):
    with open(os.environ["RANK_PROBE"], "a") as f:
        f.write(json.dumps({"rank": int(os.environ["RANK"]), "rows": sorted(set(source))}) + "\\n")
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [float(len(t) % 5) for t in texts]  # varies between completions, so every step has a gradient
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_train_on_different_rows(tiny_model_dir, rec_rows, tmp_path, grpo_recipe):
    from transformers import AutoModelForImageTextToText

    model_dir = tiny_model_dir("qwen2_vl")
    recipe = grpo_recipe(model_dir, rec_rows, reward_module=("ddp_probe", PROBE), reward_funcs=["ddp_probe:rows_seen"],
                         per_device_train_batch_size=4, num_generations=4)  # fmt: skip
    probe = tmp_path / "rows_seen.jsonl"
    command = [
        str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "vlm_r1.train", "--config", str(recipe),
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",  # CPU processes even on a machine with GPUs
        "RANK_PROBE": str(probe),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, log

    calls = [json.loads(line) for line in probe.read_text().splitlines()] if probe.exists() else []
    by_rank = {rank: [c["rows"] for c in calls if c["rank"] == rank] for rank in (0, 1)}
    assert len(by_rank[0]) == len(by_rank[1]) == 2, (calls, log)  # two steps, each rank scored its own batch
    for step in range(2):  # one prompt per rank and step (4 rows = 1 prompt x G = 4), never the same one
        assert len(by_rank[0][step]) == len(by_rank[1][step]) == 1
        assert by_rank[0][step] != by_rank[1][step]

    before = AutoModelForImageTextToText.from_pretrained(model_dir).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(tmp_path / "out").state_dict()
    assert set(after) == set(before) and all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)  # trained, and rank 0 saved it
