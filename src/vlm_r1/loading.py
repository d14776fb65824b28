"""Load a checkpoint (hub id or folder) with its VLM module, and set which parameters train.

Used by every command that touches a model (train, sft, eval, merge-lora), so loading works the same way
everywhere: the module is chosen by ``config.model_type``, ``trust_remote_code`` is off unless asked for, and the
processor pads on the left (generation needs it).
"""

from __future__ import annotations

import logging

import torch

from .config import ModelArguments
from .modules import VLMModule, module_for_checkpoint

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_processor(model_args: ModelArguments, module: VLMModule, trust_remote_code: bool = False):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        padding_side="left",
        trust_remote_code=trust_remote_code,
        **module.processor_kwargs(model_args.min_pixels, model_args.max_pixels, model_args.max_tiles),
    )


def load_model(model_args: ModelArguments, module: VLMModule, trust_remote_code: bool = False):
    kwargs = {"revision": model_args.model_revision, "trust_remote_code": trust_remote_code}
    kwargs["dtype"] = "auto" if model_args.dtype == "auto" else _DTYPES[model_args.dtype]
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    return module.model_class().from_pretrained(model_args.model_name_or_path, **kwargs)


def load_policy(model_args: ModelArguments, trust_remote_code: bool = False):
    """Return ``(model, processor, module)`` for a checkpoint."""
    module = module_for_checkpoint(model_args.model_name_or_path, trust_remote_code=trust_remote_code)
    processor = load_processor(model_args, module, trust_remote_code)
    model = load_model(model_args, module, trust_remote_code)
    return model, processor, module


def apply_training_mode(model, module: VLMModule, model_args: ModelArguments):
    """Freeze what the arguments say and return a peft ``LoraConfig`` (or None for full / partial training)."""
    if model_args.freeze_vision:
        for name, param in model.named_parameters():
            if module.is_vision_param(name) and (model_args.freeze_projector or not module.is_projector_param(name)):
                param.requires_grad_(False)
    if not model_args.use_peft:
        return None
    from peft import LoraConfig

    targets = set(model_args.lora_target_modules)
    names = [
        name
        for name, submodule in model.named_modules()
        if isinstance(submodule, torch.nn.Linear)
        and name.rsplit(".", 1)[-1] in targets
        and (model_args.lora_vision or not module.is_vision_param(name + "."))
    ]
    if not names:
        raise ValueError(
            f"lora_target_modules {sorted(targets)} match no linear layer of this model; "
            "set them to the projection names its language model uses"
        )
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=names,
        task_type="CAUSAL_LM",
    )


def describe_parameters(model) -> str:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable parameters: {trainable:,} of {total:,} ({100.0 * trainable / max(total, 1):.2f}%)"
