"""Qwen2-VL, Qwen2.5-VL and Qwen3-VL: dynamic-resolution image patches merged 2x2 into visual tokens.

Frames differ by generation: Qwen2-VL and Qwen3-VL write integers 0–1000 relative to the image, Qwen2.5-VL writes
absolute pixels of the image the processor resized (``smart_resize`` to a multiple of patch×merge pixels: 14×2 for
Qwen2/2.5-VL, 16×2 for Qwen3-VL).

Parameters: the whole vision side lives under ``model.visual.*``; the projector is ``visual.merger`` (and, in
Qwen3-VL, the DeepStack mergers ``visual.deepstack_merger_list.*`` that feed intermediate vision features into the
first decoder layers). The vision blocks' linear layers are ``attn.qkv``/``attn.proj`` and ``mlp.fc1/fc2``
(Qwen2-VL), ``mlp.gate_proj/up_proj/down_proj`` (Qwen2.5-VL) or ``mlp.linear_fc1/linear_fc2`` (Qwen3-VL).
``min_pixels`` / ``max_pixels`` are set on the image processor (``size.shortest_edge`` / ``size.longest_edge``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Size, VLMModule


@dataclass(frozen=True)
class QwenVLModule(VLMModule):
    vision_keywords: ClassVar[tuple[str, ...]] = ("visual.",)
    projector_keywords: ClassVar[tuple[str, ...]] = ("visual.merger",)

    def processor_kwargs(self, min_pixels, max_pixels, max_tiles):
        if max_tiles is not None:
            from ..recipe import OptionError

            raise OptionError("max_tiles is an InternVL setting; Qwen models are bounded by min_pixels / max_pixels")
        kwargs = {}
        if min_pixels is not None:
            kwargs["min_pixels"] = min_pixels
        if max_pixels is not None:
            kwargs["max_pixels"] = max_pixels
        return kwargs

    def model_input_size(self, processor, original_size: Size) -> Size:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        image_processor = processor.image_processor
        size = image_processor.size
        factor = image_processor.patch_size * image_processor.merge_size
        height, width = smart_resize(
            original_size[1],
            original_size[0],
            factor=factor,
            min_pixels=size["shortest_edge"],
            max_pixels=size["longest_edge"],
        )
        return (width, height)


@dataclass(frozen=True)
class Qwen2VLModule(QwenVLModule):
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_vl",)
    output_frame: ClassVar[str] = "relative_1000"


@dataclass(frozen=True)
class Qwen25VLModule(QwenVLModule):
    model_types: ClassVar[tuple[str, ...]] = ("qwen2_5_vl",)
    output_frame: ClassVar[str] = "resized_pixels"


@dataclass(frozen=True)
class Qwen3VLModule(QwenVLModule):
    model_types: ClassVar[tuple[str, ...]] = ("qwen3_vl",)
    output_frame: ClassVar[str] = "relative_1000"
    projector_keywords: ClassVar[tuple[str, ...]] = ("visual.merger", "visual.deepstack_merger_list")
