"""VLM modules: one small adapter per model family, chosen by ``config.model_type`` (never by path substring)."""

from __future__ import annotations

from .base import THINK_ANSWER_TEMPLATE, VLMModule
from .internvl import InternVLModule
from .qwen import Qwen2VLModule, Qwen3VLModule, Qwen25VLModule

_MODULES: dict[str, type[VLMModule]] = {
    model_type: cls
    for cls in (Qwen2VLModule, Qwen25VLModule, Qwen3VLModule, InternVLModule)
    for model_type in cls.model_types
}


def supported_model_types() -> list[str]:
    return sorted(_MODULES)


def get_module(model_type: str) -> VLMModule:
    """The module for a checkpoint's ``config.model_type``; an unknown type lists the supported ones."""
    try:
        return _MODULES[model_type]()
    except KeyError:
        raise ValueError(
            f"model_type {model_type!r} has no VLM module; supported: {', '.join(supported_model_types())}. "
            "Add one in vlm_r1/modules/ (see docs/architecture.md)."
        ) from None


def module_for_checkpoint(name_or_path: str, trust_remote_code: bool = False, revision: str = "main") -> VLMModule:
    """Read ``config.json`` of a hub id or local folder and return its module."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    return get_module(config.model_type)


__all__ = ["THINK_ANSWER_TEMPLATE", "VLMModule", "get_module", "module_for_checkpoint", "supported_model_types"]
