"""The model recipes parse (every key is a known field, the combination passes check_args) and say what they mean.

The Qwen2.5-VL-3B recipes are for GPUs and are never run here: they are parsed with `--bf16 false --use_cpu true`
(TRL refuses bf16 on a machine without a GPU). The tiny variants run as-is on CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vlm_r1.train import parse_args

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
REAL = sorted((RECIPES / "qwen2_5_vl_3b").glob("*.yaml"))
TINY = [
    RECIPES / "tiny" / name
    for name in ("rec_grpo_lora.yaml", "rec_grpo_frozen_vision.yaml", "rec_grpo_internvl.yaml")
]
PATHS = ["--model_name_or_path", "some/model", "--train_data", "rows.jsonl"]


@pytest.mark.parametrize("recipe", REAL, ids=lambda p: p.stem)
def test_real_gpu_recipes_parse(recipe):
    raw = yaml.safe_load(recipe.read_text())
    assert raw["bf16"] is True and raw["num_generations"] == 8 and raw["dtype"] == "bfloat16"
    data_args, model_args, args = parse_args(["--config", str(recipe), *PATHS, "--bf16", "false", "--use_cpu", "true"])
    assert model_args.use_peft == ("lora" in recipe.stem)
    assert model_args.freeze_vision == ("frozen_vision" in recipe.stem)
    if "vllm" in recipe.stem:
        assert args.use_vllm and args.vllm_mode == recipe.stem.rsplit("_", 1)[-1]
        # vLLM processes images with the checkpoint's own preprocessor config: pixel bounds here would not reach it
        assert model_args.min_pixels is None and model_args.max_pixels is None
    else:
        assert not args.use_vllm
    assert args.generation_batch_size % args.num_generations == 0


@pytest.mark.parametrize("recipe", TINY, ids=lambda p: p.stem)
def test_tiny_variants_parse(recipe):
    _, model_args, args = parse_args(["--config", str(recipe), *PATHS])
    assert args.use_cpu and not args.bf16
    assert model_args.use_peft == ("lora" in recipe.stem)
    assert model_args.freeze_vision == ("frozen_vision" in recipe.stem)
    assert (model_args.max_tiles is not None) == ("internvl" in recipe.stem)
