"""VLM modules: one small adapter per model family, chosen by ``config.model_type`` (never by path substring)."""

from __future__ import annotations

import os

from .base import THINK_ANSWER_TEMPLATE, VLMModule
from .internvl import InternVLModule
from .qwen import Qwen2VLModule, Qwen3VLModule, Qwen25VLModule

_MODULES: dict[str, type[VLMModule]] = {
    model_type: cls
    for cls in (Qwen2VLModule, Qwen25VLModule, Qwen3VLModule, InternVLModule)
    for model_type in cls.model_types
}


# model types of checkpoints that have a transformers-native conversion vlm-r1 runs instead
_USE_A_CONVERSION = {
    "internvl_chat": "an original InternVL checkpoint, run by its own modelling code; vlm-r1 runs the "
                     "transformers-native conversion of it, named with -hf (e.g. OpenGVLab/InternVL3-1B-hf)",
}  # fmt: skip


def supported_model_types() -> list[str]:
    return sorted(_MODULES)


def get_module(model_type: str) -> VLMModule:
    """The module for a checkpoint's ``config.model_type``; an unknown type lists the supported ones."""
    try:
        return _MODULES[model_type]()
    except KeyError:
        from ..checkpoints import CheckpointError

        if model_type in _USE_A_CONVERSION:
            raise CheckpointError(f"model_type {model_type!r}: {_USE_A_CONVERSION[model_type]}") from None
        raise CheckpointError(
            f"model_type {model_type!r} has no VLM module; supported: {', '.join(supported_model_types())}. "
            "Add one in vlm_r1/modules/ (see docs/architecture.md)."
        ) from None


def module_for_checkpoint(name_or_path: str, trust_remote_code: bool = False, revision: str = "main") -> VLMModule:
    """Read ``config.json`` of a hub id or local folder and return its module."""
    return get_module(checkpoint_config(name_or_path, trust_remote_code, revision).model_type)


def checkpoint_config(name_or_path: str, trust_remote_code: bool = False, revision: str = "main"):
    """The ``config.json`` of a hub id or local folder (no weights); errors that say what is wrong."""
    from transformers import AutoConfig

    refuse_missing_folder(name_or_path)  # a missing folder of a path's form is refused here, before the Hub is asked
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    except (OSError, ValueError) as e:
        if not trust_remote_code and "trust_remote_code" in str(e):
            from ..checkpoints import CheckpointError
            from ..recipe import OptionError

            raw = _raw_model_type(name_or_path, revision)
            if raw in _USE_A_CONVERSION:  # its own code would load, and then no module would serve it
                raise CheckpointError(f"{name_or_path}: model_type {raw!r}: {_USE_A_CONVERSION[raw]}") from e
            raise OptionError(f"{name_or_path} needs its own Python code to load (its config names custom classes); "
                              "nothing of it was run. If you trust it, add --trust_remote_code true") from e
        if os.path.exists(name_or_path):
            raise
        if isinstance(e, OSError):  # a hub id the Hub does not have, or a Hub that cannot be reached
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise FileNotFoundError(f"model_name_or_path {name_or_path}: no such local folder, and the Hugging Face "
                                    f"Hub did not give it ({reason})") from e
        raise
    return config


def _raw_model_type(name_or_path: str, revision: str) -> str | None:
    """``model_type`` as ``config.json`` writes it, read without running any of the checkpoint's code."""
    from transformers import PretrainedConfig

    try:
        return PretrainedConfig.get_config_dict(name_or_path, revision=revision)[0].get("model_type")
    except (OSError, ValueError):
        return None


def refuse_missing_folder(name_or_path: str) -> None:
    """Raise FileNotFoundError at once for a name that can only be a local folder and is not there: a path by its
    form (:func:`_looks_like_a_path`), or "dir/name" where ``dir`` is a folder here and no hub checkpoint of that
    name is in the local Hugging Face cache. transformers would ask the Hub first (about 25 s of retries without a
    network)."""
    if os.path.exists(name_or_path):
        return
    if _looks_like_a_path(name_or_path):
        raise FileNotFoundError(f"model_name_or_path {name_or_path}: no such folder")
    first = name_or_path.split("/")[0]
    if "/" in name_or_path and first and os.path.isdir(first) and not _in_hub_cache(name_or_path):
        raise FileNotFoundError(f"model_name_or_path {name_or_path}: no such folder ({first}/ is a folder here, so "
                                "this reads as a mistyped path; to download the hub id, run from another folder)")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def _looks_like_a_path(name: str) -> bool:
    """A folder, not a hub id ("org/name"): it starts with "/", "." or "~", or has several parts or a backslash."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


__all__ = ["THINK_ANSWER_TEMPLATE", "VLMModule", "checkpoint_config", "get_module", "module_for_checkpoint",
           "supported_model_types"]
