"""Callbacks of every training run.

``StepPrinter``: console output, a progress bar with one compact line per logging step. It replaces transformers'
default ``ProgressCallback``, which prints every logged dict in full. The line shows the step, the total reward and
each reward function's mean, the loss, the KL when it is computed, and seconds per step.

``RecordSaver``: writes the run's prompt (``vlm_r1.data.prompts``), its settings (``vlm_r1.run_record``) and a LoRA
run's base record (``vlm_r1.base_record``) into each checkpoint-N as it is saved, and into the output folder when
training ends.
"""

from __future__ import annotations

import math
import time

from pathlib import Path

from transformers.trainer_callback import ProgressCallback, TrainerCallback

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


class StepPrinter(ProgressCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        super().on_train_begin(args, state, control, **kwargs)
        self._last_time = time.monotonic()
        self._last_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or logs is None or self.training_bar is None:
            return
        if "reward" not in logs:  # the end-of-training summary and eval dicts keep transformers' format
            self.training_bar.write(str({k: v for k, v in logs.items() if k != "total_flos"}))
            return
        now = time.monotonic()
        steps = max(1, state.global_step - self._last_step)
        seconds_per_step = (now - self._last_time) / steps
        self._last_time, self._last_step = now, state.global_step
        parts = [f"step {state.global_step:>5}/{state.max_steps}", f"reward {_number(logs['reward'], 3)}"]
        per_func = [f"{_short(k)} {_number(v, 3)}" for k, v in logs.items()
                    if k.startswith("rewards/") and k.endswith("/mean")]
        if per_func:
            parts[-1] += " (" + ", ".join(per_func) + ")"
        if "loss" in logs:
            parts.append(f"loss {_number(logs['loss'], 4)}")
        if "kl" in logs:
            parts.append(f"kl {_number(logs['kl'], 4)}")
        if "completions/mean_length" in logs:
            parts.append(f"len {_number(logs['completions/mean_length'], 1)}")
        parts.append(f"{seconds_per_step:.2f} s/step")
        self.training_bar.write(" | ".join(parts))


class RecordSaver(TrainerCallback):
    """Writes the run's records into each checkpoint-N as it is saved and, at the end of training, into the output
    folder the final model is saved to: ``vlm_r1_prompt.json`` (the question template and system prompt in effect),
    ``vlm_r1_run.json`` (``vlm_r1.run_record``) and, for a LoRA run from a local base, ``vlm_r1_base.json``
    (``vlm_r1.base_record``)."""

    def __init__(self, question_template: str, system_prompt: str | None, base: dict | None = None,
                 run: dict | None = None):
        self.question_template, self.system_prompt, self.base, self.run = question_template, system_prompt, base, run

    def _write(self, folder) -> None:
        save_prompt(folder, self.question_template, self.system_prompt)
        if self.base is not None:
            save_base_record(folder, self.base)
        if self.run is not None:
            save_run_record(folder, self.run)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._write(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._write(args.output_dir)
