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
    # the gallery shows the step's whole batch, every rank's prompt (it showed rank 0's rows only)
    snapshot = json.loads((tmp_path / "out" / "report" / "gallery.json").read_text())["snapshots"][-1]
    assert [len(group["cards"]) for group in snapshot["groups"]] == [4, 4], snapshot
    assert {group["source"] for group in snapshot["groups"]} == {by_rank[0][1][0], by_rank[1][1][0]}


def test_two_processes_with_text_only_rows_and_a_greedy_eval(tmp_path, grpo_recipe):
    """Text-only rows on one rank and image rows on the other do not hang the job (TRL gathered the logged images
    only on ranks that had some), and the greedy eval counts each of 7 rows once, although the last batch is
    padded with a repeated row: the logged Acc@0.5 is `evaluate_samples`' on the same rows."""
    from vlm_r1.config import ModelArguments
    from vlm_r1.data import load_rows
    from vlm_r1.evaluation.runner import GenerationSettings, evaluate_samples
    from vlm_r1.loading import load_policy
    from vlm_r1.pipeline import SHIPPED_WARM_START
    from vlm_r1.synthetic import write_split

    rows = [json.loads(line) for line in write_split(tmp_path / "d", "rec", "train", 16, seed=0).read_text().splitlines()]
    for row in rows[1::2]:  # every other row without its image: a counting question (a box needs an image)
        del row["image"]
        row["conversations"] = [{"from": "human", "value": "How many sides has a square?"},
                                {"from": "gpt", "value": "4"}]  # fmt: skip
        row["reward"] = "counting"
    train = tmp_path / "d" / "mixed.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    held_out = write_split(tmp_path / "d", "rec", "test", 7, seed=0)
    recipe = grpo_recipe(SHIPPED_WARM_START, train, reward_funcs=["iou_acc", "number_match"], per_device_train_batch_size=4,
                         num_generations=4, max_steps=4, learning_rate=0.0, max_completion_length=40,
                         question_template="{question}", dtype="float32", eval_data=[str(held_out)],
                         eval_strategy="steps", eval_steps=4, eval_greedy=True, per_device_eval_batch_size=4)  # fmt: skip
    command = [
        str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "vlm_r1.train", "--config", str(recipe),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]

    history = json.loads((tmp_path / "out" / "report" / "log_history.json").read_text())["log_history"]
    logged = next(entry["eval_rewards/iou_acc/mean"] for entry in history if "eval_rewards/iou_acc/mean" in entry)
    model, processor, module = load_policy(ModelArguments(model_name_or_path=str(SHIPPED_WARM_START), dtype="float32"))
    reference = evaluate_samples(model, processor, module, list(load_rows(held_out)), "{question}", None,
                                 GenerationSettings(batch_size=7, max_new_tokens=40))  # fmt: skip
    assert abs(logged - reference["metrics"]["rec"]["acc@0.5"]) < 1e-6
