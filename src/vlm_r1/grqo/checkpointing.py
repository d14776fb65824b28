"""What a GRQO run keeps in `output_dir`, and resuming it.

* `run_record(cfg)`: the settings that decide what the run learns (every option but
  `SETTINGS_THAT_MAY_CHANGE`), the training file's sha256 and the starting model's identity.
* `settle_start(cfg, record)`, before any data is read: refuses an output_dir that is the model's own folder, and
  one that holds another GRQO run's outputs unless this run resumes it, and a checkpoint made with other settings
  (`RECOVERY_SETTINGS` may change, and the change is printed); returns the checkpoint to resume, or None.
* `save_detector` writes a model folder that `--model_name_or_path` and `vlm-r1 eval` take: the model, its processor
  and `vlm_r1_classes.json`, the class names the run prompted with, in prompt order (`read_classes` reads it back).
* `save_checkpoint` writes `checkpoint-N` every `save_steps` steps, and keeps the latest `save_total_limit`:
  - a model folder (`save_detector`);
  - `grqo_state.pt`: the step, the optimizer, the batch order's RNG state and pending indices, torch's RNG
    states, and the step whose weights the reference holds;
  - `reference.safetensors`: the reference's weights, once a refresh has made them differ from the start;
  - `vlm_r1_run.json`: the run record;
  - `trainer_state.json` (`{"global_step": N}`), written last.
  It is written as `checkpoint-N.tmp` and renamed when whole, so a killed save leaves no `checkpoint-N`;
  `vlm_r1.checkpoints` finds the latest complete one (`resume_from_checkpoint: auto`).
* `load_checkpoint` puts all of that back; `continue_log` keeps log.jsonl's lines up to the checkpoint's step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import torch

from vlm_r1.base_record import weights_fingerprint
from vlm_r1.checkpoints import TRAINER_STATE, CheckpointError, list_checkpoints, resolve_resume
from vlm_r1.run_record import RUN_RECORD_FILE, differences, read_run_record, save_run_record

STATE_FILE = "grqo_state.pt"
CLASSES_FILE = "vlm_r1_classes.json"
REFERENCE_FILE = "reference.safetensors"
RUN_OUTPUTS = ("log.jsonl", "metrics.json", "model.safetensors")  # what a GRQO run writes at its top level

# Options a resume may change without a word: where things lie (the training rows and the starting model are
# recorded by content instead), the run's length, logging, evaluation, saving and the device.
SETTINGS_THAT_MAY_CHANGE = frozenset((
    "model_name_or_path", "model_revision", "trust_remote_code", "train_data", "eval_data", "image_root",
    "allow_images_outside_root",
    "output_dir", "resume_from_checkpoint", "max_steps", "device", "log_every", "eval_every", "eval_batch_size",
    "disable_tqdm", "save_model", "save_steps", "save_total_limit",
))  # fmt: skip
# Recorded, but a resume may change them (the way out of a diverged run); the change is printed.
RECOVERY_SETTINGS = ("learning_rate", "max_grad_norm")


def run_record(cfg) -> dict:
    """Every option of `cfg` but SETTINGS_THAT_MAY_CHANGE, the sha256 of `train_data` (None when it is missing: the
    data check reports that), and `start_model`: the weights fingerprint of a local model folder, else the hub id
    and revision."""
    settings = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in SETTINGS_THAT_MAY_CHANGE}
    train = Path(cfg.train_data)
    settings["train_data_sha256"] = hashlib.sha256(train.read_bytes()).hexdigest() if train.is_file() else None
    start = Path(cfg.model_name_or_path)
    settings["start_model"] = (weights_fingerprint(start) if start.is_dir()
                               else f"{cfg.model_name_or_path}@{cfg.model_revision}")  # fmt: skip
    return json.loads(json.dumps(settings))  # the form it takes once read back from the file


def _outputs(folder: Path) -> list[str]:
    return [name for name in RUN_OUTPUTS if (folder / name).exists()] + [p.name for p in list_checkpoints(folder)]


def settle_start(cfg, record: dict) -> Path | None:
    """The checkpoint this run resumes (None: a fresh start). OptionError for an output_dir that is the folder
    of `model_name_or_path`, or that holds another run's outputs when this run does not resume from a checkpoint
    inside it; CheckpointError for a checkpoint that cannot be resumed, or whose run record differs from `record`
    in more than RECOVERY_SETTINGS."""
    from vlm_r1.recipe import OptionError

    out, start = Path(cfg.output_dir), Path(cfg.model_name_or_path)
    if start.is_dir() and out.resolve() == start.resolve():
        raise OptionError(f"output_dir {cfg.output_dir} is the folder of the model the run starts from: the run "
                          "would overwrite that checkpoint; write to another folder")  # fmt: skip
    resume = resolve_resume(cfg.resume_from_checkpoint, out)
    found = _outputs(out) if out.is_dir() else []
    if resume is None or Path(resume).resolve().parent != out.resolve():
        if found:
            hint = (f" (this run resumes {resume}, outside it)" if resume is not None
                    else " (resume_from_checkpoint found no complete checkpoint in it)" if cfg.resume_from_checkpoint
                    else ", or continue it with --resume_from_checkpoint auto" if list_checkpoints(out) else "")
            raise OptionError(f"output_dir {out} already holds another GRQO run's outputs ({', '.join(found[:4])}): "
                              f"give a new output_dir, or delete that folder{hint}")  # fmt: skip
    if resume is None:
        return None
    resume = Path(resume)
    if not (resume / STATE_FILE).is_file():
        raise CheckpointError(f"resume_from_checkpoint: {resume} has no {STATE_FILE}: not a GRQO checkpoint")
    step = json.loads((resume / TRAINER_STATE).read_text())["global_step"]
    if step > cfg.max_steps:
        raise OptionError(f"resume_from_checkpoint: {resume} is at step {step}, past max_steps {cfg.max_steps}")
    recorded = read_run_record(resume)
    if recorded is not None:
        def fixed(settings):
            return {name: value for name, value in settings.items() if name not in RECOVERY_SETTINGS}

        changed = differences(fixed(recorded), fixed(record))
        if changed:
            raise CheckpointError(
                f"{resume} was made by a run with other settings ({'; '.join(changed)}): resuming it would continue "
                f"that run. Use a new output_dir for this one; to continue {resume} with these settings anyway, "
                f"delete {resume / RUN_RECORD_FILE}")  # fmt: skip
        for line in differences({name: recorded[name] for name in RECOVERY_SETTINGS if name in recorded}, record):
            print(f"resuming {resume} with {line} (this run's value applies)", flush=True)
    return resume


def save_detector(model, processor, folder, classes: list[str]) -> None:
    """The model, its processor and the class names it was prompted with (CLASSES_FILE), in `folder`."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (Path(folder) / CLASSES_FILE).write_text(json.dumps({"classes": list(classes)}, indent=1) + "\n", encoding="utf-8")


def read_classes(folder) -> list[str] | None:
    """The class names a detector folder was trained to be prompted with (its CLASSES_FILE), None when it has none
    (a hub id, or a checkpoint not made here); CheckpointError for an unreadable file."""
    from .data import check_classes

    path = Path(folder) / CLASSES_FILE
    if not path.is_file():
        return None
    try:
        classes = json.loads(path.read_text(encoding="utf-8"))["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError("'classes' is not a list of strings")
        return check_classes(classes)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: unreadable ({type(e).__name__}: {e}); fix or delete it, or pass --classes") from e


def save_checkpoint(trainer, processor, batch_order, output_dir, record: dict, classes: list[str],
                    save_total_limit: int = 0) -> Path:  # fmt: skip
    """Write `output_dir/checkpoint-<step>` (see the module docstring) and return it. With `save_total_limit`, delete
    the older checkpoints (up to this step) beyond the latest `save_total_limit`."""
    from safetensors.torch import save_model

    final = Path(output_dir) / f"checkpoint-{trainer.step}"
    folder = final.with_name(final.name + ".tmp")
    shutil.rmtree(folder, ignore_errors=True)  # left by a save that was killed
    save_detector(trainer.model, processor, folder, classes)
    state = {"step": trainer.step, "optimizer": trainer.optimizer.state_dict(), "batch_order": batch_order.state(),
             "reference_step": trainer.reference_step, "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}  # fmt: skip
    torch.save(state, folder / STATE_FILE)
    if trainer.reference_step:
        save_model(trainer.ref_model, str(folder / REFERENCE_FILE))
    save_run_record(folder, record)
    (folder / TRAINER_STATE).write_text(json.dumps({"global_step": trainer.step}))
    if final.exists():  # a checkpoint of an earlier attempt, past the one this run resumed from
        shutil.rmtree(final)
    folder.rename(final)
    if save_total_limit:
        # checkpoints past this step are an abandoned attempt's (a resume from an earlier one): this run rewrites them
        checkpoints = list_checkpoints(output_dir)  # by step
        for old in checkpoints[: checkpoints.index(final) + 1][:-save_total_limit]:
            shutil.rmtree(old)
    return final


def load_checkpoint(trainer, batch_order, folder) -> None:
    """Restore what `save_checkpoint` wrote into a trainer built from the run's starting model."""
    from safetensors.torch import load_model

    folder = Path(folder)
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    saved = type(trainer.model).from_pretrained(folder, dtype="auto")
    trainer.model.load_state_dict(saved.state_dict())
    del saved
    configured = [{k: v for k, v in group.items() if k != "params"} for group in trainer.optimizer.param_groups]
    trainer.optimizer.load_state_dict(state["optimizer"])
    for group, settings in zip(trainer.optimizer.param_groups, configured):
        group.update(settings)  # this run's learning rates (RECOVERY_SETTINGS); the rest equal the record
    trainer.step, trainer.reference_step = state["step"], state["reference_step"]
    if trainer.reference_step and trainer.ref_model is not None:
        load_model(trainer.ref_model, str(folder / REFERENCE_FILE), device=str(trainer.device))
    batch_order.load_state(state["batch_order"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def continue_log(path, step: int) -> dict[int, dict]:
    """Keep the lines of log.jsonl up to `step` (later ones are redone after a resume; a line cut short by a kill is
    dropped) and return their evaluations, {step: metrics}."""
    path = Path(path)
    if not path.exists():
        return {}
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("step", step + 1) <= step:
            kept.append(entry)
    path.write_text("".join(json.dumps(entry) + "\n" for entry in kept), encoding="utf-8")
    return {entry["step"]: entry["eval"] for entry in kept if "eval" in entry}
