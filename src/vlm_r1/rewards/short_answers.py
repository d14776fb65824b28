"""Short-answer rewards: a number (counting), a multiple-choice letter, yes / no. All strict, all 1.0 or 0.0.

The `<answer>` (whitespace stripped, a fence stripped when it is the whole answer, one trailing "." allowed)
must BE the answer; anything hedged or with extra words scores 0:
- number_match: a single number literal ("3", "-2.5", "1e3") or an English number word zero..twenty, after
  Unicode NFKC normalisation (so fullwidth "３" reads as "3"; digits of other scripts, such as "٣", score 0).
  An integer ground truth needs an exactly equal value ("3" and "3.0" match 3, compared exactly, not as
  floats; a float ground truth is read by its shortest repr, so 1e23 is 10**23); a non-integer one matches within
  a relative tolerance of 1e-6 (|pred - gt| <= 1e-6 * max(1, |gt|)).
- choice_match: one letter, optionally bracketed and/or followed by "." or ":" ("B", "(B)", "B.", "[b]");
  "A or B", "B. Paris" and "AB" score 0.
- yes_no_match: "yes" or "no" (any case, trailing punctuation ignored); "yes and no" scores 0.
"""
from __future__ import annotations

import math
import re
import unicodedata
from decimal import Decimal
from typing import Any, Callable

from .parsing import load_solution, score_rows, strip_fence
from .registry import register_reward

_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_CHOICE_RE = re.compile(r"[(\[]?\s*([A-Za-z])\s*[)\]]?\s*[.:]?")
_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen twenty").split()
NUMBER_WORDS = {w: i for i, w in enumerate(_WORDS)}
MAX_ANSWER_CHARS = 1_000  # longer answers are not "a number / letter / yes-no" and score 0


def _clean(answer: str | None) -> str | None:
    if answer is None or len(answer) > 100 * MAX_ANSWER_CHARS:
        return None
    text = unicodedata.normalize("NFKC", strip_fence(answer)).strip()
    if text.endswith("."):
        text = text[:-1].rstrip()
    return text if 0 < len(text) <= MAX_ANSWER_CHARS else None


def _exact_number(value: Any) -> Decimal | None:
    """The exact value of a number, a number literal or an English number word, else None. Exact: floats lose
    integers beyond 2**53. A value whose float would not be finite ("1e400"), or whose exponent Decimal cannot
    hold, is None too."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.casefold() in NUMBER_WORDS:
            return Decimal(NUMBER_WORDS[text.casefold()])
        if not _NUMBER_RE.fullmatch(text):
            return None
        value = text
    if not isinstance(value, (int, float, str)):
        return None
    try:  # a float by its shortest repr: the 1e23 a JSON row holds is 10**23, not the binary value next to it
        exact = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        return exact if exact.is_finite() and math.isfinite(float(exact)) else None
    except ArithmeticError:  # decimal.InvalidOperation: an exponent beyond Decimal's range ("1e99999999999999999999")
        return None


def _as_number(value: Any) -> float | None:
    exact = _exact_number(value)
    return None if exact is None else float(exact)


def validate_number(solution: Any) -> None:
    """Raise ValueError unless `solution` is a finite number (or a string holding one)."""
    if _as_number(solution) is None:
        raise ValueError(f"numeric ground truth must be a finite number, got {solution!r:.200}")


def validate_count(solution: Any) -> None:
    """Raise ValueError unless `solution` is a count: a whole number >= 0 (``3``, ``3.0``, ``"3"``, ``"three"``)."""
    exact = _exact_number(solution)
    if exact is None or exact < 0 or exact != exact.to_integral_value():
        raise ValueError(f"a count must be a whole number >= 0, got {solution!r:.200} (name the row's reward "
                         "'numeric' for other numbers)")


def validate_choice(solution: Any) -> None:
    """Raise ValueError unless `solution` is a single letter A-Z."""
    if not (isinstance(solution, str) and len(solution.strip()) == 1 and solution.strip().isascii()
            and solution.strip().isalpha()):
        raise ValueError(f"multiple-choice ground truth must be one letter such as 'B', got {solution!r:.200}")


def validate_yes_no(solution: Any) -> None:
    """Raise ValueError unless `solution` is "yes" or "no" (any case)."""
    if not (isinstance(solution, str) and solution.strip().casefold() in ("yes", "no")):
        raise ValueError(f"yes/no ground truth must be 'yes' or 'no', got {solution!r:.200}")


def _short_answer_reward(validate: Callable[[Any], None], correct: Callable[[str, Any], bool],
                         completions, solution, kwargs):
    def usable(sol):
        gt = load_solution(sol)
        try:
            validate(gt)
        except ValueError:
            return None
        return (gt,)  # boxed: a usable ground truth may itself be falsy (0, "")

    def score_answer(parsed, boxed) -> float:
        text = _clean(parsed.answer)
        return 1.0 if text is not None and correct(text, boxed[0]) else 0.0

    return score_rows(completions, solution, kwargs, usable, score_answer)


def _number_correct(text: str, gt: Any) -> bool:
    pred, target = _exact_number(text), _exact_number(gt)
    if pred is None:
        return False
    if target == target.to_integral_value():  # an integer: exactly equal; "3.0" matches 3, "1e17" not 1e17 + 1
        return pred == target
    return abs(float(pred) - float(target)) <= 1e-6 * max(1.0, abs(float(target)))


def parse_number(value: Any) -> float | None:
    """The finite number `value` holds by `number_match`'s rule, else None: an `<answer>` text (a literal or a
    number word, cleaned as the reward cleans it) or a loaded ground truth."""
    if isinstance(value, str):
        value = _clean(value)
    return None if value is None else _as_number(value)


def _choice_correct(text: str, gt: Any) -> bool:
    m = _CHOICE_RE.fullmatch(text)
    return m is not None and m.group(1).upper() == gt.strip().upper()


def _yes_no_correct(text: str, gt: Any) -> bool:
    return text.casefold().rstrip("!?.").strip() == gt.strip().casefold()


@register_reward("number_match", validator=validate_number)
def number_match(completions, solution=None, **kwargs) -> list[float | None]:
    """1.0 if the `<answer>` is a number equal to the ground truth (see module docstring), else 0.0.

    >>> number_match(["<answer>3</answer>", "<answer>3 or 4</answer>"], solution=["3", "3"])
    [1.0, 0.0]
    """
    return _short_answer_reward(validate_number, _number_correct, completions, solution, kwargs)


@register_reward("choice_match", validator=validate_choice)
def choice_match(completions, solution=None, **kwargs) -> list[float | None]:
    """1.0 if the `<answer>` is exactly the ground-truth option letter ("B", "(B)", "B."), else 0.0."""
    return _short_answer_reward(validate_choice, _choice_correct, completions, solution, kwargs)


@register_reward("yes_no_match", validator=validate_yes_no)
def yes_no_match(completions, solution=None, **kwargs) -> list[float | None]:
    """1.0 if the `<answer>` is exactly the ground truth's "yes" or "no", else 0.0."""
    return _short_answer_reward(validate_yes_no, _yes_no_correct, completions, solution, kwargs)
