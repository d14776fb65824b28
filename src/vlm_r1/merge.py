"""``vlm-r1 merge-lora``: fold a trained LoRA adapter into its base model and write a plain checkpoint.

A LoRA run's output folder holds only the adapter (``adapter_config.json``, ``adapter_model.safetensors``) and the
processor. This command loads the base checkpoint named in ``adapter_config.json`` (or ``--base``), applies the
adapter, merges it into the weights (``merge_and_unload``) and saves model + processor + generation config, so the
result loads with ``AutoModelForImageTextToText.from_pretrained`` / ``AutoProcessor.from_pretrained`` (and with
vLLM, eval, or another training run) without peft.

Merging in float32 and saving in the base's dtype is exact up to rounding: the merged model's logits match the
adapter model's to about 1e-6 in float32 (measured; tests/test_lora.py allows 1e-4); in bfloat16 the rounding of
W + BA to bf16 adds errors of the order of bf16's resolution.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from .checkpoints import ADAPTER_CONFIG, is_adapter_folder, refuse_broken_weights
from .recipe import OptionError, check_output_dir


def adapter_base(adapter_dir) -> tuple[str, str]:
    """``(checkpoint, revision)`` of the base an adapter folder was trained on (``base_model_name_or_path`` and
    ``revision`` of its adapter config; a config without a revision means ``main``)."""
    config = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        from .checkpoints import CheckpointError

        raise CheckpointError(f"{adapter_dir}/{ADAPTER_CONFIG} names no base_model_name_or_path; pass --base")
    return base, config.get("revision") or "main"


def merge_lora(
    adapter_dir, out_dir, base: str | None = None, dtype: str = "auto", trust_remote_code: bool = False,
    revision: str | None = None,
) -> Path:
    """Merge ``adapter_dir`` into its base and save a plain checkpoint (model + processor) in ``out_dir``.

    The base is ``base`` at ``revision`` when given, else the checkpoint and revision the adapter config records."""
    import torch
    from peft import PeftModel
    from transformers import AutoProcessor

    from .modules import module_for_checkpoint

    adapter_dir = Path(adapter_dir)
    if not is_adapter_folder(adapter_dir):
        raise FileNotFoundError(f"{adapter_dir} has no {ADAPTER_CONFIG}: not a LoRA adapter folder")
    check_output_dir(out_dir, "out")
    refuse_broken_weights(adapter_dir)
    recorded = base is None
    if recorded:
        base, recorded_revision = adapter_base(adapter_dir)
        revision = revision or recorded_revision
    revision = revision or "main"
    for name, folder in (("the --adapter", adapter_dir), ("the base", Path(base))):
        if folder.is_dir() and Path(out_dir).resolve() == folder.resolve():
            raise OptionError(f"--out {out_dir} is {name} folder: the merged model would be written over it; "
                              "choose another --out")
    if Path(out_dir).is_dir() and any(Path(out_dir).iterdir()):  # another model, a run: files of two would mix
        raise OptionError(f"--out {out_dir} is not empty: the merged model's files would replace some of what it "
                          "holds; choose a new folder")
    if revision != "main" and Path(base).is_dir():
        raise OptionError(f"--revision {revision} only applies to a hub id, and the base {base} is a local folder, "
                         "loaded as it is: check out that revision there, or drop --revision")
    try:
        module = module_for_checkpoint(base, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as e:
        if not recorded:
            raise
        relative = "" if Path(base).is_absolute() else "; a relative path is relative to the folder the run began in"
        raise FileNotFoundError(f"{adapter_dir}/{ADAPTER_CONFIG} records the base {base!r}, which is neither a folder "
                                f"from here nor a reachable hub id ({type(e).__name__}){relative}: pass --base PATH") from e
    from .base_record import check_base

    check_base(adapter_dir, base)
    if Path(base).is_dir():
        refuse_broken_weights(base)
    if dtype == "auto":
        from transformers import AutoConfig

        saved = getattr(AutoConfig.from_pretrained(base, trust_remote_code=trust_remote_code, revision=revision),
                        "dtype", None)
        target = getattr(torch, saved) if isinstance(saved, str) else (saved or torch.float32)
    else:
        target = getattr(torch, dtype)
    # Merge in float32 (exact W + scale * B @ A), then store in the requested / the base's dtype.
    model = module.model_class().from_pretrained(base, dtype=torch.float32, trust_remote_code=trust_remote_code,
                                                 revision=revision)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    model = model.to(target)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    # The run's folder has the processor it trained with (its min/max pixels or tiles); else take the base's.
    saved_processor = any((adapter_dir / name).is_file() for name in ("processor_config.json", "preprocessor_config.json"))
    processor = (AutoProcessor.from_pretrained(adapter_dir, trust_remote_code=trust_remote_code) if saved_processor
                 else AutoProcessor.from_pretrained(base, trust_remote_code=trust_remote_code, revision=revision))
    processor.save_pretrained(out)
    from .data.prompts import PROMPT_FILE

    if (adapter_dir / PROMPT_FILE).is_file():  # the prompt the adapter was trained with travels with the merge
        shutil.copyfile(adapter_dir / PROMPT_FILE, out / PROMPT_FILE)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vlm-r1 merge-lora", description="Merge a LoRA adapter into its base model and save a plain checkpoint."
    )
    parser.add_argument("--adapter", required=True, help="folder of a LoRA run (adapter_config.json + weights)")
    parser.add_argument("--out", required=True, help="folder to write the merged checkpoint to")
    parser.add_argument(
        "--base", default=None, help="base checkpoint (default: base_model_name_or_path of the adapter)"
    )
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="dtype of the saved weights (default: the base checkpoint's)")
    parser.add_argument("--revision", default=None,
                        help="branch, tag or commit of the base (default: the one its adapter config records, "
                             "else main)")
    parser.add_argument("--trust_remote_code", action="store_true")
    args = parser.parse_args(argv)
    out = merge_lora(args.adapter, args.out, base=args.base, dtype=args.dtype, trust_remote_code=args.trust_remote_code,
                     revision=args.revision)
    print(f"merged checkpoint written to {out}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
