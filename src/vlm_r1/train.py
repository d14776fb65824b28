"""GRPO training entry point: ``vlm-r1 train`` or ``accelerate launch -m vlm_r1.train --config recipe.yaml``.

One linear ``main()`` in phases: arguments, data, model, rewards, trainer, train, save and summary.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

from .config import (DataArguments, ModelArguments, VLMGRPOConfig, check_architecture_options, check_args,
                     check_installed, check_recipe_overrides)  # fmt: skip
from .ranks import same_on_every_rank
from .recipe import RecipeParser, check_output_dir, refusing_options

logger = logging.getLogger("vlm_r1")


# Deprecation notices that TRL 1.16 / transformers 5.23 raise from their own code on every step: nothing a user
# can act on, and they bury the per-step lines.
QUIET_DEPRECATIONS = (r".*`(is_)?gradient_checkpointing(_enable|_disable)?` is deprecated",
                      r".*'pin_memory' argument is set as true",
                      r".*`past_key_values`.* deprecated",  # PEFT's generate, once per step
                      r"Passing `min_pixels` and `max_pixels` to a processor call is deprecated")  # once per batch


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
        check_recipe_overrides(data_args, training_args, parser.command_line_options, parser.recipe_values)
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


SKIPPED_ROWS_FILE = "skipped_rows.jsonl"


class RunRows:
    """The training and evaluation rows of a run, validated, and every row skipped on the way.

    Rows are checked twice: their fields and image files before the model loads (:func:`vlm_r1.data.load_rows`),
    then their image sizes and question text against the loaded model's processor (:meth:`keep_rows_the_model_takes`).
    Without ``skip_invalid_rows`` any problem raises a ``DataError``; with it the rows are dropped and listed in
    ``output_dir/skipped_rows.jsonl``, one ``{"source": "file:line", "reasons": [...]}`` each. A run left with no
    training row, or with no eval row when ``eval_data`` is given, is refused either way, and so is a GRPO run with
    fewer training rows than the distinct prompts of one generation batch (``prompts_per_batch``).
    """

    def __init__(self, data_args: DataArguments, output_dir: str | None, prompts_per_batch: int = 1):
        self.data_args = data_args
        self.output_dir = output_dir
        self.prompts_per_batch = prompts_per_batch  # GRPO: the distinct prompts each generation batch takes
        self.skipped = []
        self.train = self._load(data_args.train_data)
        if data_args.max_train_samples is not None:
            self.train = self.train[: data_args.max_train_samples]
        self.eval = self._load(data_args.eval_data)
        logger.info("training rows: %d, eval rows: %d", len(self.train), len(self.eval))
        self._write_skipped()
        self._check_rows_are_left()

    def _load(self, paths: list[str]) -> list:
        from .data import DataWarning, load_rows
        from .ranks import is_main_rank
        from .rewards import make_row_check

        args = self.data_args
        check_row = make_row_check(args.reward_funcs, args.default_reward)
        samples = []
        for path in paths:
            with warnings.catch_warnings():
                # said below with the file that lists them; and every process reads the same rows, the main one speaks
                warnings.filterwarnings("ignore", message=r".* invalid rows \(see \.report", category=DataWarning)
                if not is_main_rank():
                    warnings.simplefilter("ignore", DataWarning)
                rows = load_rows(path, args.image_root, default_reward=args.default_reward,
                                 skip_invalid=args.skip_invalid_rows, validate_solution=check_row,
                                 allow_outside_root=args.allow_images_outside_root)  # fmt: skip
            if rows.skipped and is_main_rank():
                logger.warning("%s: skipped %d of %d invalid rows%s", path, len(rows.skipped), rows.report.n_rows,
                               self._listed_in())
            self.skipped.extend(rows.skipped)
            samples.extend(rows)
        return samples

    def fingerprint(self) -> tuple:
        """What every process must agree on (:func:`vlm_r1.ranks.same_on_every_rank`): the rows kept, by file name
        and line, and what they hold (question, ground truth, reward, the images' names and sizes; not where the
        files lie, which may differ between nodes)."""
        import hashlib
        import json

        def rows(samples):
            held = [[Path(path).name, line, s.problem, s.solution, s.reward, [Path(i).name for i in s.images],
                     s.image_sizes] for s, (path, _, line) in ((s, s.source.rpartition(":")) for s in samples)]  # fmt: skip
            return len(samples), hashlib.sha256(json.dumps(held).encode()).hexdigest()[:12]

        return rows(self.train), rows(self.eval)

    def keep_rows_the_model_takes(self, module, processor) -> "RunRows":
        """Keep the rows the loaded model can be given (``VLMModule.input_problems``: images its processor takes,
        questions without its prompt's control tokens). Any other row is refused, or dropped and listed under
        ``skip_invalid_rows``: the processor would otherwise stop the run at that row's step. Returns ``self``."""
        from .data import DataError, SkippedRow
        from .data.errors import format_problems

        problems = module.input_problems(processor, self.train + self.eval)
        if not problems:
            return self
        if not self.data_args.skip_invalid_rows:
            raise DataError.from_problems(
                problems, f"{len(problems)} problem(s) with rows this model cannot be given: resize the images or "
                "edit the questions, or drop the rows (skip_invalid_rows true drops them)")  # fmt: skip
        reasons: dict[str, list[str]] = {}
        for p in problems:
            reasons.setdefault(p.source, []).append(f"{p.field}: {p.message}")
        logger.warning("skipped %d rows this model cannot be given%s:\n%s",
                       len(reasons), self._listed_in(), format_problems(problems))  # fmt: skip
        self.skipped.extend(SkippedRow(source, tuple(r)) for source, r in reasons.items())
        self.train = [s for s in self.train if s.source not in reasons]
        self.eval = [s for s in self.eval if s.source not in reasons]
        self._write_skipped()
        self._check_rows_are_left()
        return self

    def _check_rows_are_left(self) -> None:
        """Refuse a run whose training rows, or whose given eval rows, were all skipped: it would train on nothing,
        or fail at its first evaluation."""
        from .data import DataError

        for kind, rows, files in (("training", self.train, self.data_args.train_data),
                                  ("eval", self.eval, self.data_args.eval_data)):  # fmt: skip
            if files and not rows:
                skipped = sum(s.source.rsplit(":", 1)[0] in files for s in self.skipped)
                why = f"all {skipped} were skipped{self._listed_in()}" if skipped else "they hold none"
                raise DataError(f"no {kind} rows are left in {', '.join(files)}: {why}")
        if 0 < len(self.train) < self.prompts_per_batch:  # TRL's sampler keeps only whole batches: none, 0 steps
            raise DataError(
                f"{len(self.train)} training rows in {', '.join(self.data_args.train_data)}, and each generation batch "
                f"takes {self.prompts_per_batch} distinct prompts "
                "(per_device_train_batch_size x steps_per_generation x processes / num_generations): the run would "
                "train 0 steps. Add rows, or lower per_device_train_batch_size or steps_per_generation")

    def _listed_in(self) -> str:
        return f", listed in {Path(self.output_dir) / SKIPPED_ROWS_FILE}" if self.output_dir else ""

    def _write_skipped(self) -> None:
        """Write the list of skipped rows, or remove an earlier run's list when this run skipped none (the main
        process; the processes' lists agree, :func:`vlm_r1.ranks.same_on_every_rank`)."""
        from accelerate import PartialState

        if not self.output_dir or not PartialState().is_main_process:
            return
        from .data import write_skipped_rows

        listing = Path(self.output_dir) / SKIPPED_ROWS_FILE
        if self.skipped:
            listing.parent.mkdir(parents=True, exist_ok=True)
            write_skipped_rows(listing, self.skipped)
        else:
            listing.unlink(missing_ok=True)


def log_level() -> int:
    """INFO on the main process, WARNING on the others (a run's INFO lines are printed once, not once per process)."""
    from .ranks import is_main_rank

    return logging.INFO if is_main_rank() else logging.WARNING


def refuse_zero3_with_text_rows(training_args, rows: RunRows) -> None:
    """ZeRO-3 with rows that have no image: a step where one process's batch has none runs the vision tower on the
    other processes only, and their collectives never match (a 2-process run aborted at its first step)."""
    plugin = getattr(training_args, "deepspeed_plugin", None)
    if plugin is None or plugin.zero_stage != 3:
        return
    text_only = [s.source for s in rows.train + rows.eval if not s.images]
    if text_only:
        from .recipe import OptionError

        raise OptionError(f"{len(text_only)} rows have no image (the first: {text_only[0]}), and under DeepSpeed ZeRO-3 "
                          "a step where one process's batch has no image stops the run: use ZeRO-2 or DDP for this "
                          "data, or drop those rows")


def start_fingerprint(start: tuple) -> tuple:
    """What every process must agree on about :func:`vlm_r1.run_record.settle_start`'s outcome: the checkpoint
    resumed (by folder name) and whether nothing is left to train."""
    _, resume, finished = start
    return (Path(resume).name if resume else None), finished is not None


def reward_summary(log_history: list[dict], window: int = 5) -> tuple[float | None, float | None]:
    """Mean total reward over the first and the last ``window`` logged steps."""
    rewards = [entry["reward"] for entry in log_history if entry.get("reward") is not None]
    if not rewards:
        return None, None
    head, tail = rewards[:window], rewards[-window:]
    return sum(head) / len(head), sum(tail) / len(tail)


def summarise(log_history: list[dict], output_dir: str, train_seconds: float | None, printing: bool) -> dict:
    """The run's summary (returned by :func:`main`), printed in two lines when ``printing``."""
    start, end = reward_summary(log_history)
    summary = {
        "reward_start": start,
        "reward_end": end,
        "checkpoint": str(Path(output_dir).resolve()),
        "log_history": log_history,
        "train_seconds": train_seconds,  # the training loop alone, without loading
    }
    if printing:
        reward = (f"\nreward at start {start:.3f} -> at end {end:.3f} (mean of first/last 5 logged steps)"
                  if start is not None else "")
        print(f"{reward}\ncheckpoint written to {summary['checkpoint']}")
    return summary


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=log_level())
    data_args, model_args, training_args = parse_args(argv)

    # ------------------------------------------------------------------ data
    from .data import prompt_change_from
    from .loading import apply_training_mode, check_model_options, describe_parameters, load_policy
    from .modules import checkpoint_config
    from .run_record import remove_unfinished_saves, settle_start
    from .trainer.dataset import to_hf_dataset

    check_installed(training_args)
    check_model_options(model_args, training_args.trust_remote_code)  # before the data: a refused option costs nothing
    check_architecture_options(training_args, checkpoint_config(model_args.model_name_or_path,
                                                                training_args.trust_remote_code,
                                                                model_args.model_revision))  # fmt: skip
    check_output_dir(training_args.output_dir)
    # auto: the latest COMPLETE checkpoint-N in output_dir (half-written ones are passed over), or a fresh start;
    # refused when that checkpoint, or the checkpoints a fresh run would write beside, belong to another run
    record, resume, finished = same_on_every_rank("where the run starts",
                                                  lambda: settle_start(data_args, model_args, training_args),
                                                  start_fingerprint)  # fmt: skip
    remove_unfinished_saves(training_args.resume_from_checkpoint, resume, training_args.output_dir)  # (once agreed)
    if finished is not None:  # another step would overwrite the run's final weights
        from accelerate import PartialState

        return summarise(finished["log_history"], training_args.output_dir, 0.0, PartialState().is_main_process)
    rows = same_on_every_rank("the rows", lambda: RunRows(data_args, training_args.output_dir,
                                                          training_args.prompts_per_batch),
                              RunRows.fingerprint)  # writes into output_dir: after the start  # fmt: skip
    refuse_zero3_with_text_rows(training_args, rows)

    # ------------------------------------------------------------------ model
    model, processor, module = load_policy(model_args, trust_remote_code=training_args.trust_remote_code)
    module.check_prompt_options(processor, data_args.question_template, data_args.system_prompt)
    same_on_every_rank("the rows the model takes", lambda: rows.keep_rows_the_model_takes(module, processor),
                       RunRows.fingerprint)  # fmt: skip
    samples, eval_samples = rows.train, rows.eval
    peft_config = apply_training_mode(model, module, model_args)
    reference_at_revision(training_args, model_args.model_revision)
    template = data_args.question_template or module.question_template
    if change := prompt_change_from(model_args.model_name_or_path, template, data_args.system_prompt):
        logger.warning(change)
    train_dataset = to_hf_dataset(samples, template, data_args.system_prompt)
    eval_dataset = to_hf_dataset(eval_samples, template, data_args.system_prompt) if eval_samples else None

    # ------------------------------------------------------------------ rewards
    from .rewards.dispatch import scoped_to_row_task

    reward_funcs = [scoped_to_row_task(name) for name in data_args.reward_funcs]

    # ------------------------------------------------------------------ trainer
    from .base_record import base_record
    from .trainer.callbacks import LinePrinter, RecordSaver, StepPrinter
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
    base = base_record(model.name_or_path) if model_args.use_peft else None  # what the adapter needs
    records = RecordSaver(template, data_args.system_prompt, base, record)
    trainer.add_callback(records)
    trainer.write_records = records.write  # into each checkpoint, before its trainer_state.json
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback if training_args.disable_tqdm else ProgressCallback)
    trainer.add_callback(LinePrinter if training_args.disable_tqdm else StepPrinter)
    logger.info("model: %s (%s), %s", model_args.model_name_or_path, type(module).__name__, describe_parameters(trainer.model, module))

    # ------------------------------------------------------------------ train, save
    train_output = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(training_args.output_dir)

    # ------------------------------------------------------------------ summary
    summary = summarise(trainer.state.log_history, training_args.output_dir, train_output.metrics.get("train_runtime"),
                        trainer.accelerator.is_main_process)  # fmt: skip
    # Every rank waits for rank 0's save, then the process group is destroyed while the interpreter is whole: a
    # rank that tore down gloo on its own aborted (SIGABRT, "terminate called without an active exception").
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
