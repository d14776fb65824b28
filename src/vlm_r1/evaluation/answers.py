"""Exact-answer accuracy: classification, multiple choice, yes / no and counting, each scored by the reward a
training row of that task gets (``rewards.dispatch.TASK_REWARDS``: ``cls_match``, ``choice_match``,
``yes_no_match``, ``number_match``), so a reward of 1 and a hit are the same event. Anything hedged ("cat or dog",
"A or B") and a missing ``<answer>`` are wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..rewards.dispatch import TASK_REWARDS
from ..rewards.parsing import ParsedAnswer
from ..rewards.registry import get_reward

ANSWER_TASKS = ("classification", "multiple_choice", "yes_no", "counting")


def answer_scores(task: str, answers: Sequence[ParsedAnswer], solutions: Sequence[Any]) -> list[float]:
    """1.0 / 0.0 per answer, by the task's reward (an unusable ground truth scores 0)."""
    if task not in ANSWER_TASKS:
        raise ValueError(f"{task!r} is not an exact-answer task ({', '.join(ANSWER_TASKS)})")
    scores = get_reward(TASK_REWARDS[task])([a.text for a in answers], solution=list(solutions), answers=list(answers))
    return [float(v or 0.0) for v in scores]


def answer_metrics(task: str, answers: Sequence[ParsedAnswer], solutions: Sequence[Any]) -> dict[str, float]:
    """``{"accuracy": …, "answered": …, "n": N}``; ``answered`` counts completions with an ``<answer>``."""
    if len(answers) != len(solutions):
        raise ValueError(f"{len(answers)} answers for {len(solutions)} ground truths")
    n = len(answers)
    return {
        "accuracy": sum(answer_scores(task, answers, solutions)) / n if n else 0.0,
        "answered": sum(a.answer is not None for a in answers) / n if n else 0.0,
        "n": n,
    }
