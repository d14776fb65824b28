"""What a training run is, recorded in its output folder and every checkpoint, so that a restart continues only its
own run.

``--resume_from_checkpoint auto`` takes the latest checkpoint in ``output_dir``, and a fresh run writes its
``checkpoint-N`` folders next to whatever is there. Both silently mix two runs when a folder is reused with other
settings: a restart continued an earlier run's checkpoint at another learning rate, and ``save_total_limit``
rotated away the earlier run's checkpoints. So ``vlm-r1 train`` and ``vlm-r1 sft`` write ``vlm_r1_run.json``: the
settings that decide what a run learns (every field of its arguments but :data:`SETTINGS_THAT_MAY_CHANGE`) and the
sha256 of each training file. A resume from a checkpoint whose record differs is refused, naming the settings that
differ, and so is a fresh run in a folder holding another run's checkpoints. Settings that may change on a restart
(the run's length, logging, saving, evaluation, the hardware and precision, where the images or the base model now
lie) are not recorded.

:func:`plan_start` also stops a restart of a run that already reached ``max_steps``: transformers would train one
step past it when ``max_steps`` is not a whole number of epochs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path

from .ranks import is_main_rank

RUN_RECORD_FILE = "vlm_r1_run.json"

# Every field of the run's argument objects is recorded except these: what may change on a restart, and the
# batch's split over processes (recorded as a whole). A field a new TRL or transformers version adds is recorded.
SETTINGS_THAT_MAY_CHANGE = frozenset((
    # where things lie (the training files are recorded by their sha256)
    "train_data", "eval_data", "image_root", "allow_images_outside_root", "model_name_or_path", "output_dir",
    "resume_from_checkpoint", "report_dir", "run_name", "project",
    # the run's length
    "max_steps", "num_train_epochs", "max_train_seconds", "stop_at_step",
    # logging, reporting, saving, evaluation, the hub
    "logging_steps", "logging_strategy", "logging_first_step", "logging_nan_inf_filter", "log_level",
    "log_level_replica", "log_on_each_node", "disable_tqdm", "report_to", "gallery_every", "log_completions",
    "log_completions_hub_repo", "log_multimodal", "log_unique_prompts", "num_completions_to_print",
    "skip_memory_metrics", "include_num_input_tokens_seen", "save_steps", "save_strategy", "save_total_limit",
    "save_only_model", "save_on_each_node", "restore_callback_states_from_checkpoint", "do_train", "do_eval",
    "do_predict", "eval_steps", "eval_strategy", "eval_delay", "eval_on_start", "eval_accumulation_steps",
    "eval_do_concat_batches", "eval_use_gather_object", "per_device_eval_batch_size", "batch_eval_metrics",
    "prediction_loss_only", "include_for_metrics", "metric_for_best_model", "greater_is_better",
    "load_best_model_at_end", "fp16_full_eval", "bf16_full_eval", "eval_greedy", "num_generations_eval",
    "label_names", "length_column_name", "push_to_hub", "hub_always_push", "hub_model_id", "hub_private_repo",
    "hub_revision", "hub_strategy", "hub_token", "trackio_bucket_id", "trackio_space_id", "trackio_static_space_id",
    # hardware, processes, precision and implementation
    "per_device_train_batch_size", "gradient_accumulation_steps", "generation_batch_size", "steps_per_generation",
    "auto_find_batch_size", "use_cpu", "bf16", "fp16", "tf32", "dtype", "attn_implementation", "local_rank",
    "ddp_backend", "ddp_broadcast_buffers", "ddp_bucket_cap_mb", "ddp_find_unused_parameters", "ddp_static_graph",
    "ddp_timeout", "deepspeed", "fsdp", "fsdp_config", "accelerator_config", "parallelism_config", "debug",
    "full_determinism", "dataloader_drop_last", "dataloader_in_order", "dataloader_multiprocessing_context",
    "dataloader_num_workers", "dataloader_persistent_workers", "dataloader_pin_memory", "dataloader_prefetch_factor",
    "dataset_num_proc", "gradient_checkpointing", "gradient_checkpointing_kwargs", "activation_checkpointing",
    "activation_checkpointing_kwargs", "activation_offloading", "enable_jit_checkpoint", "torch_compile",
    "torch_compile_backend", "torch_compile_mode", "torch_empty_cache_steps", "use_liger_kernel", "liger_kernel_config",
    "use_cache", "cache_implementation", "share_image_encoding", "share_prompt_tokens", "trust_remote_code",
    "model_init_kwargs", "ignore_data_skip", "use_vllm", "vllm_mode", "vllm_model_impl", "vllm_server_base_url",
    "vllm_server_host", "vllm_server_port", "vllm_server_timeout", "vllm_group_port", "vllm_gpu_memory_utilization",
    "vllm_tensor_parallel_size", "vllm_enable_sleep_mode", "vllm_max_model_length", "ds3_gather_for_generation",
    "use_transformers_paged", "use_transformers_continuous_batching", "transformers_continuous_batching_config",
))  # fmt: skip

logger = logging.getLogger(__name__)


def run_record(data_args, model_args, training_args) -> dict:
    """The record of a run: each field of its argument objects but :data:`SETTINGS_THAT_MAY_CHANGE`, the rows per
    optimizer step over all processes (so a restart may change the number of processes and the per-device batch that
    make it up), GRPO's optimizer steps per generation, and the training files' sha256."""
    settings = {}
    for args in (data_args, model_args, training_args):
        for field in dataclasses.fields(args):
            if not field.name.startswith("_") and field.name not in SETTINGS_THAT_MAY_CHANGE:
                settings.setdefault(field.name, getattr(args, field.name))
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
    """``name: recorded -> now`` for each setting both records hold that differs (at most ``limit``, then a count;
    each value cut at 80 characters, which keeps a sha256 whole).
    A setting only one of them holds is not a difference: a record written by an older vlm-r1, or under a TRL that
    had fewer fields, lacks some."""
    names = sorted(k for k in set(recorded) & set(record) if recorded[k] != record[k])
    shown = [f"{k}: {json.dumps(recorded.get(k))[:80]} -> {json.dumps(record.get(k))[:80]}" for k in names[:limit]]
    return shown + ([f"... and {len(names) - limit} more"] if len(names) > limit else [])


def plan_start(resume_value, output_dir, max_steps: int, record: dict,
               lora_base: str | None = None) -> tuple[str | None, dict | None]:
    """Where a run starts: ``(checkpoint to resume from or None, None)``, or ``(checkpoint, its trainer state)`` when
    that checkpoint already reached ``max_steps`` and nothing is left to train.

    Raises ``CheckpointError`` when a fresh run would write beside checkpoints already in ``output_dir`` (of this run:
    resume them; of another run: use another folder), or when the checkpoint to resume from was made with other
    settings or, for a LoRA run (``lora_base``: the base it loads), on another base (``vlm_r1.base_record``; checked
    here, before any model loads, so that DeepSpeed's resume path is covered too)."""
    from .checkpoints import TRAINER_STATE, CheckpointError, asks_for_latest, list_checkpoints, resolve_resume

    resume = resolve_resume(resume_value, output_dir)
    if resume is None:
        found = list_checkpoints(output_dir)
        others = [(c, r) for c in found if (r := read_run_record(c)) is not None and differences(r, record)]
        if others:
            raise CheckpointError(
                f"{output_dir} holds checkpoints of another run ({', '.join(c.name for c, _ in others)}; "
                f"{'; '.join(differences(others[-1][1], record))}): a fresh run there would mix its "
                "checkpoints with them, and save_total_limit would delete theirs. Use a new output_dir, or delete them")
        cut_short = [c for c in found if save_cut_short(c)]
        if found and cut_short == found and asks_for_latest(resume_value):  # none complete, none saved whole:
            return None, None  # a fresh start, after remove_unfinished_saves
        if found and asks_for_latest(resume_value):  # saved whole, yet incomplete (a weight file damaged since,
            raise CheckpointError(  # another node's RNG state): not deleted, not resumed
                f"{output_dir} holds checkpoints of this run that cannot be resumed "
                f"({', '.join(c.name for c in found if c not in cut_short)}; the warnings above say what each lacks): "
                "repair or delete them, or use a new output_dir. (A run on several nodes needs one output_dir they "
                "all share: each node's own would hold only its processes' RNG state.)", [])
        if found and cut_short == found:
            raise CheckpointError(
                f"{output_dir} holds checkpoints whose save was cut short ({', '.join(c.name for c in found)}): pass "
                "--resume_from_checkpoint auto to delete them and start afresh, or use a new output_dir")
        if found:  # this run's own: a fresh start would leave the later ones, which `auto` would resume later
            raise CheckpointError(
                f"{output_dir} holds checkpoints of this run ({', '.join(c.name for c in found)}): pass "
                "--resume_from_checkpoint auto to continue from the latest, or use a new output_dir (or delete them) "
                "to start afresh. A fresh start there would leave the checkpoints it does not reach, and a later "
                "resume would pick one of them")
        return None, None
    recorded = read_run_record(resume)
    if recorded is not None and (unrecorded := sorted(set(record) - set(recorded))):
        logger.info("%s records no %s (an older vlm-r1 or TRL): not compared", resume, ", ".join(unrecorded))
    if recorded is not None and differences(recorded, record):
        named = not asks_for_latest(resume_value)  # the checkpoint was named, not found in output_dir
        fresh = "Drop --resume_from_checkpoint to start afresh" if named else "Use a new output_dir for this one"
        raise CheckpointError(
            f"{resume} was made by a run with other settings ({'; '.join(differences(recorded, record))}): resuming "
            f"it would continue that run. {fresh}; to continue {resume} with these settings anyway, delete "
            f"{Path(resume) / RUN_RECORD_FILE}")  # fmt: skip
    if lora_base is not None:
        from .base_record import check_base

        check_base(resume, lora_base)
    state = json.loads((Path(resume) / TRAINER_STATE).read_text(encoding="utf-8"))
    if max_steps > 0 and state.get("global_step", 0) >= max_steps:
        if is_main_rank():
            logger.warning("%s is at step %d, and max_steps is %d: nothing is left to train (raise max_steps to "
                           "train on)", resume, state["global_step"], max_steps)  # fmt: skip
        return resume, state
    laid_out, schedule = state.get("max_steps"), str(record.get("lr_scheduler_type", "linear"))
    if max_steps > 0 and laid_out and laid_out != max_steps and schedule not in ("constant", "constant_with_warmup") \
            and is_main_rank():
        logger.warning("%s was written by a run of %d steps, and this one has max_steps %d: its %s learning-rate "
                       "schedule follows the new length from here on (its first resumed step keeps the last rate of "
                       "the old schedule), so the rates differ from an uninterrupted run of %d steps", resume,
                       laid_out, max_steps, schedule, max_steps)  # fmt: skip
    return resume, None


def _reads_as_json(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def save_cut_short(folder) -> bool:
    """Whether a checkpoint's save stopped before its ``trainer_state.json``, which transformers writes last: absent,
    or not readable JSON (cut short while written)."""
    from .checkpoints import TRAINER_STATE

    return not _reads_as_json(Path(folder) / TRAINER_STATE)


def remove_unfinished_saves(resume_value, resume, output_dir) -> None:
    """For a run that starts from scratch under ``auto`` (``resume`` None): delete the checkpoint folders whose save
    was cut short (:func:`save_cut_short`; nothing in them can be resumed, and :func:`plan_start` lets such a run
    start only when every folder is one), so that it does not write its own checkpoints over their leftovers. Called
    once every process has agreed on the start; the main process deletes, the others wait for it."""
    import shutil

    from accelerate import PartialState

    from .checkpoints import asks_for_latest, list_checkpoints

    if resume is not None or not asks_for_latest(resume_value):
        return
    state = PartialState()
    if state.is_main_process:
        for folder in list_checkpoints(output_dir):
            logger.warning("deleting %s: its save was cut short and no complete checkpoint is beside it, so this run "
                           "starts from scratch", folder)  # fmt: skip
            shutil.rmtree(folder)
    state.wait_for_everyone()


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
    """For a run that had nothing left to train (it stopped after its last checkpoint, before or during its final
    save): copy the model files of ``checkpoint`` (weights, configs, processor, records; no optimizer, scheduler or
    RNG state) that ``output_dir`` lacks or holds cut short, as the final save would have written them: all of them
    when its weights are missing or cut short, else each missing file and each JSON file that does not parse. Files
    that are whole are kept (with ``load_best_model_at_end`` the final weights are not the last checkpoint's)."""
    import shutil

    from .checkpoints import TRAINING_STATE_FILES, weights_problems

    out = Path(output_dir)
    model_files = [path for path in Path(checkpoint).iterdir() if path.is_file()
                   and path.name not in TRAINING_STATE_FILES and not path.name.startswith("rng_state")]  # fmt: skip
    if weights_problems(out):  # the final save did not finish its weights: all of the checkpoint's model files
        broken = model_files
    else:  # missing, or a JSON file cut short (its README, a model card, differs by right and is not compared)
        broken = [p for p in model_files
                  if not (out / p.name).is_file() or (p.suffix == ".json" and not _reads_as_json(out / p.name))]
    if not broken:
        return
    for path in broken:
        shutil.copy2(path, out / path.name)
    logger.info("copied the model files of %s to %s (its final save had not finished)", checkpoint, out)
