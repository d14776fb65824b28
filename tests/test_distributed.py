"""DeepSpeed ZeRO-2 and ZeRO-3 under `accelerate launch`, on CPU with one process, using the project's own
accelerate configs (recipes/accelerate_configs/) with the CPU overrides `--num_processes 1 --mixed_precision no`.

Cost: the first DeepSpeed run on a machine JIT-builds a small CPU op (deepspeed_shm_comm) with g++ into
~/.cache/torch_extensions, about 40 s on a free core (up to 2 min on a busy one); later runs take about 20-40 s each.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml


REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "recipes" / "accelerate_configs"


pytest.importorskip("deepspeed")
if shutil.which(os.environ.get("CXX", "c++")) is None:  # DeepSpeed builds its CPU communication op on first use
    pytest.skip("DeepSpeed's CPU tests need a C++ compiler (install g++, or set CXX)", allow_module_level=True)


def _launch(tmp_path, grpo_recipe, config: str, model_dir, data, **overrides) -> str:
    recipe = grpo_recipe(
        model_dir,
        data,
        reward_funcs=["iou", "varying_rewards:bracket_share"],
        per_device_train_batch_size=4,
        save_strategy="steps",
        save_steps=2,
        **overrides,
    )
    accelerate = Path(sys.executable).with_name("accelerate")
    command = [
        str(accelerate), "launch", "--config_file", str(CONFIGS / config),
        "--num_processes", "1", "--mixed_precision", "no",  # CPU: one process, no bf16 autocast
        "-m", "vlm_r1.train", "--config", str(recipe),
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        "MASTER_PORT": str(29500 + os.getpid() % 1000),
    }
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    return log


def _logged(tmp_path, key: str) -> list[float]:
    """Each logged training step's ``key``, from the run's report (the console prints rounded values)."""
    history = json.loads((tmp_path / "out" / "report" / "log_history.json").read_text())["log_history"]
    return [entry[key] for entry in history if key in entry and "eval_reward" not in entry]


@pytest.mark.parametrize("config, beta", [("zero2.yaml", 0.0), ("zero3.yaml", 0.04)])
def test_deepspeed_run_saves_a_checkpoint(tiny_model_dir, rec_rows, tmp_path, grpo_recipe, config, beta):
    from transformers import AutoModelForImageTextToText

    model_dir = tiny_model_dir("qwen2_vl")
    log = _launch(tmp_path, grpo_recipe, config, model_dir, rec_rows, beta=beta)
    losses = _logged(tmp_path, "loss")
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses), log[-2000:]
    trainable = re.search(r"trainable parameters: ([\d,]+) of ([\d,]+)", log)
    assert trainable and trainable.group(1) == trainable.group(2) != "0"  # ZeRO-3 shards: counted by ds_numel
    if beta:  # ZeRO-3: the reference model is built from the checkpoint's class and wrapped by DeepSpeed too
        kls = _logged(tmp_path, "kl")
        assert kls and kls[-1] > 0
    out = tmp_path / "out"
    assert (out / "checkpoint-2" / "global_step2").is_dir()  # DeepSpeed's own (sharded) optimizer state
    before = AutoModelForImageTextToText.from_pretrained(model_dir).state_dict()
    for folder in (out, out / "checkpoint-2"):  # the final model and the step checkpoint load as plain weights
        after = AutoModelForImageTextToText.from_pretrained(folder).state_dict()
        assert set(after) == set(before)
        assert all(torch.isfinite(value).all() for value in after.values())
        assert sum(not torch.equal(before[k], after[k]) for k in before) == len(before)


def test_accelerate_configs_are_complete():
    for name in ("single.yaml", "ddp.yaml", "zero2.yaml", "zero3.yaml"):
        config = yaml.safe_load((CONFIGS / name).read_text())
        for key in ("distributed_type", "num_machines", "num_processes", "machine_rank", "mixed_precision"):
            assert key in config, (name, key)
    zero2 = yaml.safe_load((CONFIGS / "zero2.yaml").read_text())["deepspeed_config"]
    zero3 = yaml.safe_load((CONFIGS / "zero3.yaml").read_text())["deepspeed_config"]
    assert (zero2["zero_stage"], zero3["zero_stage"]) == (2, 3)
    assert zero3["zero3_save_16bit_model"] is True  # else the saved model.safetensors holds empty shards
