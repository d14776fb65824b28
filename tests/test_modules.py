"""VLM modules: selection by config.model_type and the box-frame conversions of each model family."""

from __future__ import annotations

import pytest

from vlm_r1.modules import get_module, module_for_checkpoint, supported_model_types


def test_unknown_model_type_lists_supported():
    with pytest.raises(ValueError) as err:
        get_module("llava")
    for name in ("qwen2_vl", "qwen2_5_vl", "internvl"):
        assert name in str(err.value)


def test_qwen2_vl_relative_1000_frame():
    module = get_module("qwen2_vl")
    assert module.output_frame == "relative_1000"
    # 0-1000 of a 200x100 image: x scales by 0.2, y by 0.1; the processor's resize does not matter.
    box = module.to_original((100, 200, 500, 1000), (200, 100), (224, 112))
    assert box == pytest.approx((20.0, 20.0, 100.0, 100.0))
    assert module.from_original(box, (200, 100), (224, 112)) == pytest.approx((100, 200, 500, 1000))
    # exact where the arithmetic allows it: 375 of 1000 on 288 px is 108 (IoU 0.5 with [0, 0, 216, 288], a hit);
    # 375 * (288 / 1000) gave 107.99999999999999, an IoU just under 0.5, a miss
    assert module.to_original((0, 0, 375, 1000), (288, 288), (280, 280)) == (0.0, 0.0, 108.0, 288.0)


def test_qwen2_5_vl_resized_pixel_frame():
    module = get_module("qwen2_5_vl")
    assert module.output_frame == "resized_pixels"
    # The model saw a 224x112 resize of a 200x100 image: its pixel coordinates scale back by 200/224, 100/112.
    box = module.to_original((112, 56, 224, 112), (200, 100), (224, 112))
    assert box == pytest.approx((100.0, 50.0, 200.0, 100.0))


@pytest.mark.parametrize("model_type", ["qwen2_vl", "qwen2_5_vl"])
def test_model_input_size_matches_the_processor(tiny_model_dir, model_type):
    """The size the module predicts is the size the processor really feeds the model (image_grid_thw)."""
    from PIL import Image
    from transformers import AutoProcessor

    path = tiny_model_dir(model_type)
    module = module_for_checkpoint(str(path))
    assert model_type in module.model_types
    processor = AutoProcessor.from_pretrained(path)
    patch = processor.image_processor.patch_size
    for size in [(112, 112), (200, 100), (61, 173)]:
        out = processor.image_processor(images=[Image.new("RGB", size)], return_tensors="pt")
        _, grid_h, grid_w = out["image_grid_thw"][0].tolist()
        assert module.model_input_size(processor, size) == (grid_w * patch, grid_h * patch)


def test_modules_know_their_vision_parameters(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir("qwen2_vl"))
    module = get_module("qwen2_vl")
    names = [name for name, _ in model.named_parameters()]
    vision = [n for n in names if module.part_of(n) != "language"]
    projector = [n for n in names if module.is_projector_param(n)]
    assert vision and projector and set(projector) <= set(vision)
    assert any("lm_head" in n or "embed_tokens" in n for n in set(names) - set(vision))


def test_supported_model_types():
    assert {"qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl"} <= set(supported_model_types())


def test_qwen2_vl_native_box_answer_reaches_the_rewards_in_pixels(tiny_model_dir):
    """Qwen2-VL grounds as <|box_start|>(x1,y1),(x2,y2)<|box_end|> in its 0-1000 frame. Decoded without special
    tokens, as TRL and the evaluator decode, that is "(x1,y1),(x2,y2)": parsed, converted, and scored as a hit."""
    from transformers import AutoProcessor

    from vlm_r1.rewards import get_reward
    from vlm_r1.rewards.parsing import parse_answer

    processor = AutoProcessor.from_pretrained(tiny_model_dir("qwen2_vl"))
    written = ("<think>it is there</think><answer><|object_ref_start|>the dog<|object_ref_end|>"
               "<|box_start|>(100,200),(500,1000)<|box_end|></answer>")  # fmt: skip
    ids = processor.tokenizer(written, add_special_tokens=False)["input_ids"]
    decoded = processor.tokenizer.decode(ids, skip_special_tokens=True)
    assert "<|box_start|>" not in decoded
    parsed = parse_answer(decoded)
    module = get_module("qwen2_vl")
    in_pixels = parsed.map_boxes(lambda box: module.to_original(box, (200, 100), (224, 112)))
    assert in_pixels.detections[0].box == pytest.approx((20.0, 20.0, 100.0, 100.0))
    assert get_reward("iou")([decoded], solution=["[20, 20, 100, 100]"], answers=[in_pixels]) == [1.0]


def test_an_original_internvl_checkpoint_is_pointed_to_its_hf_conversion(tmp_path):
    """Its config names its own code: suggesting --trust_remote_code led to a second refusal. Both ways now say to
    use the -hf conversion."""
    import json

    from vlm_r1.checkpoints import CheckpointError

    folder = tmp_path / "InternVL3-1B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "internvl_chat", "architectures": ["InternVLChatModel"],
        "auto_map": {"AutoConfig": "configuration_internvl_chat.InternVLChatConfig"}}))  # fmt: skip
    with pytest.raises(CheckpointError, match="'internvl_chat': an original InternVL checkpoint.*named with -hf"):
        module_for_checkpoint(str(folder))
    with pytest.raises(CheckpointError, match="'internvl_chat': an original InternVL checkpoint.*named with -hf"):
        get_module("internvl_chat")
