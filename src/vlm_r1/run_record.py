"""What a training run is, recorded in its output folder and every checkpoint, so that a restart continues only its
own run.

``--resume_from_checkpoint auto`` takes the latest checkpoint in ``output_dir``, and a fresh run writes its
``checkpoint-N`` folders next to whatever is there. Both silently mix two runs when a folder is reused with other
settings: a restart continued an earlier run's checkpoint at another learning rate, and ``save_total_limit``
rotated away the earlier run's checkpoints. So ``vlm-r1 train`` and ``vlm-r1 sft`` write ``vlm_r1_run.json``: the
settings that decide what a run learns (:data:`DEFINING_SETTINGS`) and the sha256 of each training file. A resume
from a checkpoint whose record differs is refused, naming the settings that differ, and so is a fresh run in a
folder holding another run's checkpoints. Settings that may change on a restart (the run's length, logging, saving,
evaluation, the hardware and precision, where the images or the base model now lie) are not recorded.

:func:`plan_start` also stops a restart of a run that already reached ``max_steps``: transformers would train one
step past it when ``max_steps`` is not a whole number of epochs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

RUN_RECORD_FILE = "vlm_r1_run.json"

DEFINING_SETTINGS = (
    # data and prompt
    "reward_funcs", "default_reward", "question_template", "system_prompt", "max_train_samples", "skip_invalid_rows",
    # model and training mode
    "model_revision", "min_pixels", "max_pixels", "max_tiles", "freeze_vision", "freeze_projector", "use_peft",
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_vision",
    # optimisation
    "seed", "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "weight_decay", "optim",
    "optim_args", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm",
    # GRPO (the batch is recorded as a whole: see run_record)
    "beta", "loss_type", "scale_rewards", "reward_weights", "num_generations", "num_iterations", "epsilon",
    "epsilon_high", "delta", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "max_completion_length",
    "generation_kwargs", "mask_truncated_completions", "importance_sampling_level", "top_entropy_quantile",
    "sync_ref_model", "ref_model_mixup_alpha", "ref_model_sync_steps", "disable_dropout",
    # SFT
    "max_length", "think", "neftune_noise_alpha",
)  # fmt: skip

logger = logging.getLogger(__name__)


def run_record(data_args, model_args, training_args) -> dict:
    """The record of a run: each defining setting its argument objects have, the rows per optimizer step over all
    processes (so a restart may change the number of processes and the per-device batch that make it up), GRPO's
    optimizer steps per generation, and the training files' sha256."""
    settings = {}
    for name in DEFINING_SETTINGS:
        for args in (data_args, model_args, training_args):
            if hasattr(args, name):
                settings[name] = getattr(args, name)
                break
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by accelerate launch and torchrun
    per_step = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * processes
    settings["rows_per_optimizer_step"] = per_step
    if getattr(training_args, "steps_per_generation", None) is not None:  # GRPO: completions reused over these steps
        settings["optimizer_steps_per_generation"] = (training_args.steps_per_generation
                                                      // training_args.gradient_accumulation_steps)  # fmt: skip
    hashes = []
    for path in data_args.train_data:
        if not Path(path).is_file():
            raise FileNotFoundError(f"JSONL file not found: {path}")
        hashes.append(hashlib.sha256(Path(path).read_bytes()).hexdigest())
    settings["train_data_sha256"] = hashes
    return json.loads(json.dumps(settings, default=str))  # the form it takes once read back from the file


def save_run_record(folder, record: dict) -> Path:
    path = Path(folder) / RUN_RECORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return path


def read_run_record(folder) -> dict | None:
    path = Path(folder) / RUN_RECORD_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        from .checkpoints import CheckpointError

        raise CheckpointError(f"{path}: unreadable ({e}); delete it to skip the check of the run's settings") from e
    return record if isinstance(record, dict) else {}


def differences(recorded: dict, record: dict, limit: int = 12) -> list[str]:
    """``name: recorded -> now`` for each setting that differs (at most ``limit``, then a count)."""
    names = sorted(k for k in set(recorded) | set(record) if recorded.get(k) != record.get(k))
    shown = [f"{k}: {json.dumps(recorded.get(k))[:60]} -> {json.dumps(record.get(k))[:60]}" for k in names[:limit]]
    return shown + ([f"... and {len(names) - limit} more"] if len(names) > limit else [])


def plan_start(resume_value, output_dir, max_steps: int, record: dict,
               lora_base: str | None = None) -> tuple[str | None, dict | None]:
    """Where a run starts: ``(checkpoint to resume from or None, None)``, or ``(checkpoint, its trainer state)`` when
    that checkpoint already reached ``max_steps`` and nothing is left to train.

    Raises ``CheckpointError`` when the checkpoint to resume from was made with other settings or, for a LoRA run
    (``lora_base``: the base it loads), on another base (``vlm_r1.base_record``; checked here, before any model
    loads, so that DeepSpeed's resume path is covered too), or when a fresh run would write into a folder holding
    checkpoints of a run with other settings."""
    from .checkpoints import TRAINER_STATE, CheckpointError, list_checkpoints, resolve_resume

    resume = resolve_resume(resume_value, output_dir)
    if resume is None:
        others = [(c, r) for c in list_checkpoints(output_dir) if (r := read_run_record(c)) is not None and r != record]
        if others:
            raise CheckpointError(
                f"{output_dir} holds checkpoints of another run ({', '.join(c.name for c, _ in others)}; "
                f"{'; '.join(differences(others[-1][1], record))}): a fresh run there would mix its "
                "checkpoints with them, and save_total_limit would delete theirs. Use a new output_dir, or delete them")
        return None, None
    recorded = read_run_record(resume)
    if recorded is not None and recorded != record:
        raise CheckpointError(
            f"{resume} was made by a run with other settings ({'; '.join(differences(recorded, record))}): resuming "
            f"it would continue that run. Use a new output_dir for this one; to continue {resume} with these settings "
            f"anyway, delete {Path(resume) / RUN_RECORD_FILE}")  # fmt: skip
    if lora_base is not None:
        from .base_record import check_base

        check_base(resume, lora_base)
    state = json.loads((Path(resume) / TRAINER_STATE).read_text(encoding="utf-8"))
    if max_steps > 0 and state.get("global_step", 0) >= max_steps:
        logger.warning("%s is at step %d, and max_steps is %d: nothing is left to train (raise max_steps to train "
                       "on)", resume, state["global_step"], max_steps)  # fmt: skip
        return resume, state
    return resume, None


def settle_start(data_args, model_args, training_args) -> tuple[dict, str | None, dict | None]:
    """``(the run's record, the checkpoint it resumes from or None, that checkpoint's trainer state when nothing is
    left to train)``, by :func:`plan_start`, before the model loads or anything is written to ``output_dir``. When
    nothing is left to train, the checkpoint's model files are kept as the final ones (:func:`keep_final_weights`,
    by the main process)."""
    from accelerate import PartialState

    record = run_record(data_args, model_args, training_args)
    lora_base = model_args.model_name_or_path if model_args.use_peft else None
    resume, finished = plan_start(training_args.resume_from_checkpoint, training_args.output_dir,
                                  training_args.max_steps, record, lora_base)  # fmt: skip
    if finished is not None and PartialState().is_main_process:
        keep_final_weights(resume, training_args.output_dir)
    return record, resume, finished


def keep_final_weights(checkpoint, output_dir) -> None:
    """For a run that had nothing left to train: when ``output_dir`` holds no final weights (the run stopped after
    its last checkpoint and before its final save), copy the model files of ``checkpoint`` there, as the final save
    would have written them (weights, configs, processor, records; no optimizer, scheduler or RNG state)."""
    import shutil

    from .checkpoints import GUARDS_STATE, SFT_STATE, TRAINER_STATE, WEIGHT_FILES

    out = Path(output_dir)
    if any((out / name).is_file() for name in WEIGHT_FILES):
        return
    training_state = ("optimizer.pt", "scheduler.pt", "scaler.pt", "training_args.bin", TRAINER_STATE, GUARDS_STATE,
                      SFT_STATE)  # fmt: skip
    for path in Path(checkpoint).iterdir():
        if path.is_file() and path.name not in training_state and not path.name.startswith("rng_state"):
            shutil.copy2(path, out / path.name)
    logger.info("copied the model files of %s to %s", checkpoint, out)
