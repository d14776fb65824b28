"""Tiny offline models: the tokenizer, and each architecture's save -> reload -> generate -> loss loop."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlm_r1.tiny import MODEL_TYPES, SPECIAL_TOKENS, build_tokenizer, make_tiny

# Visual tokens for one 112x112 image: Qwen 2x2-merged 14px (Qwen3: 16px) patches, InternVL one 112px tile.
TOKENS_PER_112PX = {"qwen2_vl": 16, "qwen2_5_vl": 16, "qwen3_vl": 16, "internvl": 16}


def _load(folder):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=False)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=False)
    return model.eval(), processor


def _encode(processor, conversations):
    return processor.apply_chat_template(
        conversations,
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        processor_kwargs={"padding": True},
    )


def _user(images, text):
    content = [{"type": "image", "image": image} for image in images] + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]


# --- tokenizer ------------------------------------------------------------------------------


def test_tokenizer_is_deterministic_and_splits_digits():
    a, b = build_tokenizer(), build_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    assert 1000 <= len(a) <= 2000
    text = '<think>red circle</think><answer>{"bbox_2d": [12, 345, 678, 1000], "label": "red circle"}</answer>'
    ids = a(text)["input_ids"]
    assert a.decode(ids) == text
    pieces = a.convert_ids_to_tokens(ids)
    assert all(len(p) == 1 for p in pieces if any(ch.isdigit() for ch in p)), pieces  # one token per digit
    assert len(a("Find the red circle.")["input_ids"]) <= 6  # the corpus words are whole tokens


def test_tokenizer_special_tokens_and_saving(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer(tmp_path)
    for token in SPECIAL_TOKENS:
        assert tok(token)["input_ids"] == [tok.convert_tokens_to_ids(token)], token
    assert (tok.eos_token, tok.pad_token, tok.padding_side) == ("<|im_end|>", "<|endoftext|>", "left")
    assert tok.decode(tok("<|im_start|>hi<|im_end|>")["input_ids"], skip_special_tokens=True) == "hi"
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "Qwen2Tokenizer"
    assert loaded.get_vocab() == tok.get_vocab() and loaded.chat_template == tok.chat_template
    assert loaded.image_token == "<|image_pad|>" and loaded.padding_side == "left"


@pytest.mark.parametrize(
    ("model_type", "placeholder"),
    [("qwen2_vl", "<|vision_start|><|image_pad|><|vision_end|>"), ("internvl", "<IMG_CONTEXT>\n")],
)
def test_chat_template(model_type, placeholder):
    tok = build_tokenizer(model_type=model_type)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find the red circle."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>[1, 2, 3, 4]</answer>"}]},
        {"role": "user", "content": "Again."},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        f"<|im_start|>user\n{placeholder}Find the red circle.<|im_end|>\n"
        "<|im_start|>assistant\n<answer>[1, 2, 3, 4]</answer><|im_end|>\n"
        "<|im_start|>user\nAgain.<|im_end|>\n<|im_start|>assistant\n"
    )
    out = tok.apply_chat_template(messages[:3], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == "<answer>[1, 2, 3, 4]</answer><|im_end|>"


# --- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_tiny_model_loads_generates_and_trains(model_type, tiny_model_dir, small_image):
    folder = tiny_model_dir(model_type)
    model, processor = _load(folder)
    assert model.config.model_type == model_type
    assert model.config._name_or_path == str(folder)  # TRL rebuilds the reference model from it
    assert processor.tokenizer.padding_side == "left"
    assert sum(p.numel() for p in model.parameters()) < 2_000_000

    # One image: the placeholder expands to a fixed number of visual tokens.
    inputs = _encode(processor, [_user([small_image], "Find the red circle.")])
    n_visual = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert n_visual == TOKENS_PER_112PX[model_type]
    prompt_len = inputs["input_ids"].shape[1]
    for do_sample in (False, True):
        torch.manual_seed(0)
        out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=do_sample)
        assert out.shape == (1, prompt_len + 4)

    # Two conversations of different lengths (left padding); one of them has two images.
    wide = Image.new("RGB", (224, 112), (0, 200, 0))
    batch = _encode(processor, [_user([small_image, wide], "Which is red?"), _user([small_image], "Count.")])
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][:, -1].all()
    out = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[0] == 2
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    assert torch.isfinite(loss) and 5.0 < loss.item() < 9.0  # about ln(vocab) from random init
    loss.backward()
    assert model.get_input_embeddings().weight.grad is not None


def test_internvl_tiles_and_token_count(tiny_model_dir):
    _, processor = _load(tiny_model_dir("internvl"))
    wide = Image.new("RGB", (224, 112), (0, 200, 0))
    inputs = _encode(processor, [_user([wide], "Find it.")])
    assert tuple(inputs["pixel_values"].shape) == (3, 3, 112, 112)  # 2 tiles + 1 thumbnail
    ids = inputs["input_ids"][0].tolist()
    tok = processor.tokenizer
    assert ids.count(tok.convert_tokens_to_ids("<IMG_CONTEXT>")) == 3 * 16
    assert ids.count(tok.convert_tokens_to_ids("<img>")) == ids.count(tok.convert_tokens_to_ids("</img>")) == 1


def test_qwen_grid_and_pixel_rows(tiny_model_dir, small_image):
    _, processor = _load(tiny_model_dir("qwen2_vl"))
    inputs = _encode(processor, [_user([small_image], "Find it.")])
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]]  # (t, h, w) in 14 px patches
    assert tuple(inputs["pixel_values"].shape) == (64, 3 * 2 * 14 * 14)  # one row per patch, flattened


def test_same_seed_same_weights_and_overrides(tmp_path):
    from safetensors.torch import load_file

    small = {"hidden_size": 64, "num_layers": 1, "intermediate_size": 64, "vision_depth": 1, "vision_width": 32}
    a = load_file(make_tiny(tmp_path / "a", "qwen2_vl", seed=1, **small) / "model.safetensors")
    b = load_file(make_tiny(tmp_path / "b", "qwen2_vl", seed=1, **small) / "model.safetensors")
    c = load_file(make_tiny(tmp_path / "c", "qwen2_vl", seed=2, **small) / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    embed = next(t for k, t in a.items() if k.endswith("embed_tokens.weight"))
    assert embed.shape[1] == 64  # the override was honoured
    with pytest.raises(TypeError, match="hidden_sise"):
        make_tiny(tmp_path / "d", "qwen2_vl", hidden_sise=64)
    with pytest.raises(TypeError, match="max_tiles do not apply to qwen2_vl"):  # Qwen sizes images by pixels
        make_tiny(tmp_path / "d", "qwen2_vl", max_tiles=4)
    with pytest.raises(TypeError, match="min_pixels do not apply to internvl"):  # InternVL by tiles
        make_tiny(tmp_path / "d", "internvl", min_pixels=56 * 56)
    with pytest.raises(ValueError, match="qwen2_vl"):
        make_tiny(tmp_path / "e", "llava")
    # sizes the model could not run with are refused before anything is written
    for model_type, sizes, message in (("qwen2_vl", {"num_kv_heads": 3}, "multiple of num_kv_heads"),
                                       ("qwen2_5_vl", {"vision_heads": 16}, "divisible by 4 .Qwen's vision rotary"),
                                       ("internvl", {"vision_heads": 5}, "vision_width / vision_heads must be a whole"),
                                       ("qwen2_vl", {"vision_intermediate_size": 160}, "multiple of vision_width")):
        with pytest.raises(ValueError, match=message):
            make_tiny(tmp_path / "f", model_type, **sizes)
    assert not (tmp_path / "f").exists()


def test_qwen2_5_vl_attends_to_the_whole_image_every_eighth_block():
    """As in the released Qwen2.5-VL (blocks 7, 15, 23, 31 of 32): the 3B-shaped benchmark model had only its
    last block full, so its vision tower cost less than the real one's."""
    from vlm_r1.tiny.models import DEFAULT_SIZES, _build_config

    ids = dict.fromkeys(("image", "video", "vision_start", "vision_end", "bos", "eos", "pad"), 1)

    def blocks(depth):
        config = _build_config("qwen2_5_vl", {**DEFAULT_SIZES, "vision_depth": depth}, 1000, ids)
        return config.vision_config.fullatt_block_indexes

    assert blocks(32) == [7, 15, 23, 31] and blocks(2) == [1]
