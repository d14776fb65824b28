"""Tiny models of real architectures, built from config and saved like downloaded checkpoints."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from .tokenizer import BPE_VOCAB_SIZE, SPECIAL_TOKENS, build_tokenizer, family

# Sizes a caller may override through `make_tiny(..., **overrides)`; anything else is refused.
DEFAULT_SIZES = {
    "hidden_size": 128,  # text width (and the vision merger's output width)
    "num_layers": 3,  # text decoder layers
    "num_heads": 4,  # text attention heads (head dim = hidden_size / num_heads)
    "num_kv_heads": 2,  # text key/value heads (grouped-query attention, as in Qwen)
    "intermediate_size": 256,  # text MLP width
    "vision_depth": 2,  # vision transformer blocks
    "vision_width": 96,  # vision transformer width
    "vision_heads": 4,
    "vision_intermediate_size": 192,
    "min_pixels": 56 * 56,  # Qwen processors: images are resized to hold [min, max] pixels ...
    "max_pixels": 224 * 224,  # ... so 112x112 -> 16 visual tokens, at most 64 per image
    "image_size": 112,  # InternVL tile side (16 visual tokens per tile)
    "max_tiles": 2,  # InternVL dynamic tiling: at most this many tiles (+1 thumbnail if > 1 tile)
    "tie_word_embeddings": True,
    "vocab_size": BPE_VOCAB_SIZE,  # BPE target; the special tokens come on top
}


def _token_ids(tokenizer) -> dict[str, int]:
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return {
        "bos": ids["<|endoftext|>"],
        "eos": ids["<|im_end|>"],
        "pad": ids["<|endoftext|>"],
        "image": ids["<|image_pad|>"],
        "video": ids["<|video_pad|>"],
        "vision_start": ids["<|vision_start|>"],
        "vision_end": ids["<|vision_end|>"],
        "img_context": ids["<IMG_CONTEXT>"],
    }


def _text_config(z: dict, vocab: int, ids: dict, **extra) -> dict:
    cfg = {
        "vocab_size": vocab,
        "hidden_size": z["hidden_size"],
        "intermediate_size": z["intermediate_size"],
        "num_hidden_layers": z["num_layers"],
        "num_attention_heads": z["num_heads"],
        "num_key_value_heads": z["num_kv_heads"],
        "max_position_embeddings": 4096,
        "pad_token_id": ids["pad"],
        "tie_word_embeddings": z["tie_word_embeddings"],
    }
    cfg.update(extra)
    return cfg


def _mrope_section(head_dim: int, weights: tuple[int, int, int]) -> list[int]:
    """Split head_dim/2 rotary frequencies over (time, height, width) in the given proportions."""
    half, total = head_dim // 2, sum(weights)
    section = [half * w // total for w in weights]
    section[0] += half - sum(section)
    return section


def _build_config(model_type: str, z: dict, vocab: int, ids: dict):
    from transformers import AutoConfig

    head_dim = z["hidden_size"] // z["num_heads"]
    qwen_ids = {
        "image_token_id": ids["image"],
        "video_token_id": ids["video"],
        "vision_start_token_id": ids["vision_start"],
        "vision_end_token_id": ids["vision_end"],
        "tie_word_embeddings": z["tie_word_embeddings"],
    }
    bos_eos = {"bos_token_id": ids["bos"], "eos_token_id": ids["eos"]}
    if model_type == "qwen2_vl":
        rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": _mrope_section(head_dim, (2, 3, 3))}
        vision = {
            "depth": z["vision_depth"],
            "embed_dim": z["vision_width"],
            "num_heads": z["vision_heads"],
            "mlp_ratio": z["vision_intermediate_size"] // z["vision_width"],  # a multiple: checked in make_tiny
            "hidden_size": z["hidden_size"],
        }
        text = _text_config(z, vocab, ids, rope_parameters=rope, **bos_eos)
    elif model_type == "qwen2_5_vl":
        rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": _mrope_section(head_dim, (2, 3, 3))}
        vision = {
            "depth": z["vision_depth"],
            "hidden_size": z["vision_width"],
            "intermediate_size": z["vision_intermediate_size"],
            "num_heads": z["vision_heads"],
            "out_hidden_size": z["hidden_size"],
            "window_size": 112,
            # every 8th block attends to the whole image, as in the released Qwen2.5-VL (7, 15, 23, 31 of 32)
            "fullatt_block_indexes": [i for i in range(z["vision_depth"]) if i % 8 == 7] or [z["vision_depth"] - 1],
        }
        text = _text_config(z, vocab, ids, rope_parameters=rope, **bos_eos)
    elif model_type == "qwen3_vl":
        rope = {
            "rope_type": "default",
            "rope_theta": 5e6,
            "mrope_section": _mrope_section(head_dim, (6, 5, 5)),
            "mrope_interleaved": True,
        }
        vision = {
            "depth": z["vision_depth"],
            "hidden_size": z["vision_width"],
            "intermediate_size": z["vision_intermediate_size"],
            "num_heads": z["vision_heads"],
            "out_hidden_size": z["hidden_size"],
            "num_position_embeddings": 256,  # a 16x16 grid of learned positions, interpolated
            "deepstack_visual_indexes": [0],
        }
        text = _text_config(z, vocab, ids, rope_parameters=rope, head_dim=head_dim)
    else:  # internvl
        side = z["image_size"]
        vision = {
            "hidden_size": z["vision_width"],
            "num_hidden_layers": z["vision_depth"],
            "num_attention_heads": z["vision_heads"],
            "intermediate_size": z["vision_intermediate_size"],
            "image_size": [side, side],
            "patch_size": [14, 14],
        }
        rope = {"rope_type": "default", "rope_theta": 1e6}
        text = _text_config(z, vocab, ids, model_type="qwen2", rope_parameters=rope, **bos_eos)
        return AutoConfig.for_model(
            "internvl",
            text_config=text,
            vision_config=vision,
            image_token_id=ids["img_context"],
            image_seq_length=_internvl_tokens_per_tile(side),
            downsample_ratio=0.5,
            tie_word_embeddings=z["tie_word_embeddings"],
        )
    return AutoConfig.for_model(model_type, text_config=text, vision_config=vision, **qwen_ids)


def _internvl_tokens_per_tile(side: int) -> int:
    if side % 28:
        raise ValueError(f"InternVL image_size must be a multiple of 28 (14 px patches, 2x2 shuffle), got {side}")
    return (side // 28) ** 2


def _build_processor(model_type: str, z: dict, tokenizer):
    import transformers as tf

    if model_type == "internvl":
        side = {"height": z["image_size"], "width": z["image_size"]}
        image_processor = tf.GotOcr2ImageProcessor(
            size=side, crop_to_patches=True, min_patches=1, max_patches=z["max_tiles"]
        )
        video_processor = tf.InternVLVideoProcessor(size=side)
        return tf.InternVLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            image_seq_length=_internvl_tokens_per_tile(z["image_size"]),
            chat_template=tokenizer.chat_template,
        )
    pixels = {"min_pixels": z["min_pixels"], "max_pixels": z["max_pixels"]}
    if model_type == "qwen3_vl":
        half = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "patch_size": 16}
        image_processor = tf.Qwen2VLImageProcessor(**pixels, **half)
        video_processor = tf.Qwen3VLVideoProcessor(**pixels, **half)
        processor_class = tf.Qwen3VLProcessor
    else:
        image_processor = tf.Qwen2VLImageProcessor(**pixels)
        video_processor = tf.Qwen2VLVideoProcessor(**pixels)
        processor_class = tf.Qwen2VLProcessor if model_type == "qwen2_vl" else tf.Qwen2_5_VLProcessor
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=tokenizer.chat_template,
    )


@contextlib.contextmanager
def _quiet():
    """Silence transformers' logs, progress bars and Python warnings while building."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


# Image-size keys of DEFAULT_SIZES that a family's processor does not read.
OTHER_FAMILY_SIZES = {"qwen": ("image_size", "max_tiles"), "internvl": ("min_pixels", "max_pixels")}


def make_tiny(out_dir, model_type: str = "qwen2_vl", seed: int = 0, **overrides) -> Path:
    """Build a tiny `model_type` checkpoint in `out_dir` and return the folder as a Path.

    model_type: one of MODEL_TYPES. overrides: any key of DEFAULT_SIZES (others raise TypeError).
    The folder holds config, weights (float32 safetensors), generation config, tokenizer, chat
    template and processor configs, and loads with `AutoModelForImageTextToText.from_pretrained`
    and `AutoProcessor.from_pretrained` like a downloaded checkpoint. Same seed, same weights.
    """
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig

    kind = family(model_type)  # raises ValueError for an unknown model type
    unknown = sorted(set(overrides) - set(DEFAULT_SIZES))
    if unknown:
        raise TypeError(f"make_tiny got unknown override(s) {unknown}; valid: {', '.join(DEFAULT_SIZES)}")
    other_family = sorted(set(overrides) & set(OTHER_FAMILY_SIZES[kind]))
    if other_family:
        raise TypeError(f"make_tiny: {', '.join(other_family)} do not apply to {model_type} (its processor sizes "
                        f"images by {' / '.join(OTHER_FAMILY_SIZES['internvl' if kind == 'qwen' else 'qwen'])})")
    z = {**DEFAULT_SIZES, **overrides}
    problems = []
    if z["hidden_size"] % z["num_heads"] or (z["hidden_size"] // z["num_heads"]) % 4:
        problems.append("hidden_size / num_heads must be a whole head dim divisible by 4 (rotary sections)")
    if z["num_heads"] % z["num_kv_heads"]:
        problems.append("num_heads must be a multiple of num_kv_heads (grouped-query attention)")
    if z["vision_width"] % z["vision_heads"] or kind == "qwen" and (z["vision_width"] // z["vision_heads"]) % 4:
        problems.append("vision_width / vision_heads must be a whole head dim" + (" divisible by 4 (Qwen's vision "
                        "rotary embedding)" if kind == "qwen" else ""))  # fmt: skip
    if model_type == "qwen2_vl" and z["vision_intermediate_size"] % z["vision_width"]:
        problems.append("vision_intermediate_size must be a multiple of vision_width for qwen2_vl (its vision config "
                        "takes a whole mlp_ratio)")
    if problems:
        raise ValueError("make_tiny: " + "; ".join(problems))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _quiet():
        tokenizer = build_tokenizer(model_type=model_type, vocab_size=z["vocab_size"])
        ids = _token_ids(tokenizer)
        config = _build_config(model_type, z, len(tokenizer), ids)
        config.dtype = torch.float32
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
        model.generation_config = GenerationConfig(
            bos_token_id=ids["bos"], eos_token_id=[ids["eos"], ids["bos"]], pad_token_id=ids["pad"]
        )
        model.save_pretrained(out)
        _build_processor(model_type, z, tokenizer).save_pretrained(out)
    return out
