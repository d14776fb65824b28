"""Load a checkpoint (hub id or folder) with its VLM module, and set which parameters train.

Used by every command that touches a model (train, sft, eval, merge-lora), so loading works the same way
everywhere: the module is chosen by ``config.model_type``, ``trust_remote_code`` is off unless asked for, and the
processor pads on the left (generation needs it).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from .config import ModelArguments
from .modules import VLMModule, module_for_checkpoint

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_processor(model_args: ModelArguments, module: VLMModule, trust_remote_code: bool = False):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        padding_side="left",
        trust_remote_code=trust_remote_code,
        **module.processor_kwargs(model_args.min_pixels, model_args.max_pixels, model_args.max_tiles),
    )
    _check_pixel_bounds(processor, model_args)
    return processor


def _check_pixel_bounds(processor, model_args: ModelArguments) -> None:
    """Refuse a lone ``min_pixels`` above the checkpoint's max_pixels (or a lone ``max_pixels`` below its min_pixels):
    the processor would enlarge small images past the maximum and shrink large ones below the minimum."""
    size = getattr(getattr(processor, "image_processor", None), "size", None)  # a dict or transformers' SizeDict
    try:
        low, high = size["shortest_edge"], size["longest_edge"]
    except (KeyError, TypeError, AttributeError):  # no pixel bounds (InternVL tiles)
        return
    if low is None or high is None or low <= high:
        return
    from .recipe import OptionError

    given = "--min_pixels" if model_args.min_pixels is not None else "--max_pixels"
    raise OptionError(f"min_pixels {low} is above max_pixels {high} ({given} given, the other from "
                      f"{model_args.model_name_or_path}'s processor config): pass both --min_pixels and --max_pixels")


def _refuse_adapter_folder(path: str) -> None:
    from .checkpoints import CheckpointError, is_adapter_folder

    if is_adapter_folder(path):
        raise CheckpointError(
            f"{path} is a LoRA adapter folder, not a full checkpoint: merge it first with "
            f"`vlm-r1 merge-lora --adapter {path} --out MERGED_DIR`"
        )


def check_model_options(model_args: ModelArguments, trust_remote_code: bool = False) -> VLMModule:
    """The checkpoint's VLM module, after refusing the options it cannot honour (``max_tiles`` on Qwen, pixels on
    InternVL), a LoRA adapter folder or a checkpoint no module serves: cheap (``config.json``; the processor too
    when one pixel bound is given without the other, to check it against the checkpoint's), so commands call it
    before reading their data."""
    _refuse_adapter_folder(model_args.model_name_or_path)
    module = module_for_checkpoint(model_args.model_name_or_path, trust_remote_code=trust_remote_code,
                                   revision=model_args.model_revision)  # fmt: skip
    module.processor_kwargs(model_args.min_pixels, model_args.max_pixels, model_args.max_tiles)
    if (model_args.min_pixels is None) != (model_args.max_pixels is None):
        load_processor(model_args, module, trust_remote_code)  # refuses a bound on the wrong side of the other
    return module


def load_model(model_args: ModelArguments, module: VLMModule, trust_remote_code: bool = False):
    kwargs = {"revision": model_args.model_revision, "trust_remote_code": trust_remote_code}
    kwargs["dtype"] = "auto" if model_args.dtype == "auto" else _DTYPES[model_args.dtype]
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    return module.model_class().from_pretrained(model_args.model_name_or_path, **kwargs)


def load_policy(model_args: ModelArguments, trust_remote_code: bool = False):
    """Return ``(model, processor, module)`` for a checkpoint."""
    _refuse_adapter_folder(model_args.model_name_or_path)
    folder = Path(model_args.model_name_or_path)
    if folder.is_dir():  # its absolute path goes into the model's config and into every adapter_config.json trained
        # from it, so that `merge-lora` finds the base whichever folder it runs in
        from .checkpoints import refuse_broken_weights

        refuse_broken_weights(folder)  # one line naming the file, not the loader's traceback
        model_args = dataclasses.replace(model_args, model_name_or_path=str(folder.resolve()))
    module = module_for_checkpoint(
        model_args.model_name_or_path, trust_remote_code=trust_remote_code, revision=model_args.model_revision
    )
    processor = load_processor(model_args, module, trust_remote_code)
    model = load_model(model_args, module, trust_remote_code)
    return model, processor, module


def apply_training_mode(model, module: VLMModule, model_args: ModelArguments):
    """Freeze what the arguments say and return a peft ``LoraConfig`` (or None for full / partial training).

    Modes (``check_args`` refuses the combinations that make no sense):

    * full: every parameter trains (the default).
    * ``freeze_vision``: the vision encoder is frozen; the projector still trains unless ``freeze_projector``.
    * ``use_peft``: LoRA adapters on the language model's ``lora_target_modules``; the base model is frozen by peft
      (TRL wraps the model with ``get_peft_model``). ``lora_vision`` also puts adapters on every linear layer of the
      vision encoder and the projector. With ``beta > 0`` the reference model is the policy with its adapters
      disabled (TRL's ``use_adapter``), so no second copy of the weights is loaded.

    Gradient checkpointing is TRL's ``gradient_checkpointing`` (on by default in GRPOConfig) and works in every mode.
    """
    if model_args.freeze_vision:
        frozen = 0
        for name, param in model.named_parameters():
            part = module.part_of(name)
            if part == "vision" or (part == "projector" and model_args.freeze_projector):
                param.requires_grad_(False)
                frozen += 1
        if not frozen:
            raise ValueError(
                f"freeze_vision matched no parameter of {type(model).__name__}: {type(module).__name__}."
                f" vision_keywords {module.vision_keywords} do not fit this checkpoint's parameter names"
            )
    if not model_args.use_peft:
        return None
    return lora_config(model, module, model_args)


def lora_target_names(model, module: VLMModule, target_modules, lora_vision: bool) -> list[str]:
    """Full names of the linear layers that get LoRA adapters.

    Language model: the layers whose last name component is in ``target_modules``. Vision side (with
    ``lora_vision``): every linear layer of the encoder and the projector, whatever its name, because the families
    name them differently (``qkv``/``fc1``, ``q_proj``/``projection_layer``, ``linear_fc1`` ...). Full names are
    needed because some vision towers reuse the language model's short names (InternViT's ``q_proj``).
    """
    targets = set(target_modules)
    language, vision = [], []
    for name, submodule in model.named_modules():
        if not isinstance(submodule, torch.nn.Linear) or not name:
            continue
        if module.part_of(name + ".") == "language":
            if name.rsplit(".", 1)[-1] in targets:
                language.append(name)
        elif lora_vision:
            vision.append(name)
    if not language:
        from .recipe import OptionError

        names = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and name and module.part_of(name + ".") == "language"}
                       - {"lm_head"})  # fmt: skip
        raise OptionError(f"lora_target_modules {sorted(targets)} match no linear layer of this model's language "
                          f"model; its linear layers are named {', '.join(names)}")
    if lora_vision and not vision:
        raise ValueError(f"lora_vision: {type(module).__name__} found no linear layer in the vision encoder")
    return language + vision


def lora_config(model, module: VLMModule, model_args: ModelArguments):
    from peft import LoraConfig

    names = lora_target_names(model, module, model_args.lora_target_modules, model_args.lora_vision)
    return LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=names,
        task_type="CAUSAL_LM",
        revision=model_args.model_revision,  # recorded in adapter_config.json: merge-lora loads the same base
    )


def count_parameters(model, module: VLMModule | None = None) -> dict[str, tuple[int, int]]:
    """``{part: (trainable, total)}`` with part in total / vision / projector / language (the last three need a
    module). LoRA weights count in the part of the layer they adapt. Under ZeRO-3 a parameter's local tensor is an
    empty shard; its full size is ``ds_numel``."""
    counts: dict[str, list[int]] = {"total": [0, 0]}
    for name, param in model.named_parameters():
        size = getattr(param, "ds_numel", None) or param.numel()
        keys = ["total"] if module is None else ["total", module.part_of(name)]
        for key in keys:
            entry = counts.setdefault(key, [0, 0])
            entry[1] += size
            if param.requires_grad:
                entry[0] += size
    return {key: (trainable, total) for key, (trainable, total) in counts.items()}


def describe_parameters(model, module: VLMModule | None = None) -> str:
    """One line: trainable of total parameters, and per part (vision / projector / language) when a module is given."""
    counts = count_parameters(model, module)
    trainable, total = counts["total"]
    text = f"trainable parameters: {trainable:,} of {total:,} ({100.0 * trainable / max(total, 1):.2f}%)"
    parts = [
        f"{part} {counts[part][0]:,}/{counts[part][1]:,}"
        for part in ("vision", "projector", "language")
        if part in counts
    ]
    return text + (f" [{', '.join(parts)}]" if parts else "")
