"""Training modes of `loading.apply_training_mode`: full, frozen vision encoder (projector trainable or frozen),
LoRA; with gradient checkpointing and KL (beta > 0). Frozen weights must come out of training bit-identical."""

from __future__ import annotations

import math

import pytest
import torch

from vlm_r1.config import ModelArguments
from vlm_r1.loading import apply_training_mode, count_parameters, describe_parameters
from vlm_r1.modules import get_module

from varying_rewards import VARYING_GRPO_FIELDS


MODES = {
    "full": {},
    "frozen_vision": {"freeze_vision": True},
    "frozen_vision_and_projector": {"freeze_vision": True, "freeze_projector": True},
    "lora": {"use_peft": True, "lora_r": 8, "lora_alpha": 16},
    "lora_vision": {"use_peft": True, "lora_r": 8, "lora_alpha": 16, "lora_vision": True},
}


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl"])
def test_trainable_parameters_per_mode(tiny_model_dir, model_type):
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    module = get_module(model_type)
    for mode, options in MODES.items():
        model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir(model_type))
        lora = apply_training_mode(model, module, ModelArguments(**options))
        if lora is not None:
            model = get_peft_model(model, lora)
        counts = count_parameters(model, module)
        print(f"{model_type:<11} {mode:<28} {describe_parameters(model, module)}")
        (vision, vision_all), (projector, projector_all), (language, language_all) = (
            counts["vision"], counts["projector"], counts["language"]
        )
        if mode == "full":
            assert (vision, projector, language) == (vision_all, projector_all, language_all)
        elif mode == "frozen_vision":
            assert (vision, projector, language) == (0, projector_all, language_all)
        elif mode == "frozen_vision_and_projector":
            assert (vision, projector, language) == (0, 0, language_all)
        elif mode == "lora":
            assert vision == projector == 0 and 0 < language < language_all / 5
        else:
            assert vision > 0 and projector > 0 and 0 < language < language_all / 5


def _train(grpo_run, model_dir, data, **overrides):
    return grpo_run(model_dir, data, **VARYING_GRPO_FIELDS, **{"beta": 0.04, **overrides})


@pytest.mark.parametrize(
    "model_type, freeze_projector",
    [("internvl", False), ("qwen2_vl", True)],  # projector beside the encoder / inside it (visual.merger)
)
def test_frozen_vision_stays_bit_identical(tiny_model_dir, rec_rows, grpo_run, model_type,
                                           freeze_projector):
    from transformers import AutoModelForImageTextToText

    model_dir = tiny_model_dir(model_type)
    summary = _train(
        grpo_run, model_dir, rec_rows, freeze_vision=True, freeze_projector=freeze_projector,
        gradient_checkpointing=True,
    )
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert any(entry.get("kl", 0) > 0 for entry in summary["log_history"])

    module = get_module(model_type)
    before = AutoModelForImageTextToText.from_pretrained(model_dir).state_dict()
    after = AutoModelForImageTextToText.from_pretrained(summary["checkpoint"]).state_dict()
    changed = {part: [] for part in ("vision", "projector", "language")}
    same = {part: [] for part in changed}
    for key in before:
        (same if torch.equal(before[key], after[key]) else changed)[module.part_of(key)].append(key)
    assert not changed["vision"] and same["vision"]
    if freeze_projector:
        assert not changed["projector"] and same["projector"]
    else:
        assert not same["projector"], same["projector"]
    assert not same["language"], same["language"]
