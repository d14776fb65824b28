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
from .short_answers import validate_count

TASK_REWARDS = {  # task names and short aliases (as written in `reward` columns) -> registered accuracy reward
    "rec": "iou_acc", "grounding": "iou_acc",
    "detection": "det_map", "ovd": "det_map", "map": "det_map", "ap50": "det_ap50",
    "classification": "cls_match", "class": "cls_match",
    "counting": "number_match", "count": "number_match", "numeric": "number_match",
    "multiple_choice": "choice_match", "mc": "choice_match", "choice": "choice_match",
    "yes_no": "yes_no_match", "yesno": "yes_no_match",
}


COUNT_NAMES = ("counting", "count")  # scored by number_match like "numeric", but their ground truth is a count


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
    raise ValueError(f"unknown accuracy reward {name!r:.200}; use a task ({', '.join(sorted(TASK_REWARDS))}), "
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
    if reward_name in COUNT_NAMES:
        validate_count(solution)


def make_row_check(reward_funcs: list[str], default_reward: str | None = None):
    """The data loader's check for a training run: `validate_solution` on the row's own `reward`, and then that
    some reward in `reward_funcs` can score the row's ground truth, so that no row trains on format alone
    unnoticed. `accuracy` scores rows that name a reward (or get `default_reward`); a listed accuracy reward
    (`iou_acc`, `cls_match`, ...) scores rows its validator accepts. A row naming no reward that listed rewards of
    two tasks accept ("yes" is a class name to `cls_match` and an answer to `yes_no_match`) is refused: it would
    earn both. A 'package.module:function' reward may score anything, and a list of format and shaping rewards
    only has no ground truth to check. A row may name a
    'package.module:function' reward only when the run's configuration names it too (`reward_funcs` or
    `default_reward`): a dataset never chooses code to import. A row without a `reward` field (and no
    `default_reward`) is refused when a listed reward judges correctness through the row's own reward
    (`cosine_length`: its ``reads_row_reward``), which would score it None."""
    importable = {n for n in [*reward_funcs, default_reward] if isinstance(n, str) and ":" in n}
    _CONFIGURED_CODE.update(importable)
    dispatches = "accuracy" in reward_funcs
    scorers = [(n, get_validator(n)) for n in reward_funcs if n in list_rewards() and get_validator(n) is not None]
    checkable = (dispatches or scorers) and not any(":" in n for n in reward_funcs)
    row_task_readers = [n for n in reward_funcs if n != "accuracy" and n in list_rewards()
                        and getattr(get_reward(n), "reads_row_reward", False)]  # e.g. cosine_length

    def check(row_reward: str | None, solution: Any) -> None:
        validate_solution(row_reward, solution, allow_import=row_reward in importable)
        if row_reward is None and row_task_readers:
            raise ValueError(f"{', '.join(f'`{n}`' for n in row_task_readers)} judges correctness with the row's own "
                             "`reward` field, and the row has none (default_reward is not set), so it would score "
                             "nothing: add a `reward` field naming its task, or set default_reward")
        if not checkable or (dispatches and row_reward is not None):
            return
        problems = [] if not dispatches else [
            "`accuracy`: the row has no `reward` field and default_reward is not set"]
        accepting: dict = {}  # ground-truth validator (a task) -> the first listed reward of that task
        for name, validator in scorers:
            if not same_task(name, row_reward):
                problems.append(f"`{name}`: the row's reward {row_reward!r} is another task")
                continue
            try:
                validator(solution)
            except ValueError as e:
                problems.append(f"`{name}`: {e}")
                continue
            accepting.setdefault(validator, name)
        if len(accepting) > 1:  # only for a row naming no reward: a named one has one task
            raise ValueError(f"rewards of different tasks ({', '.join(f'`{n}`' for n in accepting.values())}) can "
                             "each score this row, so it would earn each of them: add a `reward` field naming its "
                             "task, or set default_reward")
        if accepting:
            return
        advice = ("list a reward of its task in reward_funcs (`accuracy` scores every row with its own task's "
                  "reward)" if row_reward is not None and not any(same_task(n, row_reward) for n, _ in scorers)
                  else "fix the ground truth, or add a `reward` field naming its task (default_reward sets one for "
                  "every row without it)")  # fmt: skip
        raise ValueError(f"no reward in reward_funcs {list(reward_funcs)} can score this row ("
                         + "; ".join(problems) + f"); {advice}")

    return check


def _rows_of(kwargs: dict, idx: list[int], n: int) -> dict:
    """The per-row columns of ``kwargs`` (lists of ``n``) cut to the rows ``idx``; other values as they are."""
    return {k: ([v[i] for i in idx] if isinstance(v, (list, tuple)) and len(v) == n else v) for k, v in kwargs.items()}


def _score_some(fn, name: str, completions, kwargs: dict, idx: list[int]) -> list[float | None]:
    """``fn`` on the rows ``idx`` only; None for the others, and for all of them (with a RuntimeWarning) when
    ``fn`` raises or breaks the contract: a reward must never stop a training step."""
    n = len(completions)
    out: list[float | None] = [None] * n
    if not idx:
        return out
    try:
        values, _ = reward_values(fn([completions[i] for i in idx], **_rows_of(kwargs, idx, n)), len(idx), name)
    except Exception as e:
        warnings.warn(f"accuracy reward {name!r} failed: {type(e).__name__}: {e}", RuntimeWarning)
        return out
    for i, v in zip(idx, values):
        out[i] = v
    return out


def task_validator(reward: str | None):
    """The ground-truth validator of a task name or reward name, which is what makes two rewards one task (``iou``
    and ``rec`` are one; ``cls_match`` and ``yes_no`` are not, although "yes" is a class name to the first); None for
    None or a name with no ground truth."""
    return None if reward is None else get_validator(TASK_REWARDS.get(reward, reward))


def same_task(reward_name: str, row_reward: str | None) -> bool:
    """Whether the accuracy reward ``reward_name`` scores a row whose ``reward`` column is ``row_reward``: the row
    names no reward, or one of the same task (:func:`task_validator`)."""
    validator = task_validator(row_reward)
    return row_reward is None or (validator is not None and validator is task_validator(reward_name))


def scoped_to_row_task(name: str):
    """The reward ``name`` as a training run lists it: an accuracy reward (one registered with a ground-truth
    validator) gives None on rows whose ``reward`` column names another task (:func:`same_task`), so that listing
    one accuracy reward per task for a mixed file scores each row once. Other rewards are returned unchanged."""
    fn = get_reward(name)
    if ":" in name or get_validator(name) is None:
        return fn

    def reward(completions, **kwargs) -> list[float | None]:
        n = len(completions)
        names = kwargs.get("reward")
        if not isinstance(names, (list, tuple)) or len(names) != n:
            return fn(completions, **kwargs)
        keep = [i for i, row_reward in enumerate(names) if same_task(name, row_reward)]
        return fn(completions, **kwargs) if len(keep) == n else _score_some(fn, name, completions, kwargs, keep)

    reward.__name__ = reward.__qualname__ = name  # TRL logs it as rewards/<name>
    reward.__doc__ = fn.__doc__
    return reward


# The 'package.module:function' rewards a run's configuration named (reward_funcs, default_reward): the only ones a
# row's `reward` may name at scoring time. Filled by make_row_check, the configuration's check of the rows.
_CONFIGURED_CODE: set[str] = set()


def _resolve_configured(name: str):
    """:func:`resolve_accuracy` for a row's `reward` at scoring time: a 'package.module:function' name resolves only
    when the run's configuration named it (:data:`_CONFIGURED_CODE`); data never chooses code to import or call,
    even in rows that bypassed the loader's check (a Dataset built in code)."""
    target = TASK_REWARDS.get(name, name) if isinstance(name, str) else name
    if isinstance(target, str) and ":" in target and target not in _CONFIGURED_CODE:
        raise RewardNameError(f"{name!r} names code the run's configuration did not, and data may not choose code to "
                              "run: list it in reward_funcs or default_reward")
    return resolve_accuracy(name)


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
        if isinstance(names, (list, tuple)) and len(names) != n:  # a caller's mistake: say so, as score_rows does
            warnings.warn(f"{len(names)} `reward` values for {n} completions; every row falls back to the default "
                          f"({default!r})", RuntimeWarning)
        names = list(names) if isinstance(names, (list, tuple)) and len(names) == n else [None] * n
        groups: dict[str, list[int]] = {}
        for i, row_name in enumerate(names):
            row_name = row_name or default
            if isinstance(row_name, str):
                groups.setdefault(row_name, []).append(i)
        out: list[float | None] = [None] * n
        for row_name, idx in groups.items():
            try:
                fn = _resolve_configured(row_name)
            except Exception as e:  # a reward must never raise: report it and score the rows None
                warnings.warn(f"accuracy reward {row_name!r} failed: {type(e).__name__}: {e}", RuntimeWarning)
                continue
            scores = _score_some(fn, row_name, completions, kwargs, idx)
            for i in idx:
                out[i] = scores[i]
        return out

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = (f"Per-row accuracy: the reward named by the row's `reward` column (default {default!r}); "
                      "None where nothing applies. Range: that of the reward used.")
    reward.reads_row_reward = default is None  # a row without a `reward` field gets None
    return reward


accuracy = register_reward("accuracy")(make_accuracy_reward())
