"""Counting accuracy: the ``<answer>`` must be exactly the right number (a numeral or an English number word).

The rule is the ``number_match`` reward's (:mod:`vlm_r1.rewards.short_answers`), so training and evaluation agree:
"3", "3.0" and "three" match 3; "about 3", "3 or 4" and a missing ``<answer>`` do not. Also reported: the mean
absolute error over the answers that are a number by the same rule (``mae_answered``; "three" is 3, "nan", "inf"
and "1e999" are not numbers; an error too large for a float, such as 1e308 against -1e308, is ``inf`` and is
written to JSON as the string "inf").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..rewards.short_answers import parse_number
from ..rewards.parsing import ParsedAnswer, load_solution
from .answers import answer_metrics


def counting_metrics(answers: Sequence[ParsedAnswer], solutions: Sequence[Any]) -> dict[str, float]:
    """``{"accuracy": …, "answered": …, "mae_answered": …, "n": N}``."""
    metrics = answer_metrics("counting", answers, solutions)
    errors = []
    for answer, solution in zip(answers, solutions):
        pred, gt = parse_number(answer.answer), parse_number(load_solution(solution))
        if pred is not None and gt is not None:
            errors.append(abs(pred - gt))
    # each term divided first: two errors near 1e308 would overflow their sum
    metrics["mae_answered"] = sum(e / len(errors) for e in errors) if errors else None
    return {k: metrics[k] for k in ("accuracy", "answered", "mae_answered", "n")}
