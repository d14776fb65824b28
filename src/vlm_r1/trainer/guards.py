"""GuardsMixin: keep non-finite numbers out of the weights, count what was dropped, and make resuming exact.

Mixed into :class:`vlm_r1.trainer.grpo.VLMGRPOTrainer` ahead of ``trl.GRPOTrainer``. What it does:

* **Rewards.** TRL 1.16 turns a reward function's ``None`` into NaN and then averages with ``nanmean``/``nansum``, so
  NaN already means "does not apply" — but ``±inf`` passes straight through (``nan_to_num`` later turns an infinite
  advantage into ±3.4e38) and a non-number crashes ``torch.tensor`` with no name attached. Each plain reward
  function is wrapped so that NaN and ±inf become ``None`` (counted), numbers (bool, int, numpy scalar, 0-d tensor)
  become ``float``, and a call that raises or returns anything else scores its completions ``None`` and is logged
  with its traceback (a reward never stops a training step). Outputs of reward *models* and async
  functions are sanitised after the fact the same way. Logged per generation batch:
  ``guards/nonfinite_reward_frac`` (share of reward values dropped: NaN/inf, or lost to a reward that raised or
  returned something that is not a number; such a reward is logged with its traceback) and
  ``guards/unscored_frac`` (share of completions no reward applied to: TRL gives them advantage 0). Zero-variance
  groups are TRL's own ``frac_reward_zero_std``.
* **Advantages.** Any non-finite advantage left is set to 0 and counted (``guards/nonfinite_advantages``; it should
  stay 0).
* **Steps.** If a micro-batch loss or any gradient is non-finite when the optimizer is about to step, every
  ``.grad`` is dropped (set to ``None``) so ``optimizer.step()`` changes nothing — no weight, no Adam moment, no step
  count — and a warning is logged; ``guards/skipped_steps`` counts such steps over the whole run (restored on
  resume). The LR scheduler and ``global_step`` still advance, so the schedule stays tied to the step number. The
  decision is all-reduced across processes. Under DeepSpeed the gradients are not on ``p.grad``: the guard then only
  sees the loss, counts and warns, and cannot skip (DeepSpeed's own overflow check covers fp16 only).
* **Resume.** ``guards_state.json`` (the counters) is written into each checkpoint *before* transformers writes its
  files, so it is never newer than ``trainer_state.json``. On resume TRL's micro-step counter ``_step`` (reset to 0 by
  a new process) is set back to ``global_step × gradient_accumulation_steps``, and TRL's ``RepeatSampler`` is made
  epoch-aware: its permutation for epoch ``e`` is the ``e``-th draw from a generator seeded with ``args.seed``,
  exactly what an uninterrupted run draws, instead of restarting at the first draw in a resumed process. A checkpoint
  that is not at a generation boundary (``global_step × GA`` not a multiple of ``steps_per_generation ×
  num_iterations``) cannot be resumed exactly — the buffered completions are not saved — so that case warns and
  regenerates; keep ``save_steps × GA`` a multiple of ``steps_per_generation × num_iterations``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import weakref

import torch
from torch import nn
from transformers import TrainerCallback
from trl.trainer.utils import RepeatSampler

from ..checkpoints import GUARDS_STATE, ResumeWeightsMixin
from ..rewards.registry import reward_values

logger = logging.getLogger(__name__)



class NonFiniteRewardCounter:
    """Tally of reward values seen and dropped in the current generation batch (this process)."""

    def __init__(self):
        self.seen = 0
        self.dropped = 0


def guard_reward_function(func, counter: NonFiniteRewardCounter):
    """Wrap a reward function ``f(completions, **columns) -> list[float | None]`` so it never breaks a step:
    NaN/inf become None, and a call that raises or breaks the contract (``rewards.registry.reward_values``: one
    number or None per completion) scores every completion None. Both are counted
    (``guards/nonfinite_reward_frac``); a failing reward is logged with its traceback the first time and once more
    every 100 failures, so a broken reward cannot go unnoticed."""
    name = getattr(func, "__name__", type(func).__name__)
    failures = 0

    @functools.wraps(func)
    def guarded(*args, **kwargs):
        nonlocal failures
        completions = kwargs.get("completions", args[0] if args else [])
        guarded.failed_last_call = False
        try:
            cleaned, dropped = reward_values(func(*args, **kwargs), len(completions), name)
        except Exception:
            guarded.failed_last_call = True  # read by GuardsMixin: a call failed on one process fails on all
            if failures % 100 == 0:
                logger.warning("reward %r failed (%d failures so far); its completions score None", name,
                               failures + 1, exc_info=True)
            failures += 1
            cleaned, dropped = [None] * len(completions), len(completions)
        counter.seen += len(cleaned)
        counter.dropped += dropped
        return cleaned

    guarded.__vlm_r1_guarded__ = True
    guarded.failed_last_call = False
    return guarded


class EpochSeededRepeatSampler(RepeatSampler):
    """TRL's RepeatSampler whose permutation for epoch ``e`` is the ``e``-th draw from ``Generator(seed)``.

    Uninterrupted, this is the same order as TRL's sampler (which draws once per ``__iter__``). Resumed in a new
    process at epoch ``e``, TRL's would draw the first permutation again; this one replays ``e`` draws first.
    """

    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if self.shuffle and self.seed is not None:
            self.generator.manual_seed(self.seed)
            for _ in range(self.epoch):
                torch.randperm(self.num_samples, generator=self.generator)
        return super().__iter__()


class _GuardCallback(TrainerCallback):
    """Calls back into the trainer right before ``optimizer.step()`` (transformers' ``on_pre_optimizer_step``)."""

    def __init__(self, trainer):
        self._trainer = weakref.ref(trainer)

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        trainer = self._trainer()
        if trainer is not None:
            trainer._guard_before_optimizer_step(model if model is not None else trainer.model)


def _interval(steps: float, max_steps: int) -> int | None:
    """``save_steps`` / ``logging_steps`` in optimizer steps, as transformers reads them: a value below 1 is a
    fraction of ``max_steps`` (None when the run's length is set by epochs and not known yet)."""
    if steps >= 1:
        return int(steps)
    return math.ceil(max_steps * steps) if max_steps > 0 else None


def resume_exactness_problems(args, generate_every: int) -> list[str]:
    """The settings under which a resumed run would differ from an uninterrupted one (docs/reliability.md): a
    checkpoint inside a generation batch (its buffered completions are not saved), or between two logging steps
    (the metrics accumulated since the last log are not saved)."""
    if args.save_strategy != "steps":
        return []
    save = _interval(args.save_steps, args.max_steps)
    if save is None:
        return []
    problems = []
    if (save * args.gradient_accumulation_steps) % generate_every:
        problems.append(f"checkpoints every {save} steps × gradient_accumulation_steps {args.gradient_accumulation_steps}"
                        f" is not a multiple of steps_per_generation × num_iterations ({generate_every})")
    logging = _interval(args.logging_steps, args.max_steps) if args.logging_strategy == "steps" else None
    if logging and save % logging:
        problems.append(f"checkpoints every {save} steps are not a multiple of logging_steps ({logging})")
    return problems


class GuardsMixin(ResumeWeightsMixin):
    """See the module docstring. Must come before ``trl.GRPOTrainer`` in the class bases."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._reward_counter = NonFiniteRewardCounter()
        self.reward_funcs = [
            f
            if isinstance(f, nn.Module) or inspect.iscoroutinefunction(f) or getattr(f, "__vlm_r1_guarded__", False)
            else guard_reward_function(f, self._reward_counter)
            for f in self.reward_funcs
        ]
        self.guard_counts = {"skipped_steps": 0, "nonfinite_rewards": 0, "nonfinite_advantages": 0}
        self._nonfinite_loss_pending = False
        self.add_callback(_GuardCallback(self))
        for message in resume_exactness_problems(self.args, self.args.steps_per_generation * self.num_iterations):
            logger.warning("%s: a run resumed from such a checkpoint will not match an uninterrupted run exactly", message)

    # ------------------------------------------------------------------ rewards and advantages
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._reward_counter.seen = self._reward_counter.dropped = 0
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        # Reward models / async functions are not wrapped: sanitise what they returned (gathered over processes).
        infinite = torch.isinf(rewards_per_func)
        late_dropped = int(infinite.sum().item())
        if late_dropped:
            rewards_per_func = rewards_per_func.masked_fill(infinite, float("nan"))
        failed_here = [float(getattr(f, "failed_last_call", False)) for f in self.reward_funcs]
        tally = torch.tensor([self._reward_counter.dropped, self._reward_counter.seen, *failed_here],
                             dtype=torch.float64, device=rewards_per_func.device)  # fmt: skip
        dropped, seen, *failed = self.accelerator.gather(tally).view(-1, len(tally)).sum(dim=0).tolist()
        dropped += late_dropped  # rewards_per_func is already gathered, so this count is global
        for column, failures in enumerate(failed):  # a call that failed on some process: the whole column is None,
            if failures:  # else a group split across processes would be scored by that function in part only
                scored = ~torch.isnan(rewards_per_func[:, column])
                dropped += int(scored.sum().item())
                rewards_per_func[:, column] = float("nan")
        self.guard_counts["nonfinite_rewards"] += int(dropped)
        mode = "train" if self.model.training else "eval"
        total = max(seen, rewards_per_func.numel())
        self._metrics[mode]["guards/nonfinite_reward_frac"].append(dropped / total if total else 0.0)
        unscored = torch.isnan(rewards_per_func).all(dim=1).float().mean().item() if rewards_per_func.numel() else 0.0
        self._metrics[mode]["guards/unscored_frac"].append(unscored)
        if dropped and self.accelerator.is_main_process:  # a count over every process: printed once
            logger.warning("%d reward value(s) were NaN, infinite or failed and were treated as None (not applied)",
                           dropped)
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        advantages = output.get("advantages") if isinstance(output, dict) else None
        if isinstance(advantages, torch.Tensor):
            bad = ~torch.isfinite(advantages)
            n_bad = int(bad.sum().item())
            if n_bad:
                output["advantages"] = advantages.masked_fill(bad, 0.0)
                self.guard_counts["nonfinite_advantages"] += n_bad
                logger.warning("%d non-finite advantage(s) set to 0", n_bad)
        return output

    # ------------------------------------------------------------------ non-finite loss or gradients
    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss).all()):
            self._nonfinite_loss_pending = True
        return loss

    def _guard_before_optimizer_step(self, model) -> None:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        bad_grads = bool(grads) and not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())
        reasons = [name for name, flag in (("loss", self._nonfinite_loss_pending), ("gradient", bad_grads)) if flag]
        bad = float(bool(reasons))
        self._nonfinite_loss_pending = False
        if self.accelerator.num_processes > 1:
            flag = torch.tensor([bad], device=self.accelerator.device)
            bad = float(self.accelerator.reduce(flag, reduction="sum").item())
        if not bad:
            return
        self.guard_counts["skipped_steps"] += 1
        if grads:
            for p in model.parameters():
                p.grad = None
            what = "skipped: weights and optimizer state left unchanged"
        else:
            what = "NOT skipped (no gradients on the parameters, e.g. DeepSpeed): check the run"
        logger.warning(
            "step %d: non-finite %s; optimizer step %s (guards/skipped_steps = %d)",
            self.state.global_step + 1,
            " and ".join(reasons) or "loss or gradient on another process",
            what,
            self.guard_counts["skipped_steps"],
        )

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        if self.model.training and "train_runtime" not in logs:
            logs = {**logs, "guards/skipped_steps": self.guard_counts["skipped_steps"]}
            if self.guard_counts["nonfinite_advantages"]:
                logs["guards/nonfinite_advantages"] = self.guard_counts["nonfinite_advantages"]
        super().log(logs, *args, **kwargs)

    # ------------------------------------------------------------------ exact resume
    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)
        if type(sampler) is RepeatSampler:
            sampler = EpochSeededRepeatSampler(
                data_source=sampler.data_source,
                mini_repeat_count=sampler.mini_repeat_count,
                batch_size=sampler.batch_size,
                repeat_count=sampler.repeat_count,
                shuffle=sampler.shuffle,
                seed=sampler.seed,
            )
            self._epoch_sampler = sampler
        return sampler

    def _run_epoch(self, model, epoch, *args, **kwargs):
        """Set the sampler's epoch directly: transformers and accelerate reach it through the data loader's wrappers,
        and on a multi-process resume inside an epoch (a batch skipper around the shard around the batch sampler) they
        did not, so the rest of that epoch replayed epoch 0's order."""
        sampler = getattr(self, "_epoch_sampler", None)
        if sampler is not None:
            sampler.set_epoch(epoch)
        return super()._run_epoch(model, epoch, *args, **kwargs)

    counters_file = GUARDS_STATE  # the guard counters survive a resume (ResumeWeightsMixin)

    def _counters_to_save(self) -> dict:
        return dict(self.guard_counts)

    def _restore_counters(self, saved: dict) -> None:
        for key in self.guard_counts:
            self.guard_counts[key] = int(saved.get(key, 0))

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        # Called after trainer_state.json is loaded: global_step is the checkpoint's.
        self._step = self.state.global_step * self.args.gradient_accumulation_steps
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every:
            logger.warning(
                "resuming at step %d, inside a generation batch (steps_per_generation × num_iterations = %d): the "
                "buffered completions were not saved, so they are regenerated and the run will differ from an "
                "uninterrupted one",
                self.state.global_step,
                generate_every,
            )
