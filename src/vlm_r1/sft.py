"""SFT entry point: ``vlm-r1 sft --config recipes/tiny/rec_sft.yaml`` (or ``accelerate launch -m vlm_r1.sft``).

Supervised fine-tuning on the same JSONL rows and VLM modules as GRPO, with TRL's ``SFTTrainer``: the ground truth
is written as ``<think>…</think><answer>…</answer>`` in the model's coordinate frame (see
:mod:`vlm_r1.trainer.sft`) and only the completion tokens carry loss. Two uses: the warm start that makes a tiny
model answer at all before GRPO, and the baseline GRPO is compared against (``benchmarks/rl_vs_sft.py``).

One linear ``main()`` in phases: arguments, data, model, trainer, train, save and summary.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from trl import SFTConfig

from .checkpoints import RESUME_HELP
from .config import DataArguments, ModelArguments, check_architecture_options, check_installed, check_training_args
from .recipe import RecipeParser, check_output_dir, only_apply, refusing_options
from .rewards.format import THINK_TAGS
from .ranks import same_on_every_rank, true_on_any_rank
from .train import RunRows, log_level, quiet_library_deprecations, refuse_zero3_with_text_rows, start_fingerprint
from .trainer.sft import DEFAULT_THINK

logger = logging.getLogger("vlm_r1")


@dataclass
class VLMSFTConfig(SFTConfig):
    """TRL's SFTConfig plus what vlm-r1 adds. Every SFTConfig field (learning_rate, max_steps, …) works as TRL
    documents it; ``completion_only_loss`` is forced on (the prompt is never a training target)."""

    resume_from_checkpoint: str | None = field(default=None, metadata={"help": RESUME_HELP})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay false: the collator reads the prompt, completion and images columns."}
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Cut each prompt + completion to this many tokens (prompt first, so a long prompt cuts the "
                  "completion; a batch left with no completion token is refused). Default: no cut."},
    )
    think: str = field(
        default=DEFAULT_THINK,
        metadata={
            "help": "Text of the <think> block in every SFT target; `{question}` is replaced by the row's question."
        },
    )
    max_train_seconds: float | None = field(
        default=None,
        metadata={"help": "Stop training after this many seconds of wall time (checked after each step)."},
    )
    stop_at_step: int | None = field(
        default=None,
        metadata={
            "help": "End the run after this many optimizer steps without changing the schedule max_steps sets "
            "(reproduces a run that was stopped early)."
        },
    )


# What an SFT evaluation logs (with the eval_ prefix): the candidates for metric_for_best_model
SFT_LOGGED_METRICS = ("loss", "entropy", "mean_token_accuracy", "num_tokens")


# SFTConfig fields read only by TRL's `_prepare_dataset`, which a dataset with an `images` column skips.
SKIPPED_PREPARATION_OPTIONS = ("dataset_num_proc", "eval_packing", "shuffle_dataset", "dataset_kwargs",
                               "packing_strategy", "dataset_text_field")  # fmt: skip


def check_think(think: str) -> None:
    """Refuse a ``--think`` text that would break the target's format (a tag of its own) or that holds a placeholder
    other than ``{question}``, which would be written into every target literally."""
    import re

    tags = [tag for tag in THINK_TAGS if tag in think]
    if tags:
        raise ValueError(f"think {think!r:.120} holds {', '.join(tags)}: it is the text inside <think>...</think>, "
                         "and the tags around it and the answer are written for it")
    others = sorted(set(re.findall(r"\{[^{}]*\}", think)) - {"{question}"})
    if others:
        raise ValueError(f"think {think!r:.120} holds {', '.join(others)}: the only placeholder is {{question}}")


def check_sft_args(data_args: DataArguments, model_args: ModelArguments, args: VLMSFTConfig) -> None:
    """Refuse options that SFT would otherwise ignore (the checks shared with GRPO:
    :func:`vlm_r1.config.check_training_args`)."""
    check_training_args(data_args, model_args, args)
    if data_args.reward_funcs != DataArguments().reward_funcs:
        raise ValueError("reward_funcs is a GRPO option; SFT trains on the ground truth and uses no reward")
    if args.completion_only_loss is False:
        raise ValueError("vlm-r1 sft always trains on the completion only; leave completion_only_loss unset")
    if args.assistant_only_loss:
        raise ValueError("vlm-r1 sft uses completion_only_loss (prompt-completion data); leave assistant_only_loss off")
    if args.packing or args.padding_free:
        raise ValueError("packing / padding_free are not supported for vision datasets")
    if args.max_length is not None and args.max_length < 1:  # TRL cut [:, :-5] from every batch for max_length -5
        raise ValueError(f"max_length must be >= 1 (tokens per prompt + completion), got {args.max_length}; leave it "
                         "unset for no cut")
    strategy = str(getattr(args.train_sampling_strategy, "value", args.train_sampling_strategy))
    if strategy not in ("random", "sequential"):
        raise ValueError(f"train_sampling_strategy {strategy} needs each row's length, which the vision dataset "
                         "builds only when a batch is drawn: use random or sequential")
    if args.pad_to_multiple_of is not None:
        raise ValueError("pad_to_multiple_of is not implemented by TRL for vision data: drop it")
    if args.truncation_mode != "keep_start":
        raise ValueError(f"truncation_mode {args.truncation_mode} is not supported for vision data (an image's tokens "
                         "would be cut): drop it; max_length keeps the start")
    if args.label_smoothing_factor and args.loss_type != "nll":
        raise ValueError(f"label_smoothing_factor applies to loss_type nll only (TRL ignores it under "
                         f"{args.loss_type}): drop one of them")
    import torch

    if args.activation_offloading and (args.use_cpu or not torch.cuda.is_available()):
        raise ValueError("activation_offloading moves activations between a GPU and the CPU, and this run has no GPU: "
                         "drop it")
    template = args.chat_template_path
    if template is not None and not (Path(template).is_file() and Path(template).suffix in (".jinja", ".j2")):
        raise ValueError(f"chat_template_path {template}: give an existing .jinja (or .j2) file; vlm-r1 sft loads a "
                         "processor, whose template only a template file can replace")
    metric = args.metric_for_best_model
    if metric is not None and metric.removeprefix("eval_") not in SFT_LOGGED_METRICS:
        raise ValueError(f"metric_for_best_model {metric}: SFT logs no such metric; use one of "
                         f"{', '.join('eval_' + m for m in SFT_LOGGED_METRICS)}")
    # TRL skips its dataset preparation for datasets with images (ours): these options would do nothing
    defaults = {f.name: f.default for f in fields(VLMSFTConfig)}
    unused = [n for n in SKIPPED_PREPARATION_OPTIONS if getattr(args, n) != defaults[n]]
    if unused:
        raise ValueError(f"{only_apply(unused)} to TRL's text dataset preparation, which vision datasets "
                         "skip: leave them unset")  # fmt: skip
    if args.eos_token is not None:
        raise ValueError("eos_token would replace the checkpoint's end-of-sequence token, which GRPO and evaluation "
                         "stop generating at: drop it")
    check_think(args.think)
    if args.max_train_seconds is not None and args.max_train_seconds <= 0:
        raise ValueError("max_train_seconds must be > 0")
    if args.stop_at_step is not None and args.max_steps <= 0:
        raise ValueError(f"stop_at_step stops a run of max_steps steps early, and max_steps is {args.max_steps}: "
                         "set max_steps (the schedule's length) as well")
    if args.stop_at_step is not None and not 0 < args.stop_at_step <= args.max_steps:
        raise ValueError(f"stop_at_step must be in 1..max_steps ({args.max_steps}), got {args.stop_at_step}")


# Options of the shared argument classes that SFT refuses (not listed in its --help) or reads differently.
REFUSED_IN_HELP = ("reward_funcs", "completion_only_loss", "assistant_only_loss", "packing", "padding_free", "eos_token",
                   *SKIPPED_PREPARATION_OPTIONS)  # fmt: skip
SFT_HELP = {"default_reward": "Task or accuracy reward (e.g. `rec`) of rows whose JSONL has no `reward` field: their "
                              "ground truth is validated against it when loading."}


def parse_args(argv: list[str] | None = None):
    description = __doc__.split("\n\n")[0]
    parser = RecipeParser((DataArguments, ModelArguments, VLMSFTConfig), prog="vlm-r1 sft", description=description)
    for action in parser._actions:
        if action.dest in REFUSED_IN_HELP:
            action.help = argparse.SUPPRESS
        action.help = SFT_HELP.get(action.dest, action.help)
    with refusing_options():
        data_args, model_args, sft_args = parser.parse_args_and_config(argv)
        check_sft_args(data_args, model_args, sft_args)
    sft_args.completion_only_loss = True
    return data_args, model_args, sft_args


def _stop_callback(seconds: float | None, step: int | None, any_rank=None):
    """Ends training after ``seconds`` of wall time or at optimizer step ``step``, whichever comes first. Each process
    reads its own clock, so the time is up when it is up on any of them (``any_rank(flag)``, an all-reduce): ranks
    that stopped at different steps would wait on each other's collectives."""
    from transformers import TrainerCallback

    any_rank = any_rank or true_on_any_rank

    class StopAfter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            out_of_time = seconds is not None and any_rank(time.monotonic() - self.start >= seconds)
            if out_of_time or (step is not None and state.global_step >= step):
                control.should_training_stop = True
                control.should_save = args.save_strategy != "no"  # a restart continues from here, not an older save

    return StopAfter()


def summarise(log_history: list[dict], steps: int, output_dir: str, seconds: float, printing: bool) -> dict:
    """The run's summary (returned by :func:`main`), printed in two lines when ``printing``."""
    losses = [e["loss"] for e in log_history if "loss" in e]
    summary = {
        "loss_start": losses[0] if losses else None,
        "loss_end": losses[-1] if losses else None,
        "steps": steps,
        "train_seconds": seconds,
        "checkpoint": str(Path(output_dir).resolve()),
        "log_history": log_history,
    }
    if printing:
        loss_text = f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, " if losses else ""
        print(f"\nSFT: {loss_text}{steps} steps in {seconds:.0f} s\ncheckpoint written to {summary['checkpoint']}")
    return summary


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=log_level())
    quiet_library_deprecations()
    data_args, model_args, args = parse_args(argv)

    # ------------------------------------------------------------------ data
    from .data import prompt_change_from
    from .loading import apply_training_mode, check_model_options, describe_parameters, load_policy
    from .modules import checkpoint_config
    from .recipe import OptionError
    from .run_record import remove_unfinished_saves, settle_start
    from .trainer.sft import to_sft_dataset

    check_installed(args)
    check_model_options(model_args, args.trust_remote_code)  # before the data: a refused option costs nothing
    check_architecture_options(args, checkpoint_config(model_args.model_name_or_path, args.trust_remote_code,
                                                       model_args.model_revision))  # fmt: skip
    check_output_dir(args.output_dir)
    # auto: the latest COMPLETE checkpoint-N in output_dir (half-written ones are passed over), or a fresh start;
    # refused when that checkpoint, or the checkpoints a fresh run would write beside, belong to another run
    record, resume, finished = same_on_every_rank("where the run starts",
                                                  lambda: settle_start(data_args, model_args, args), start_fingerprint)
    remove_unfinished_saves(args.resume_from_checkpoint, resume, args.output_dir)  # (once agreed)
    if finished is not None:  # another step would overwrite the run's final weights
        from accelerate import PartialState

        return summarise(finished["log_history"], finished["global_step"], args.output_dir, 0.0,
                         PartialState().is_main_process)
    rows = same_on_every_rank("the rows", lambda: RunRows(data_args, args.output_dir),
                              RunRows.fingerprint)  # writes into output_dir: after the start is settled
    refuse_zero3_with_text_rows(args, rows)

    # ------------------------------------------------------------------ model
    model, processor, module = load_policy(model_args, trust_remote_code=args.trust_remote_code)
    if args.pad_token is not None and args.pad_token not in processor.tokenizer.get_vocab():
        raise OptionError(f"pad_token {args.pad_token!r} is not a token of {model_args.model_name_or_path}'s "
                          "tokenizer: give one of its tokens, or drop pad_token")
    module.check_prompt_options(processor, data_args.question_template, data_args.system_prompt)
    same_on_every_rank("the rows the model takes", lambda: rows.keep_rows_the_model_takes(module, processor),
                       RunRows.fingerprint)  # fmt: skip
    samples, eval_samples = rows.train, rows.eval
    peft_config = apply_training_mode(model, module, model_args)
    template = data_args.question_template or module.question_template
    if change := prompt_change_from(model_args.model_name_or_path, template, data_args.system_prompt):
        logger.warning(change)
    train_dataset = to_sft_dataset(samples, module, processor, template, data_args.system_prompt, args.think)
    eval_dataset = (
        to_sft_dataset(eval_samples, module, processor, template, data_args.system_prompt, args.think)
        if eval_samples
        else None
    )
    logger.info("first SFT target: %s", train_dataset[0]["completion"][0]["content"][0]["text"])

    # ------------------------------------------------------------------ trainer
    from .base_record import base_record
    from .trainer.callbacks import RecordSaver
    from .trainer.sft import VLMSFTTrainer

    trainer = VLMSFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        peft_config=peft_config,
    )
    base = base_record(model.name_or_path) if model_args.use_peft else None  # what the adapter needs
    records = RecordSaver(template, data_args.system_prompt, base, record)
    trainer.add_callback(records)
    trainer.write_records = records.write  # into each checkpoint, before its trainer_state.json
    if args.max_train_seconds is not None or args.stop_at_step is not None:
        trainer.add_callback(_stop_callback(args.max_train_seconds, args.stop_at_step))
    logger.info("model: %s (%s), %s", model_args.model_name_or_path, type(module).__name__, describe_parameters(trainer.model))

    # ------------------------------------------------------------------ train, save
    start = time.monotonic()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.monotonic() - start
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(args.output_dir)
        from .report.curves import write_history_and_curves

        curves = write_history_and_curves(trainer.state.log_history, Path(args.output_dir) / "report")
        logger.info("report written to %s (log_history.json%s)", Path(args.output_dir) / "report",
                    ", curves.png" if curves else "")  # fmt: skip
    summary = summarise(trainer.state.log_history, trainer.state.global_step, args.output_dir, seconds,
                        trainer.accelerator.is_main_process)  # fmt: skip
    trainer.accelerator.wait_for_everyone()  # then destroy the process group before shutdown (see train.py)
    trainer.accelerator.end_training()
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
