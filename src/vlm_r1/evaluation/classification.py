"""Classification accuracy: strict, normalised exact match of the ``<answer>`` with the class name or an alias.

The rule is the ``cls_match`` reward's (:mod:`vlm_r1.rewards.classification`), called here: case, punctuation and
articles are ignored, anything hedged ("cat or dog") is wrong, a missing ``<answer>`` is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..rewards.parsing import ParsedAnswer
from ..rewards.registry import get_reward


def classification_scores(answers: Sequence[ParsedAnswer], solutions: Sequence[Any]) -> list[float]:
    """1.0 / 0.0 per answer, by the ``cls_match`` reward (an unusable ground truth scores 0)."""
    scores = get_reward("cls_match")([a.text for a in answers], solution=list(solutions), answers=list(answers))
    return [float(v or 0.0) for v in scores]


def classification_metrics(answers: Sequence[ParsedAnswer], solutions: Sequence[Any]) -> dict[str, float]:
    """``{"accuracy": …, "answered": …, "n": N}``; ``answered`` counts completions with an ``<answer>``."""
    if len(answers) != len(solutions):
        raise ValueError(f"{len(answers)} answers for {len(solutions)} ground truths")
    n = len(answers)
    return {
        "accuracy": sum(classification_scores(answers, solutions)) / n if n else 0.0,
        "answered": sum(a.answer is not None for a in answers) / n if n else 0.0,
        "n": n,
    }
