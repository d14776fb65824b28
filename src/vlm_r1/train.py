"""GRPO training entry point: ``vlm-r1 train`` or ``accelerate launch -m vlm_r1.train --config recipe.yaml``.

One linear ``main()`` in phases: arguments, data, model, rewards, trainer, train, save and summary.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from .config import DataArguments, ModelArguments, VLMGRPOConfig, check_args
from .recipe import RecipeParser, refusing_options

logger = logging.getLogger("vlm_r1")


# Deprecation notices that TRL 1.16 / transformers 5.23 raise from their own code on every step: nothing a user
# can act on, and they bury the per-step lines.
QUIET_DEPRECATIONS = (r".*`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated",
                      r".*'pin_memory' argument is set as true")


def quiet_library_deprecations() -> None:
    for pattern in QUIET_DEPRECATIONS:
        warnings.filterwarnings("ignore", message=pattern)


def parse_args(argv: list[str] | None = None):
    quiet_library_deprecations()  # the parser builds GRPOConfig, which warns about its own fields
    parser = RecipeParser((DataArguments, ModelArguments, VLMGRPOConfig), prog="vlm-r1 train",
                          description=__doc__.split("\n\n")[0] + " Options come from --config RECIPE.yaml and flags.")
    with refusing_options():
        data_args, model_args, training_args = parser.parse_args_and_config(argv)
        check_args(data_args, model_args, training_args)
    return data_args, model_args, training_args


class _DropNote(logging.Filter):
    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


_IGNORED_KWARGS_NOTE = _DropNote("`model_init_kwargs` will be ignored")


def reference_at_revision(training_args: VLMGRPOConfig, revision: str) -> None:
    """Load TRL's KL reference model at the policy's revision.

    TRL builds the reference itself from the checkpoint's id and ``model_init_kwargs``, so without this a policy at
    ``model_revision`` would be compared with the default branch. ``model_init_kwargs`` is refused as a user option
    (``check_training_args``); it carries the revision only. TRL's note that it "will be ignored" (the policy is
    passed loaded) is dropped: the reference reads it.
    """
    if revision == "main":
        return
    training_args.model_init_kwargs = {"revision": revision}
    logging.getLogger("trl.trainer.grpo_trainer").addFilter(_IGNORED_KWARGS_NOTE)  # one filter, however many runs


def load_rows_of(data_args: DataArguments, paths: list[str], output_dir: str | None):
    """Validate every JSONL file; with skip_invalid_rows, write the skipped rows next to the outputs."""
    from .data import load_rows
    from .rewards import make_row_check

    check_row = make_row_check(data_args.reward_funcs, data_args.default_reward)
    samples = []
    for path in paths:
        rows = load_rows(
            path,
            data_args.image_root,
            default_reward=data_args.default_reward,
            skip_invalid=data_args.skip_invalid_rows,
            validate_solution=check_row,
            allow_outside_root=data_args.allow_images_outside_root,
        )
        if rows.skipped and output_dir:
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            listed = rows.report.write_skipped(Path(output_dir) / f"skipped_rows_{Path(path).stem}.jsonl")
            logger.warning("%s: skipped %d invalid rows, listed in %s", path, len(rows.skipped), listed)
        samples.extend(rows)
    return samples


def keep_fit_images(samples, module, processor, skip_invalid: bool):
    """The rows whose images the loaded model's processor takes. Any other row is refused, or dropped with a warning
    naming it under ``skip_invalid_rows``: the processor would otherwise stop the run at that row's step."""
    from .data import DataError
    from .data.errors import format_problems

    problems = module.image_problems(processor, samples)
    if not problems:
        return samples
    if not skip_invalid:
        raise DataError.from_problems(
            problems, f"{len(problems)} image(s) cannot be given to this model: resize them, or drop the rows "
            "(skip_invalid_rows true drops them)")  # fmt: skip
    unfit = {p.source for p in problems}
    logger.warning("skipped %d rows whose images this model cannot take:\n%s", len(unfit), format_problems(problems))
    return [s for s in samples if s.source not in unfit]


def load_train_and_eval_rows(data_args: DataArguments, output_dir: str | None):
    """The validated training rows (the first ``max_train_samples``) and evaluation rows of a run."""
    samples = load_rows_of(data_args, data_args.train_data, output_dir)
    if data_args.max_train_samples is not None:
        samples = samples[: data_args.max_train_samples]
    eval_samples = load_rows_of(data_args, data_args.eval_data, output_dir)
    logger.info("training rows: %d, eval rows: %d", len(samples), len(eval_samples))
    return samples, eval_samples


def reward_summary(log_history: list[dict], window: int = 5) -> tuple[float | None, float | None]:
    """Mean total reward over the first and the last ``window`` logged steps."""
    rewards = [entry["reward"] for entry in log_history if entry.get("reward") is not None]
    if not rewards:
        return None, None
    head, tail = rewards[:window], rewards[-window:]
    return sum(head) / len(head), sum(tail) / len(tail)


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    data_args, model_args, training_args = parse_args(argv)

    # ------------------------------------------------------------------ data
    from .loading import apply_training_mode, describe_parameters, load_policy
    from .trainer.dataset import to_hf_dataset

    samples, eval_samples = load_train_and_eval_rows(data_args, training_args.output_dir)

    # ------------------------------------------------------------------ model
    model, processor, module = load_policy(model_args, trust_remote_code=training_args.trust_remote_code)
    samples = keep_fit_images(samples, module, processor, data_args.skip_invalid_rows)
    eval_samples = keep_fit_images(eval_samples, module, processor, data_args.skip_invalid_rows)
    peft_config = apply_training_mode(model, module, model_args)
    reference_at_revision(training_args, model_args.model_revision)
    template = data_args.question_template or module.question_template
    train_dataset = to_hf_dataset(samples, template, data_args.system_prompt)
    eval_dataset = to_hf_dataset(eval_samples, template, data_args.system_prompt) if eval_samples else None

    # ------------------------------------------------------------------ rewards
    from .rewards import get_reward

    reward_funcs = [get_reward(name) for name in data_args.reward_funcs]

    # ------------------------------------------------------------------ trainer
    from .trainer.callbacks import PromptSaver, StepPrinter
    from .trainer.grpo import VLMGRPOTrainer
    from .trainer.report_callback import ReportCallback

    trainer = VLMGRPOTrainer(
        model=model,
        reward_funcs=reward_funcs,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        peft_config=peft_config,
        vlm_module=module,
    )
    trainer.add_callback(ReportCallback(trainer))
    trainer.add_callback(PromptSaver(template, data_args.system_prompt))
    if not training_args.disable_tqdm:
        from transformers.trainer_callback import ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(StepPrinter)
    logger.info("model: %s (%s), %s", model_args.model_name_or_path, type(module).__name__, describe_parameters(trainer.model, module))

    # ------------------------------------------------------------------ train
    from .checkpoints import resolve_resume

    # auto: the latest COMPLETE checkpoint-N in output_dir (half-written ones are passed over), or a fresh start.
    resume = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
    train_output = trainer.train(resume_from_checkpoint=resume)

    # ------------------------------------------------------------------ save and summary
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(training_args.output_dir)
    start, end = reward_summary(trainer.state.log_history)
    summary = {
        "reward_start": start,
        "reward_end": end,
        "checkpoint": str(Path(training_args.output_dir).resolve()),
        "log_history": trainer.state.log_history,
        "train_seconds": train_output.metrics.get("train_runtime"),  # the training loop alone, without loading
    }
    if trainer.accelerator.is_main_process:
        print(
            f"\nreward at start {start:.3f} -> at end {end:.3f} (mean of first/last 5 logged steps)\n"
            f"checkpoint written to {summary['checkpoint']}"
            if start is not None
            else f"\ncheckpoint written to {summary['checkpoint']}"
        )
    # Every rank waits for rank 0's save, then the process group is destroyed while the interpreter is whole: a
    # rank that tore down gloo on its own aborted (SIGABRT, "terminate called without an active exception").
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
