"""Each model family end to end on its tiny model: load through vlm_r1.loading, build a prompt from a data row,
generate, convert the box frame, know the vision / projector parameters, and run GRPO steps with and without KL.

Qwen2-VL's GRPO run is tests/test_train_grpo.py; here are Qwen2.5-VL, Qwen3-VL and InternVL (native
``InternVLForConditionalGeneration``, no remote code).
"""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from vlm_r1.config import ModelArguments
from vlm_r1.data import to_conversation
from vlm_r1.loading import load_policy
from vlm_r1.modules import get_module

from varying_rewards import VARYING_GRPO_FIELDS

ARCHITECTURES = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "internvl": "InternVLForConditionalGeneration",
}



def _prompt(processor, images, problem, template):
    from trl.data_utils import prepare_multimodal_messages

    messages = prepare_multimodal_messages(to_conversation(problem, template), images=images)
    return processor.apply_chat_template(
        [messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_load_prompt_generate_and_frame(tiny_model_dir, model_type):
    model, processor, module = load_policy(ModelArguments(model_name_or_path=str(tiny_model_dir(model_type))))
    assert type(model).__name__ == ARCHITECTURES[model_type]
    assert model_type in module.model_types and processor.tokenizer.padding_side == "left"

    image = Image.new("RGB", (200, 100), (90, 90, 90))
    inputs = _prompt(processor, [image], "<image>Find the red circle.", module.question_template)
    prompt_text = processor.decode(inputs["input_ids"][0])
    assert "Find the red circle." in prompt_text and "<think>" in prompt_text  # the module's template
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert inputs["input_ids"].shape[1] < out.shape[1] <= inputs["input_ids"].shape[1] + 6

    # The frame: a box the model would write for the right half of the image maps back to original pixels.
    input_size = module.model_input_size(processor, (200, 100))
    if module.output_frame == "relative_1000":
        written = (500, 0, 1000, 1000)
    else:  # resized_pixels: the model saw an input_size image
        assert model_type == "qwen2_5_vl"
        written = (input_size[0] / 2, 0, input_size[0], input_size[1])
    assert module.to_original(written, (200, 100), input_size) == pytest.approx((100, 0, 200, 100))


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_every_parameter_has_a_part(tiny_model_dir, model_type):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir(model_type))
    module = get_module(model_type)
    parts: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        parts.setdefault(module.part_of(name), []).append(name)
    assert set(parts) == {"vision", "projector", "language"}
    assert any("embed_tokens" in name for name in parts["language"])
    assert all("language_model" not in name for name in parts["vision"] + parts["projector"])
    if model_type == "qwen3_vl":  # the DeepStack mergers feed the decoder: they are projector, not encoder
        assert any("deepstack_merger_list" in name for name in parts["projector"])
    if model_type == "internvl":
        assert all(name.startswith("model.multi_modal_projector.") for name in parts["projector"])
        assert all(name.startswith("model.vision_tower.") for name in parts["vision"])


def test_internvl_max_tiles_is_the_processors_max_patches(tiny_model_dir):
    from vlm_r1.modules.internvl import InternVLModule

    path = str(tiny_model_dir("internvl"))
    wide = Image.new("RGB", (224, 112))  # a 2x1 grid of 112 px tiles fits it
    for max_tiles, tiles in [(None, 3), (1, 1), (4, 3)]:  # tiny default max 2 tiles; >1 tile adds a thumbnail
        _, processor, module = load_policy(ModelArguments(model_name_or_path=path, max_tiles=max_tiles))
        if max_tiles is not None:
            assert processor.image_processor.max_patches == max_tiles
        assert processor.image_processor.get_number_of_image_patches(112, 224, {"crop_to_patches": True}) == tiles
        pixels = processor(images=[wide], text=[processor.image_token], return_tensors="pt")["pixel_values"]
        assert pixels.shape[0] == tiles
    assert isinstance(module, InternVLModule)
    with pytest.raises(ValueError, match="max_tiles"):
        load_policy(ModelArguments(model_name_or_path=path, max_pixels=112 * 112))
    with pytest.raises(ValueError, match="max_tiles"):
        load_policy(ModelArguments(model_name_or_path=str(tiny_model_dir("qwen2_vl")), max_tiles=2))


@pytest.mark.parametrize(
    "model_type, beta",
    [("qwen2_5_vl", 0.0), ("qwen3_vl", 0.0), ("qwen3_vl", 0.04), ("internvl", 0.0), ("internvl", 0.04)],
)
def test_grpo_steps(tiny_model_dir, rec_rows, grpo_run, model_type, beta):
    from transformers import AutoModelForImageTextToText

    model_dir = tiny_model_dir(model_type)
    summary = grpo_run(model_dir, rec_rows, **VARYING_GRPO_FIELDS, beta=beta)
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    if beta:  # the reference model (rebuilt from the checkpoint's architecture) differs after one update
        assert any(entry.get("kl", 0) > 0 for entry in summary["log_history"])
    before = AutoModelForImageTextToText.from_pretrained(model_dir).state_dict()
    trained = AutoModelForImageTextToText.from_pretrained(summary["checkpoint"])
    after = trained.state_dict()
    assert type(trained).__name__ == ARCHITECTURES[model_type]
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    unchanged = sorted(set(before) - set(changed))
    assert not unchanged, unchanged[:5]
