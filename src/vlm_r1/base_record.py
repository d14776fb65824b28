"""The base model a LoRA adapter was trained on, recorded beside the adapter.

An adapter only makes sense on the weights it was trained against. ``adapter_config.json`` names the base by path,
and the folder at that path can be rebuilt or overwritten later (``make-tiny`` into the same folder, a full
fine-tune saved over it); ``merge-lora`` or a resumed run would then apply the adapter to another model without a
word. So LoRA runs from a local base write ``vlm_r1_base.json`` (the base's path and a fingerprint of its weight
files) into the output folder and every ``checkpoint-N``; ``merge-lora`` and resuming compare it with the base
they load.

The fingerprint is cheap, not a full hash: for each weight file, its name, size and 16 evenly spaced 4 KiB pieces
(the safetensors header included), about 64 KiB read per file whatever the model's size. Any rewrite of the weights
changes it in practice (new weights differ nearly everywhere); a copy of the same files elsewhere keeps it.
A hub id records no fingerprint: its ``revision`` pins it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

BASE_RECORD_FILE = "vlm_r1_base.json"
PIECES_PER_FILE = 16
PIECE_BYTES = 4096


def weights_fingerprint(folder) -> str | None:
    """A sha256 over the weight files' names, sizes and sampled bytes; None when ``folder`` holds no weight file."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with open(path, "rb") as f:
            for i in range(PIECES_PER_FILE):
                f.seek(max(0, min(size * i // (PIECES_PER_FILE - 1), size - PIECE_BYTES)))
                digest.update(f.read(PIECE_BYTES))
    return digest.hexdigest()


def base_record(base: str) -> dict | None:
    """The record of a local base folder (None for a hub id, or a folder without weight files)."""
    if not Path(base).is_dir():
        return None
    fingerprint = weights_fingerprint(base)
    return None if fingerprint is None else {"base": str(Path(base).resolve()), "fingerprint": fingerprint}


def save_base_record(folder, record: dict) -> Path:
    path = Path(folder) / BASE_RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    return path


def check_base(adapter_dir, base: str) -> None:
    """Raise ``CheckpointError`` when the adapter in ``adapter_dir`` records a base whose weights differ from the
    ones now in the folder ``base``. Nothing to check when the adapter records none (trained from a hub id, or by an
    older version or another tool) or ``base`` is a hub id."""
    from .checkpoints import CheckpointError

    path = Path(adapter_dir) / BASE_RECORD_FILE
    if not path.is_file() or not Path(base).is_dir():
        return
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["fingerprint"]
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable ({e}); delete it to skip the check of the base model") from e
    if weights_fingerprint(base) != recorded:
        raise CheckpointError(
            f"{base} is not the model the adapter in {adapter_dir} was trained on: its weight files differ from the "
            f"ones {BASE_RECORD_FILE} recorded when training began (the folder was rebuilt or overwritten since, or "
            "it is another model). Use the original base; to apply the adapter to this model anyway, delete "
            f"{path}")  # fmt: skip
