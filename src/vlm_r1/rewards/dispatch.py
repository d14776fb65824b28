"""Per-sample accuracy: send each row to the accuracy reward its `reward` column names; validate ground truth.

A row's `reward` is a task name (see TASK_REWARDS), a registered accuracy reward (one registered with
a ground-truth validator, e.g. "iou_acc", "det_map") or "package.module:function". Rows naming
nothing use the dispatcher's default; with no default they get None ("does not apply"), as do rows
naming something unknown (the data loader's `validate_solution` reports those at load time).
"""
from __future__ import annotations

import warnings
from typing import Any

from .registry import get_reward, get_validator, list_rewards, register_reward, reward_values

TASK_REWARDS = {  # task names and short aliases (as written in `reward` columns) -> registered accuracy reward
    "rec": "iou_acc", "grounding": "iou_acc",
    "detection": "det_map", "ovd": "det_map", "map": "det_map", "ap50": "det_ap50",
    "classification": "cls_match", "class": "cls_match",
    "counting": "number_match", "count": "number_match", "numeric": "number_match",
    "multiple_choice": "choice_match", "mc": "choice_match", "choice": "choice_match",
    "yes_no": "yes_no_match", "yesno": "yes_no_match",
}


class RewardNameError(ValueError):
    """A row's reward name that names no accuracy reward: a problem of the row's `reward` field, not its ground truth."""

    field = "reward"


def resolve_accuracy(name: str):
    """The accuracy reward for a task name, accuracy-reward name or 'module:function'; ValueError otherwise."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a reward name must be a non-empty string, got {name!r:.100}")
    name = TASK_REWARDS.get(name, name)
    if ":" in name:
        return get_reward(name)
    if name in list_rewards() and get_validator(name) is not None:
        return get_reward(name)
    accuracy = sorted(n for n in list_rewards() if get_validator(n) is not None)
    raise ValueError(f"unknown accuracy reward {name!r}; use a task ({', '.join(sorted(TASK_REWARDS))}), "
                     f"an accuracy reward ({', '.join(accuracy)}) or 'package.module:function'")


def validate_solution(reward_name: str, solution: Any, allow_import: bool = True) -> None:
    """Raise ValueError when a row's `reward` cannot score it: the name is not an accuracy reward (a task, a
    reward registered with a ground-truth validator, or 'package.module:function'), or `solution` (already
    json-decoded) is malformed for it. `reward_name=None` (a row that names no reward) accepts anything.
    With ``allow_import`` false a 'package.module:function' name is refused before anything is imported."""
    if reward_name is None:
        return
    if not allow_import and ":" in TASK_REWARDS.get(reward_name, reward_name):
        raise RewardNameError(f"{reward_name!r} names code to import, and data may not choose code to run: list it "
                              "in reward_funcs (or default_reward), or register it and name it by its registered name")
    try:
        resolve_accuracy(reward_name)  # unknown names and rewards without ground truth (format, shaping) are refused
    except ValueError as e:
        raise RewardNameError(str(e)) from None
    name = TASK_REWARDS.get(reward_name, reward_name)
    validator = get_validator(name) if name in list_rewards() else None
    if validator is not None:
        validator(solution)


def make_row_check(reward_funcs: list[str], default_reward: str | None = None):
    """The data loader's check for a training run: `validate_solution` on the row's own `reward`, and then that
    some reward in `reward_funcs` can score the row's ground truth, so that no row trains on format alone
    unnoticed. `accuracy` scores rows that name a reward (or get `default_reward`); a listed accuracy reward
    (`iou_acc`, `cls_match`, ...) scores rows its validator accepts. A 'package.module:function' reward may
    score anything, and a list of format and shaping rewards only has no ground truth to check. A row may name a
    'package.module:function' reward only when the run's configuration names it too (`reward_funcs` or
    `default_reward`): a dataset never chooses code to import."""
    importable = {n for n in [*reward_funcs, default_reward] if isinstance(n, str) and ":" in n}
    dispatches = "accuracy" in reward_funcs
    scorers = [(n, get_validator(n)) for n in reward_funcs if n in list_rewards() and get_validator(n) is not None]
    checkable = (dispatches or scorers) and not any(":" in n for n in reward_funcs)

    def check(row_reward: str | None, solution: Any) -> None:
        validate_solution(row_reward, solution, allow_import=row_reward in importable)
        if not checkable or (dispatches and row_reward is not None):
            return
        problems = [] if not dispatches else [
            "`accuracy`: the row has no `reward` field and default_reward is not set"]
        for name, validator in scorers:
            try:
                validator(solution)
                return
            except ValueError as e:
                problems.append(f"`{name}`: {e}")
        raise ValueError(f"no reward in reward_funcs {list(reward_funcs)} can score this row ("
                         + "; ".join(problems) + "); fix the ground truth, add a `reward` field, or list a reward "
                         "for this task")

    return check


def make_accuracy_reward(default: str | None = None, name: str = "accuracy"):
    """The dispatcher: for each row, the reward named by its `reward` column (or `default`), else None.

    Rows are grouped by reward name and each reward is called once with its rows' slices of every
    per-row column. A reward that raises or breaks the contract (`registry.reward_values`: one number or None
    per row) gives None for all its rows, with a RuntimeWarning; NaN and ±inf give None for theirs.
    """
    if default is not None:
        resolve_accuracy(default)  # fail early on a bad default

    def reward(completions, **kwargs) -> list[float | None]:
        n = len(completions)
        names = kwargs.get("reward")
        names = list(names) if isinstance(names, (list, tuple)) and len(names) == n else [None] * n
        groups: dict[str, list[int]] = {}
        for i, row_name in enumerate(names):
            row_name = row_name or default
            if isinstance(row_name, str):
                groups.setdefault(row_name, []).append(i)
        out: list[float | None] = [None] * n
        for row_name, idx in groups.items():
            try:
                fn = resolve_accuracy(row_name)
                sub = {k: ([v[i] for i in idx] if isinstance(v, (list, tuple)) and len(v) == n else v)
                       for k, v in kwargs.items()}
                values, _ = reward_values(fn([completions[i] for i in idx], **sub), len(idx), row_name)
            except Exception as e:  # a reward must never raise: report it and score the rows None
                warnings.warn(f"accuracy reward {row_name!r} failed: {type(e).__name__}: {e}", RuntimeWarning)
                continue
            for i, v in zip(idx, values):
                out[i] = v
        return out

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = (f"Per-row accuracy: the reward named by the row's `reward` column (default {default!r}); "
                      "None where nothing applies. Range: that of the reward used.")
    return reward


accuracy = register_reward("accuracy")(make_accuracy_reward())
