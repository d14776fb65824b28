"""InternVL 2.5 / 3 through transformers' native ``InternVLForConditionalGeneration`` (no remote code).

Checkpoints: the ``-hf`` conversions (``OpenGVLab/InternVL3-1B-hf`` ...), ``config.model_type == "internvl"``.

* Tiles. The processor (``GotOcr2ImageProcessor``) cuts each image into square tiles of ``size`` pixels (448 for the
  real models, 112 for the tiny one) on the grid closest to the image's aspect ratio with ``min_patches`` to
  ``max_patches`` tiles, and adds a thumbnail tile when there is more than one. Each tile becomes
  ``image_seq_length`` visual tokens (256 real, 16 tiny). ``max_tiles`` in a recipe sets ``max_patches`` (the real
  keyword in transformers 5.23); InternVL's processor always tiles (``crop_to_patches=True``), and TRL recounts the
  tiles per image with the same image processor, so the bound applies to generation and to the loss alike.
* Frame. InternVL writes boxes as integers 0–1000 relative to the image (``<box>[[x1, y1, x2, y2]]</box>`` in its
  own grounding format), whatever the tiling, so the model input size is not needed.
* Parameters. ``model.vision_tower.*`` (InternViT: ``attention.q_proj/k_proj/v_proj/projection_layer``, ``mlp.fc1/fc2``)
  and ``model.multi_modal_projector.*`` (``layer_norm``, ``linear_1``, ``linear_2``) sit side by side; the
  language model is ``model.language_model.*`` (a Qwen2 / Qwen2.5 / InternLM decoder) plus ``lm_head``. The vision
  tower's attention uses the same ``q_proj``/``k_proj``/``v_proj`` names as the language model, which is why LoRA
  targets are chosen by full module name (``loading.lora_config``), never by the short name alone.
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
        from ..recipe import OptionError

        if min_pixels is not None or max_pixels is not None:
            raise OptionError("min_pixels / max_pixels are Qwen settings; bound InternVL images with max_tiles")
        if max_tiles is None:
            return {}
        if max_tiles < 1:
            raise OptionError(f"max_tiles must be >= 1, got {max_tiles}")
        return {"max_patches": int(max_tiles)}

    def model_input_size(self, processor, original_size: Size) -> Size:
        # The relative frame does not depend on the tiling.
        return original_size
