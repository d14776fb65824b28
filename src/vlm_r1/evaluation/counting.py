"""Counting accuracy: the ``<answer>`` must be exactly the right number (a numeral or an English number word).

The rule is the ``number_match`` reward's (:mod:`vlm_r1.rewards.counting`), so training and evaluation agree:
"3", "3.0" and "three" match 3; "about 3", "3 or 4" and a missing ``<answer>`` do not. Also reported: the mean
absolute error over the answers that are a number by the same rule (``mae_answered``; "three" is 3, "nan", "inf"
and "1e999" are not numbers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..rewards.counting import number_match, parse_number
from ..rewards.parsing import ParsedAnswer, load_solution


def counting_scores(answers: Sequence[ParsedAnswer], solutions: Sequence[Any]) -> list[float]:
    """1.0 / 0.0 per answer, by the ``number_match`` reward (an unusable ground truth scores 0)."""
    scores = number_match([a.text for a in answers], solution=list(solutions), answers=list(answers))
    return [float(v or 0.0) for v in scores]


def counting_metrics(answers: Sequence[ParsedAnswer], solutions: Sequence[Any]) -> dict[str, float]:
    """``{"accuracy": …, "answered": …, "mae_answered": …, "n": N}``."""
    if len(answers) != len(solutions):
        raise ValueError(f"{len(answers)} answers for {len(solutions)} ground truths")
    n = len(answers)
    scores = counting_scores(answers, solutions)
    errors = []
    for answer, solution in zip(answers, solutions):
        pred, gt = parse_number(answer.answer), parse_number(load_solution(solution))
        if pred is not None and gt is not None:
            errors.append(abs(pred - gt))
    return {
        "accuracy": sum(scores) / n if n else 0.0,
        "answered": sum(a.answer is not None for a in answers) / n if n else 0.0,
        "mae_answered": sum(errors) / len(errors) if errors else None,
        "n": n,
    }
