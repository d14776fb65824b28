"""Checkpoints a run can resume from: find the latest COMPLETE ``checkpoint-N`` and refuse half-written ones.

transformers 5.23 writes a checkpoint in place, straight into ``<output_dir>/checkpoint-N`` (no staging folder, no
rename): weights first, then ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``, and ``trainer_state.json``
last. A process killed part-way leaves a folder that looks like a checkpoint but is not one, and transformers' own
``get_last_checkpoint`` (used by ``resume_from_checkpoint=True``) would pick it. Here a checkpoint is *complete* when

* ``trainer_state.json`` parses and its ``global_step`` equals the ``N`` of the folder name;
* the weights are there and whole: ``model.safetensors`` / ``adapter_model.safetensors`` (or every shard listed in
  ``model.safetensors.index.json``) with a readable header whose tensors fit the file size exactly, or a
  ``pytorch_model.bin`` / ``adapter_model.bin`` zip archive with its central directory (written last);
* unless the run saved only the model (``save_only_model``), ``optimizer.pt``, ``scheduler.pt`` and the RNG state
  (``rng_state.pth`` or ``rng_state_<rank>.pth``) are whole zip archives. A DeepSpeed checkpoint (a ``latest``
  file naming a ``global_step*`` folder) replaces the optimizer check with "that folder exists and is not empty".

Nothing here unpickles anything: files are checked by structure, not loaded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .ranks import is_main_rank

logger = logging.getLogger(__name__)

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
_SAFETENSORS_WEIGHTS = ("model.safetensors", "adapter_model.safetensors")
_INDEX = "model.safetensors.index.json"
_BIN_WEIGHTS = ("pytorch_model.bin", "adapter_model.bin")
WEIGHT_FILES = (*_SAFETENSORS_WEIGHTS, _INDEX, *_BIN_WEIGHTS)  # one of them holds a checkpoint's weights
NO_WEIGHTS = "no model weights (model.safetensors, an index with shards, adapter_model.*, or pytorch_model.bin)"
GUARDS_STATE = "guards_state.json"  # GRPO's guard counters (trainer/guards.py)
SFT_STATE = "sft_state.json"  # SFT's token count (trainer/sft.py)
# what a checkpoint holds to continue training, beside the model files (and the rng_state*.pth files)
TRAINING_STATE_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin", TRAINER_STATE,
                        GUARDS_STATE, SFT_STATE)  # fmt: skip
ADAPTER_CONFIG = "adapter_config.json"  # a LoRA adapter folder holds it


def is_adapter_folder(path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


class CheckpointError(ValueError):
    """A checkpoint cannot be resumed from; ``problems`` says why (one line each)."""

    def __init__(self, message: str, problems=()):
        self.problems = list(problems)
        super().__init__(message)


@dataclass
class CheckpointCheck:
    path: Path
    step: int | None
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.problems


def _safetensors_problem(path: Path) -> str | None:
    """None when the header parses and the last tensor ends exactly at the end of the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                return f"{path.name}: truncated ({size} bytes)"
            (header_len,) = struct.unpack("<Q", raw)
            if header_len > size - 8:
                return f"{path.name}: header length {header_len} exceeds the file ({size} bytes)"
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return f"{path.name}: unreadable safetensors header ({type(e).__name__}: {e})"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + end != size:
        return f"{path.name}: tensors need {8 + header_len + end} bytes, file has {size} (truncated?)"
    return None


def _zip_problem(path: Path) -> str | None:
    """torch.save files are zip archives whose central directory is written last: a cut file has none."""
    try:
        with zipfile.ZipFile(path):
            pass
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        return f"{path.name}: not a whole torch.save archive ({type(e).__name__}: {e})"
    return None


def weights_problems(folder) -> list[str]:
    """What is wrong with the weight files of a model folder (a checkpoint, a final output, an adapter): missing,
    cut short, or shards missing; empty when they are whole."""
    folder = Path(folder)
    index = folder / _INDEX
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError) as e:
            return [f"{_INDEX}: unreadable ({type(e).__name__}: {e})"]
        problems = []
        for shard in shards:
            if not (folder / shard).is_file():
                problems.append(f"{shard}: missing (listed in {_INDEX})")
            elif msg := _safetensors_problem(folder / shard):
                problems.append(msg)
        return problems
    for name in _SAFETENSORS_WEIGHTS:
        if (folder / name).is_file():
            msg = _safetensors_problem(folder / name)
            return [msg] if msg else []
    for name in _BIN_WEIGHTS:
        if (folder / name).is_file():
            msg = _zip_problem(folder / name)
            return [msg] if msg else []
    return [NO_WEIGHTS]


def refuse_broken_weights(folder) -> None:
    """:class:`CheckpointError` naming the files when a model folder's weights are missing or cut short (a save that
    was interrupted), before a loader fails on them with a message that names no file. A folder holding none of the
    weight files checked here (sharded ``.bin`` files, say) is left to the loader."""
    problems = [problem for problem in weights_problems(folder) if problem != NO_WEIGHTS]
    if problems:
        raise CheckpointError(f"{folder}: {'; '.join(problems)} (was its save interrupted?)", problems)


def _counters_problems(folder: Path, step: int | None) -> list[str]:
    """A trainer's counters file (GRPO's guards, SFT's token count), when there is one, parses and is of this step."""
    problems = []
    for name in (GUARDS_STATE, SFT_STATE):
        if (folder / name).exists():
            try:
                saved = json.loads((folder / name).read_text(encoding="utf-8"))
                if saved["global_step"] != step:
                    problems.append(f"{name}: global_step {saved['global_step']} does not match the checkpoint")
            except (OSError, ValueError, KeyError, TypeError) as e:
                problems.append(f"{name}: unreadable ({type(e).__name__}: {e})")
    return problems


def check_checkpoint(path) -> CheckpointCheck:
    """Check one checkpoint folder; ``.problems`` lists everything wrong with it (empty: complete)."""
    folder = Path(path)
    match = CHECKPOINT_RE.match(folder.name)
    check = CheckpointCheck(folder, int(match.group(1)) if match else None)
    if not folder.is_dir():
        check.problems.append("not a folder")
        return check
    state_file = folder / TRAINER_STATE
    try:
        step = json.loads(state_file.read_text(encoding="utf-8"))["global_step"]
        if check.step is None:
            check.step = step
        elif step != check.step:
            check.problems.append(f"{TRAINER_STATE}: global_step {step} does not match the folder name")
    except FileNotFoundError:
        check.problems.append(f"{TRAINER_STATE}: missing (transformers writes it last: the save was cut short)")
    except (OSError, ValueError, KeyError, TypeError) as e:
        check.problems.append(f"{TRAINER_STATE}: unreadable ({type(e).__name__}: {e})")
    check.problems.extend(weights_problems(folder))
    check.problems.extend(_counters_problems(folder, check.step))
    # save_only_model: no optimizer, scheduler, RNG or DeepSpeed state at all (resuming restarts those). A save cut
    # short before optimizer.pt was created has no trainer_state.json either, so it is refused above.
    state_files = ("optimizer.pt", "scheduler.pt", "latest")
    save_only_model = not any((folder / n).exists() for n in state_files) and not any(folder.glob("rng_state*.pth"))
    if not save_only_model:
        if (folder / "latest").is_file():  # DeepSpeed: the optimizer lives in a global_step* folder
            tag = (folder / "latest").read_text().strip()
            ds_dir = folder / tag
            if not ds_dir.is_dir() or not any(ds_dir.iterdir()):
                check.problems.append(f"DeepSpeed state {tag}: missing or empty")
        else:
            for name in ("optimizer.pt", "scheduler.pt"):
                if not (folder / name).is_file():
                    check.problems.append(f"{name}: missing")
                elif msg := _zip_problem(folder / name):
                    check.problems.append(msg)
        rng_files = sorted(folder.glob("rng_state*.pth"))
        if not rng_files:
            check.problems.append("rng_state.pth: missing")
        ranks = sorted(int(m.group(1)) for f in rng_files if (m := re.fullmatch(r"rng_state_(\d+)\.pth", f.name)))
        if ranks:  # one file per process, written only when there are several: 0..N-1 with N >= 2
            expected = range(max(max(ranks) + 1, 2))
            missing = [f"rng_state_{r}.pth" for r in expected if r not in ranks]
            if missing:
                check.problems.append(f"{', '.join(missing)}: missing (each process writes its own)")
        for rng in rng_files:
            if msg := _zip_problem(rng):
                check.problems.append(msg)
    return check


def list_checkpoints(output_dir) -> list[Path]:
    """``checkpoint-N`` folders of ``output_dir``, oldest step first (complete or not)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)))


def latest_complete_checkpoint(output_dir) -> Path | None:
    """The highest-step complete checkpoint in ``output_dir``; incomplete newer ones are logged and passed over."""
    for folder in reversed(list_checkpoints(output_dir)):
        check = check_checkpoint(folder)
        if check.complete:
            return folder
        if is_main_rank():  # (every process finds the same)
            logger.warning("passing over incomplete checkpoint %s: %s", folder, "; ".join(check.problems))
    return None


RESUME_HELP = ("auto: continue from the latest complete checkpoint-N in output_dir, or start fresh when there is none "
               "(one command line for a first run and its restarts); a checkpoint-N folder: resume from it (refused if "
               "incomplete); another folder: its latest complete checkpoint. Unset: start fresh.")


def asks_for_latest(value) -> bool:
    """Whether a ``--resume_from_checkpoint`` value means "the latest complete checkpoint in output_dir"."""
    return value is True or (isinstance(value, str) and value.strip().lower() in ("auto", "true", "latest"))


def resolve_resume(value, output_dir) -> str | None:
    """Turn ``--resume_from_checkpoint`` into a checkpoint path for ``Trainer.train`` (or None: start fresh).

    * unset / empty / ``"false"``: None;
    * ``"auto"`` (or ``"true"``, or ``True``): the latest complete checkpoint in ``output_dir``, or None when there is
      none yet (a first run and its restarts share one command line);
    * a ``checkpoint-N`` folder: that folder, refused with :class:`CheckpointError` listing its problems if
      incomplete;
    * any other folder (an output dir): its latest complete checkpoint, refused if it has none.
    """
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in ("", "false", "none")):
        return None
    if asks_for_latest(value):
        found = latest_complete_checkpoint(output_dir)
        if found is None:
            logger.info("resume_from_checkpoint=auto: no complete checkpoint in %s, starting from scratch", output_dir)
            return None
        logger.info("resume_from_checkpoint=auto: resuming from %s", found)
        return str(found)
    path = Path(os.path.expanduser(str(value)))
    if not path.is_dir():
        raise CheckpointError(f"resume_from_checkpoint: {path} is not a folder", [f"{path}: not a folder"])
    if CHECKPOINT_RE.match(path.name) or (path / TRAINER_STATE).is_file():
        check = check_checkpoint(path)
        if not check.complete:
            raise CheckpointError(
                f"resume_from_checkpoint: {path} is incomplete (was the save interrupted?):\n  "
                + "\n  ".join(check.problems)
                + "\nuse --resume_from_checkpoint auto to take the latest complete checkpoint",
                check.problems,
            )
        return str(path)
    found = latest_complete_checkpoint(path)
    if found is None:
        raise CheckpointError(f"resume_from_checkpoint: no complete checkpoint-N folder in {path}")
    return str(found)


class ResumeWeightsMixin:
    """A ``Trainer`` mixin (GRPO through ``GuardsMixin``, and SFT) that resumes a checkpoint's weights correctly, and
    carries the trainer's own counters across a resume: a subclass names ``counters_file`` and implements
    ``_counters_to_save`` / ``_restore_counters``. The file is written into each checkpoint before transformers'
    files, so it is never newer than the ``trainer_state.json`` written last, and read back on resume. So are the
    run's records, by ``write_records(folder)`` when set (``trainer.callbacks.RecordSaver.write``): a checkpoint
    that counts as complete has them."""

    counters_file: str | None = None
    write_records = None  # a callable taking the checkpoint folder

    def _counters_to_save(self) -> dict:
        return {}

    def _restore_counters(self, saved: dict) -> None:
        pass

    def _save_checkpoint(self, model, trial):
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            if self.write_records is not None:
                self.write_records(folder)
            if self.counters_file:
                with open(os.path.join(folder, self.counters_file), "w", encoding="utf-8") as handle:
                    json.dump({"global_step": self.state.global_step, **self._counters_to_save()}, handle)
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, self.counters_file) if checkpoint and self.counters_file else None
        if path and os.path.isfile(path):
            try:
                with open(path, encoding="utf-8") as handle:
                    self._restore_counters(json.load(handle))
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise CheckpointError(f"{path}: unreadable ({type(e).__name__}: {e}); resume from an earlier "
                                      "checkpoint") from e

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Load the checkpoint's weights through ``from_pretrained`` (transformers 5.23 bug workaround).

        ``save_pretrained`` writes some models (Qwen2-VL, Qwen2.5-VL, ...) under their legacy key names (its weight
        conversion mapping, reversed), but ``Trainer._load_from_checkpoint`` feeds the file straight to
        ``model.load_state_dict(strict=False)``: every key misses, a warning is printed, and the run silently goes
        on from the *base* weights with the checkpoint's optimizer state. ``from_pretrained`` applies the mapping;
        its weights are then copied in with ``strict=True``. Used for a full (non-PEFT) model in one process or
        DDP; FSDP, SageMaker, adapters and DeepSpeed keep transformers' own path.
        """
        target = model if model is not None else self.model
        full_weights = _holds_full_weights(resume_from_checkpoint)
        adapter = is_adapter_folder(resume_from_checkpoint)
        lora_run = hasattr(target, "peft_config")
        if adapter and not lora_run:
            raise CheckpointError(f"{resume_from_checkpoint} holds a LoRA adapter but this run trains every parameter: "
                                  "add --use_peft true with the lora_* settings it was trained with")
        if full_weights and lora_run and not adapter:
            raise CheckpointError(f"{resume_from_checkpoint} holds full weights but this run trains LoRA adapters: "
                                  "drop --use_peft (or start the LoRA run from it with --model_name_or_path)")
        if not self._copies_full_weights(resume_from_checkpoint, target):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        _copy_weights(resume_from_checkpoint, target)

    def _load_best_model(self):
        """``load_best_model_at_end``: the best checkpoint's full weights through ``from_pretrained`` too (transformers'
        own path has the bug above: it kept the last step's weights, with a warning listing every key)."""
        folder, target = self.state.best_model_checkpoint, self.model
        if self.is_deepspeed_enabled or not self._copies_full_weights(folder, target):
            return super()._load_best_model()
        logger.info("loading the best model, %s (%s %s)", folder, self.args.metric_for_best_model, self.state.best_metric)
        _copy_weights(folder, target)

    def _copies_full_weights(self, folder, target) -> bool:
        """Whether ``folder``'s weights go through :func:`_copy_weights`: full weights, into a plain model, not FSDP."""
        from transformers import PreTrainedModel

        return _holds_full_weights(folder) and isinstance(target, PreTrainedModel) and not self.is_fsdp_enabled


def _holds_full_weights(folder) -> bool:
    return any(os.path.isfile(os.path.join(folder, name)) for name in (_SAFETENSORS_WEIGHTS[0], _INDEX))


def _copy_weights(folder, target) -> None:
    """``target``'s weights from ``folder``, read by ``from_pretrained`` (which maps legacy key names) and copied in
    with ``strict=True``."""
    logger.info("loading weights of %s through from_pretrained", folder)
    loaded = type(target).from_pretrained(folder, dtype="auto")
    target.load_state_dict(loaded.state_dict(), strict=True)
    del loaded
