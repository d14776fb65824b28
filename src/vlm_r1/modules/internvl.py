"""InternVL (transformers' native ``InternVLForConditionalGeneration``, no remote code).

Images are cut into square tiles of ``image_size`` pixels (at most ``max_patches`` tiles plus a thumbnail);
InternVL2.5/3 write boxes as integers 0–1000 relative to the image, whatever the tiling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Size, VLMModule


@dataclass(frozen=True)
class InternVLModule(VLMModule):
    model_types: ClassVar[tuple[str, ...]] = ("internvl",)
    output_frame: ClassVar[str] = "relative_1000"
    vision_keywords: ClassVar[tuple[str, ...]] = ("vision_tower.",)
    projector_keywords: ClassVar[tuple[str, ...]] = ("multi_modal_projector.",)

    def processor_kwargs(self, min_pixels, max_pixels, max_tiles):
        if min_pixels is not None or max_pixels is not None:
            raise ValueError("min_pixels / max_pixels are Qwen settings; bound InternVL images with max_tiles")
        return {} if max_tiles is None else {"max_patches": max_tiles}

    def model_input_size(self, processor, original_size: Size) -> Size:
        # The relative frame does not depend on the tiling.
        return original_size
