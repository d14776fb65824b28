"""Callbacks of every training run.

``StepPrinter`` (``LinePrinter`` under ``disable_tqdm``): console output, a progress bar with one compact line per
logging step and per evaluation, and one for the end of training. It replaces transformers' ``ProgressCallback``
(``PrinterCallback``), which prints every logged dict in full. The line shows the step, the total reward and each reward function's mean, the loss, the
KL when it is computed, the mean completion length, and seconds per step.

``RecordSaver``: writes the run's prompt (``vlm_r1.data.prompts``), its settings (``vlm_r1.run_record``) and a LoRA
run's base record (``vlm_r1.base_record``) into each checkpoint-N as it is saved, and into the output folder when
training ends.
"""

from __future__ import annotations

import math
import time

from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

from ..base_record import save_base_record
from ..data.prompts import save_prompt
from ..run_record import save_run_record


def _short(name: str) -> str:
    return name.removeprefix("rewards/").removesuffix("/mean")


def _number(value, digits: int) -> str:
    """A logged value, or n/a when there is none (TRL logs None for a reward that applied to no completion)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "n/a"


def step_line(logs: dict, state, seconds_per_step: float) -> str | None:
    """One compact line for a logged training step (``step N/M | reward ... | loss ... | ...``) or evaluation
    (``eval at step N | reward ... | len ...``); None for other logs (the end-of-training summary)."""
    prefix = "eval_" if "eval_reward" in logs else ""
    if prefix + "reward" not in logs:
        return None
    parts = [f"eval at step {state.global_step}" if prefix else f"step {state.global_step:>5}/{state.max_steps}",
             f"reward {_number(logs[prefix + 'reward'], 3)}"]
    per_func = [f"{_short(k.removeprefix(prefix))} {_number(v, 3)}" for k, v in logs.items()
                if k.startswith(prefix + "rewards/") and k.endswith("/mean")]
    if per_func:
        parts[-1] += " (" + ", ".join(per_func) + ")"
    for key, name, digits in (("loss", "loss", 4), ("kl", "kl", 4), ("completions/mean_length", "len", 1)):
        if prefix + key in logs and not (prefix and key == "loss"):  # an eval loss is no training signal
            parts.append(f"{name} {_number(logs[prefix + key], digits)}")
    if not prefix:
        parts.append(f"{seconds_per_step:.2f} s/step")
    return " | ".join(parts)


def end_line(logs: dict, state, first_step: int = 0) -> str | None:
    """``training done: N steps in S s (T s/step), mean loss L`` for transformers' end-of-training log (a resumed run:
    ``steps F+1 to N``, the ones this call ran and timed); None for other logs."""
    runtime = logs.get("train_runtime")
    if not isinstance(runtime, (int, float)):
        return None
    steps = state.global_step - first_step
    per_step = f" ({runtime / steps:.2f} s/step)" if steps > 0 else ""
    loss = f", mean loss {_number(logs.get('train_loss'), 4)}" if "train_loss" in logs else ""
    which = f"{steps} step{'' if steps == 1 else 's'}" if not first_step else \
        f"steps {first_step + 1} to {state.global_step}"
    return f"training done: {which} in {runtime:.0f} s{per_step}{loss}"


class _CompactLines:
    """What :class:`StepPrinter` and :class:`LinePrinter` share: the text of each log, timed from the last one."""

    def _start_timing(self, state) -> None:
        self._last_time, self._last_step = time.monotonic(), state.global_step
        self._first_step = state.global_step  # a resumed run starts at its checkpoint's step

    def _text(self, logs: dict, state) -> str:
        """The compact line (:func:`step_line`), or the dict without ``total_flos`` for the end-of-training summary."""
        seconds = 0.0
        if "reward" in logs:  # a training step: seconds per step since the last one logged
            now = time.monotonic()
            seconds = (now - self._last_time) / max(1, state.global_step - self._last_step)
            self._last_time, self._last_step = now, state.global_step
        return step_line(logs, state, seconds) or end_line(logs, state, getattr(self, "_first_step", 0)) or str(
            {k: v for k, v in logs.items() if k != "total_flos"})


class StepPrinter(_CompactLines, ProgressCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self._start_timing(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs is not None and self.training_bar is not None:
            self.training_bar.write(self._text(logs, state))


class LinePrinter(_CompactLines, PrinterCallback):
    """``disable_tqdm``'s console output (no progress bar): the same compact lines as :class:`StepPrinter`, printed,
    in place of transformers' ``PrinterCallback``, which prints every logged dict in full."""

    def on_train_begin(self, args, state, control, **kwargs):
        self._start_timing(state)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs is not None:
            print(self._text(logs, state), flush=True)


class RecordSaver(TrainerCallback):
    """Writes the run's records into each checkpoint-N (:meth:`write`, called by the trainer before transformers'
    files: ``checkpoints.ResumeWeightsMixin.write_records``) and, at the end of training, into the output folder the
    final model is saved to: ``vlm_r1_prompt.json`` (the question template and system prompt in effect),
    ``vlm_r1_run.json`` (``vlm_r1.run_record``) and, for a LoRA run from a local base, ``vlm_r1_base.json``
    (``vlm_r1.base_record``)."""

    def __init__(self, question_template: str, system_prompt: str | None, base: dict | None = None,
                 run: dict | None = None):
        self.question_template, self.system_prompt, self.base, self.run = question_template, system_prompt, base, run

    def write(self, folder) -> None:
        save_prompt(folder, self.question_template, self.system_prompt)
        if self.base is not None:
            save_base_record(folder, self.base)
        if self.run is not None:
            save_run_record(folder, self.run)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.write(args.output_dir)
