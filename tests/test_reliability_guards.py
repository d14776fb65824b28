"""Degenerate batches (vlm_r1.trainer.guards): NaN/inf/None rewards, zero-variance groups, non-finite loss/gradients.

Each end-to-end case runs `vlm_r1.train.main` for a few steps on the tiny model with rewards written below, and checks
the logged counters, that advantages and losses stay finite, and what reached the weights.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from vlm_r1.synthetic import write_split
from vlm_r1.trainer.guards import NonFiniteRewardCounter, guard_reward_function

REWARDS = '''
def digits(completions, **kwargs):
    """Varies between sampled completions, so advantages are non-zero."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) + 0.002 * len(t) for t in texts]

def hostile(completions, **kwargs):
    """Per completion i: NaN, +inf, None, 0.25 (i % 4)."""
    return [[float("nan"), float("inf"), None, 0.25][i % 4] for i in range(len(completions))]

def constant(completions, **kwargs):
    return [1.0] * len(completions)

def never(completions, **kwargs):
    return [None] * len(completions)

def first_group_unscored(completions, **kwargs):
    """None for the 4 completions of the first prompt of each batch, digits for the others."""
    return [None] * 4 + digits(completions)[4:]
'''


@pytest.fixture(scope="module")
def rec_data(tmp_path_factory):
    return write_split(tmp_path_factory.mktemp("guards_data"), "rec", "train", 8, seed=0)


def run(grpo_run, model_dir, data, rewards, **fields):
    """Train with the named functions of REWARDS; return the logged training steps."""
    summary = grpo_run(
        model_dir,
        data,
        reward_module=("guard_rewards", REWARDS),
        reward_funcs=[f"guard_rewards:{name}" for name in rewards],
        **{"max_steps": 3, **fields},
    )
    return [entry for entry in summary["log_history"] if "loss" in entry]


def weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_reward_wrapper_turns_nan_and_inf_into_none(caplog):
    counter = NonFiniteRewardCounter()

    def mixed(completions, **kwargs):
        return [float("nan"), float("inf"), -float("inf"), None, 1, True, np.float32(0.5), torch.tensor(0.25), np.nan]

    guarded = guard_reward_function(mixed, counter)
    assert guarded.__name__ == "mixed"  # TRL logs rewards/<__name__>/mean
    assert guarded(["x"] * 9) == [None, None, None, None, 1.0, 1.0, 0.5, 0.25, None]
    assert (counter.seen, counter.dropped) == (9, 4)

    def words(completions, **kwargs):
        return ["high"]

    def broken(completions, **kwargs):
        raise KeyError("solution")

    def short(completions, **kwargs):
        return [1.0]

    def nothing(completions, **kwargs):
        return None

    for bad in (words, broken, short, nothing):  # a broken reward scores None (logged, counted), training goes on
        counter.seen = counter.dropped = 0
        with caplog.at_level(logging.WARNING):
            assert guard_reward_function(bad, counter)(completions=["x", "y"]) == [None, None]
        assert (counter.seen, counter.dropped) == (2, 2)
        assert f"reward '{bad.__name__}' failed" in caplog.text


def test_nan_and_inf_rewards_are_not_applied(tmp_path, monkeypatch, grpo_run, tiny_model_dir, rec_data):
    from trl import GRPOTrainer

    advantages = []
    original = GRPOTrainer._generate_and_score_completions

    def record(self, inputs):
        output = original(self, inputs)
        advantages.append(output["advantages"].clone())  # TRL's own advantages, before the guard looks at them
        return output

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", record)
    model_dir = tiny_model_dir("qwen2_vl")
    logs = run(grpo_run, model_dir, rec_data, ["digits", "hostile"])
    assert len(logs) == 3 and advantages
    assert all(torch.isfinite(a).all() for a in advantages)
    assert all(a.abs().max() < 10 for a in advantages)  # no ±3.4e38 from an infinite reward
    for entry in logs:
        assert math.isfinite(entry["loss"]) and math.isfinite(entry["reward"])
        assert entry["guards/nonfinite_reward_frac"] == pytest.approx(4 / 16)  # 8 completions × 2 rewards
        assert entry["rewards/hostile/mean"] == pytest.approx(0.25)  # NaN and inf were not averaged in
        assert entry["guards/skipped_steps"] == 0 and "guards/nonfinite_advantages" not in entry
    before, after = weights(model_dir), weights(tmp_path / "out")
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_zero_variance_and_unscored_groups_are_counted(tmp_path, grpo_run, tiny_model_dir, rec_data):
    model_dir = tiny_model_dir("qwen2_vl")
    logs = run(grpo_run, model_dir, rec_data, ["constant", "never"], max_steps=2)
    for entry in logs:
        assert entry["frac_reward_zero_std"] == 1.0  # every group has equal rewards
        assert entry["guards/unscored_frac"] == 0.0 and entry["loss"] == 0.0
    before, after = weights(model_dir), weights(tmp_path / "out")
    assert all(torch.equal(before[k], after[k]) for k in before)  # zero advantages: nothing moves

    out2 = tmp_path / "out2"
    logs = run(grpo_run, model_dir, rec_data, ["first_group_unscored"], max_steps=2, output_dir=str(out2))
    for entry in logs:
        assert entry["guards/unscored_frac"] == 0.5  # the first prompt's group gets advantage 0, the other learns
        assert math.isfinite(entry["loss"]) and math.isfinite(entry["reward"])
    assert all(torch.isfinite(v).all() for v in weights(out2).values())


def test_reward_summary_survives_steps_without_any_reward():
    from vlm_r1.train import reward_summary

    assert reward_summary([{"reward": None}, {"reward": 1.0}]) == (1.0, 1.0)


def test_nonfinite_loss_or_gradient_skips_the_step(tmp_path, monkeypatch, grpo_run, tiny_model_dir, rec_data, caplog):
    """Step 2 has a NaN loss, step 3 a finite loss but a NaN gradient: both are skipped, 1 and 4 are applied."""
    from trl import GRPOTrainer

    original = GRPOTrainer.compute_loss
    snapshots, adam_steps = [], []

    def sabotage(self, model, inputs, *args, **kwargs):
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        adam_steps.append(sorted({int(s["step"]) for s in optimizer.state.values()}))
        loss = original(self, model, inputs, *args, **kwargs)
        if len(snapshots) == 2:
            return loss * float("nan")
        if len(snapshots) == 3:
            param = next(p for p in model.parameters() if p.requires_grad)
            handle = param.register_hook(lambda grad: grad * float("nan"))
            self._test_hook = handle  # removed after this step's backward (below)
        elif getattr(self, "_test_hook", None) is not None:
            self._test_hook.remove()
            self._test_hook = None
        return loss

    monkeypatch.setattr(GRPOTrainer, "compute_loss", sabotage)
    caplog.set_level(logging.WARNING, logger="vlm_r1.trainer.guards")
    logs = run(grpo_run, tiny_model_dir("qwen2_vl"), rec_data, ["digits"], max_steps=4)

    assert [entry["guards/skipped_steps"] for entry in logs] == [0, 1, 2, 2]
    same = [all(torch.equal(a[k], b[k]) for k in a) for a, b in zip(snapshots, snapshots[1:])]
    assert same == [False, True, True]  # step 1 moved the weights; steps 2 and 3 did not
    assert adam_steps == [[], [1], [1], [1]]  # nor the optimizer state
    assert "step 2: non-finite loss" in caplog.text and "step 3: non-finite gradient" in caplog.text
    from transformers import AutoModelForImageTextToText

    final = AutoModelForImageTextToText.from_pretrained(tmp_path / "out").state_dict()
    assert all(torch.isfinite(v).all() for v in final.values())
    assert not all(torch.equal(final[k], snapshots[-1][k]) for k in final)  # step 4 was applied


def test_settings_a_resume_cannot_match_are_named_at_start_up():
    """A checkpoint inside a generation batch or between two logging steps resumes differently (docs/reliability.md);
    a fractional save_steps (of max_steps) used to be let through unchecked."""
    from types import SimpleNamespace

    from vlm_r1.trainer.guards import resume_exactness_problems

    def problems(**fields):
        args = dict(save_strategy="steps", save_steps=4, logging_strategy="steps", logging_steps=2, max_steps=12,
                    gradient_accumulation_steps=1)  # fmt: skip
        return resume_exactness_problems(SimpleNamespace(**{**args, **fields}), generate_every=2)

    assert problems() == []
    assert problems(save_steps=3) == ["checkpoints every 3 steps × gradient_accumulation_steps 1 is not a multiple "
                                      "of steps_per_generation × num_iterations (2)",
                                      "checkpoints every 3 steps are not a multiple of logging_steps (2)"]
    assert problems(save_steps=0.25) == problems(save_steps=3)  # a quarter of 12 steps
    assert problems(save_steps=0.25, max_steps=-1) == []  # sized by epochs: not known before training
    assert problems(save_steps=6, logging_steps=4) == ["checkpoints every 6 steps are not a multiple of logging_steps (4)"]
    assert problems(save_steps=3, save_strategy="no") == []
