"""ReportCallback: keeps a run's report folder (curves, gallery of completions) current while it trains.

* every ``gallery_every`` steps (and once at the end; ``0``: only at the end) it draws a snapshot of the trainer's
  ``last_scored_batch`` into the gallery, and sends one sheet per prompt group to TensorBoard (when transformers'
  ``TensorBoardCallback`` has an open writer) and to wandb (when wandb is imported and a run is active);
* on each save and at the end it redraws ``curves.png`` and writes ``log_history.json``.

Only the main process writes. A report failure never stops training: the first failure of each kind is logged as a
warning with its traceback, later ones as a count at the end of training, and every one in ``errors.log``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import numpy as np
from transformers import TrainerCallback

from ..report import Gallery
from ..report.curves import write_history_and_curves

logger = logging.getLogger("vlm_r1")


class ReportCallback(TrainerCallback):
    def __init__(self, trainer, report_dir: str | None = None, gallery_every: int | None = None, *,
                 groups: int = 2, keep: int = 20):
        args = trainer.args
        self.trainer = trainer
        self.dir = Path(report_dir or getattr(args, "report_dir", None) or Path(args.output_dir) / "report")
        self.every = getattr(args, "gallery_every", 0) if gallery_every is None else gallery_every
        self.groups, self.keep = groups, keep
        self._gallery: Gallery | None = None
        self._start_step = 0
        self._last_batch = None
        self._warned: set[str] = set()
        self.failures = 0

    # ------------------------------------------------------------------ events
    def on_train_begin(self, args, state, control, **kwargs):
        self._start_step = state.global_step  # 0 for a fresh run: an earlier run's gallery is not this run's
        if state.is_world_process_zero and self.dir.exists():  # an earlier run's report: this run's from the start
            self._guarded("gallery", self._open_gallery)
            self._guarded("curves", self.write_curves, state)

    def on_step_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        periodic = self.every > 0 and state.global_step % self.every == 0
        last = state.max_steps > 0 and state.global_step >= state.max_steps  # while loggers are still open
        if periodic or last:
            self._guarded("gallery", self.snapshot, state.global_step)

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self._guarded("curves", self.write_curves, state)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self._guarded("gallery", self.snapshot, state.global_step)
        self._guarded("curves", self.write_curves, state)
        if self.failures:
            logger.warning("report: %d report step(s) failed during training; see %s", self.failures,
                           self.dir / "errors.log")
        else:
            logger.info("report written to %s (curves.png, gallery.html)", self.dir)

    # ------------------------------------------------------------------ work
    def snapshot(self, step: int) -> None:
        """Draw the trainer's last scored batch (once per batch) and send the sheets to TensorBoard / wandb."""
        batch = getattr(self.trainer, "last_scored_batch", None)
        if batch is None or batch is self._last_batch:
            return
        self._last_batch = batch
        sheets = self._open_gallery().add(batch, step, groups=self.groups, weights=self._weights())
        writer = self._tensorboard_writer()
        for tag, sheet in sheets:
            if writer is not None:
                writer.add_image(tag, np.asarray(sheet), global_step=step, dataformats="HWC")
        if writer is not None and sheets:
            writer.flush()
        wandb = sys.modules.get("wandb")  # only if something (transformers' WandbCallback) imported it
        if sheets and wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.log({"gallery": [wandb.Image(s, caption=t) for t, s in sheets], "train/global_step": step})

    def _open_gallery(self) -> Gallery:
        """The gallery, opened once: an earlier run's snapshots past this run's start are removed then."""
        if self._gallery is None:
            self._gallery = Gallery(self.dir, keep=self.keep, resumed_at=self._start_step)
        return self._gallery

    def write_curves(self, state) -> None:
        """``log_history.json`` and ``curves.png`` from this run's history; with nothing plottable yet, an earlier
        run's ``curves.png`` is removed rather than shown as this run's."""
        if write_history_and_curves(state.log_history, self.dir) is None:
            (self.dir / "curves.png").unlink(missing_ok=True)

    def _weights(self) -> dict[str, float]:
        names = getattr(self.trainer, "reward_func_names", None) or []
        weights = getattr(self.trainer, "reward_weights", None)
        if weights is None:
            return {}
        return {name: float(w) for name, w in zip(names, list(weights), strict=False)}

    def _tensorboard_writer(self):
        from transformers.integrations import TensorBoardCallback

        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and getattr(callback, "tb_writer", None) is not None:
                return callback.tb_writer
        return None

    def _guarded(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # a report must never stop training
            self.failures += 1
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                with (self.dir / "errors.log").open("a", encoding="utf-8") as log:
                    log.write(f"--- {what}: {traceback.format_exc()}\n")
            except OSError:
                pass
            if what not in self._warned:
                self._warned.add(what)
                logger.warning("report: drawing the %s failed (%s: %s); training goes on", what,
                               type(e).__name__, e, exc_info=True)
