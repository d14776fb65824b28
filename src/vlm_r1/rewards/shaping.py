"""Shaping rewards (no ground truth of their own): a repetition penalty and a cosine length reward.

repetition_penalty, in [-1, 0]: -max(r_text, r_box) where
  r_text = 1 - (#distinct word 3-grams / #word 3-grams) over the first 20,000 whitespace-separated
           words of the completion (0 when it has fewer than 3 words), and
  r_box  = (#boxes that repeat an earlier box of the same label with IoU >= 0.95) / #boxes in the answer.
  When the answer holds boxes, its box objects (JSON objects, or Python dict notation, holding a four-number
  list) and bare `[n, n, n, n]` lists are taken out of r_text's text (a list of N distinct objects repeats the
  same keys N times, and r_box judges the boxes) and their string values are judged one by one
  (a label stuffed with repeated words counts; one class named on N objects does not). Objects without a box
  and other words in the answer stay in the text. Whitespace-free scripts (e.g. Chinese) are one "word" per
  run and so are barely penalised.

cosine_length (Yeo et al. 2025, "Demystifying Long Chain-of-Thought Reasoning in LLMs"), in [-1, 1]:
  r(L) = r_end + (r_start - r_end) * (1 + cos(pi * min(L, L_max) / L_max)) / 2
  with (r_start, r_end) = (1.0, 0.5) for a correct answer (shorter is better) and (-1.0, 0.0) for a
  wrong one (a longer attempt is penalised less). Every correct value (>= 0.5) beats every wrong
  value (<= 0.0). "Correct" = the accuracy reward (default: `accuracy`, the per-row dispatcher) is
  >= 0.5; where that is None the cosine reward is None too. L is the completion's token count
  when the trainer passes `completion_ids` (TRL does), else its whitespace-separated word count.
  Unlike the paper there is no separate over-length penalty: L is clipped at L_max.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np

from .boxes import box_iou, is_four_numbers
from .parsing import BOX_LIST, answers_from, loads_bounded, normalize_label
from .registry import get_reward, register_reward, reward_values

MAX_WORDS = 20_000


def _text_repetition(text: str, n: int = 3) -> float:
    words = text.split(maxsplit=MAX_WORDS)[:MAX_WORDS]
    grams = list(zip(*(words[i:] for i in range(n))))
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


_OBJECT = re.compile(r"\{[^{}]*\}")  # an innermost JSON object
_TAKEN = "\ue000"  # marks where a box object was taken out (a private-use character, removed from the text first)
_KEY_TAKEN = r'"(?:[^"\\]|\\.)*"\s*:\s*\ue000\s*'  # "key": <a taken-out box>
_SHELL_OBJECT = re.compile(rf"\{{\s*(?:{_KEY_TAKEN},\s*)*{_KEY_TAKEN}\}}")  # {"object": <box>}: every value taken
_SHELL_LIST = re.compile(r"\[[\s,\ue000]*\]")  # a list that held only taken-out boxes (or nothing)
MAX_SHELL_DEPTH = 8  # wrappers around the box objects taken out with them, up to this depth


def _text_and_values(parsed) -> tuple[str, list[str]]:
    """What r_text judges: the completion's text, and the string values of its answer's box objects, each on its own.

    When the answer holds boxes, each JSON object (or Python dict) with a four-number list as a value (a box with its
    label, score, ...) and each bare `[n, n, n, n]` leaves the text, and so do the lists and objects that held only
    those (up to MAX_SHELL_DEPTH levels: `[{"object": {...}}, ...]`): N distinct objects repeat the same keys N
    times, and r_box judges the boxes. Their string values (labels) are judged one by one, so a label
    stuffed with repeated words still counts, while one class named on N objects does not. Everything else in the
    answer (objects without a box, other words) stays in the text."""
    if not any(d.box is not None for d in parsed.detections) or not parsed.answer:
        return parsed.text, []
    start = parsed.text.rfind(parsed.answer)
    if start < 0:
        return parsed.text, []
    values: list[str] = []

    def take_box_object(match: re.Match) -> str:
        ok, obj = loads_bounded(match.group(0))
        if not ok:  # Python's dict notation, {'bbox_2d': [...], 'label': 'car'}, read as JSON (nothing is evaluated)
            ok, obj = loads_bounded(match.group(0).replace("'", '"'))
        if not (ok and isinstance(obj, dict) and any(is_four_numbers(v) for v in obj.values())):
            return match.group(0)  # not a box object (e.g. `{[] go go go}`): its words stay in the text
        values.extend(v for v in obj.values() if isinstance(v, str))
        return _TAKEN

    answer = BOX_LIST.sub(_TAKEN, _OBJECT.sub(take_box_object, parsed.answer.replace(_TAKEN, "")))
    for _ in range(MAX_SHELL_DEPTH):  # [{"object": {...}}, ...]: the shells left around the boxes go too
        unwrapped = _SHELL_OBJECT.sub(_TAKEN, _SHELL_LIST.sub(_TAKEN, answer))
        if unwrapped == answer:
            break
        answer = unwrapped
    answer = answer.replace(_TAKEN, " ")
    return parsed.text[:start] + answer + parsed.text[start + len(parsed.answer):], values


def _box_repetition(detections) -> float:
    dets = [d for d in detections if d.box is not None]
    if len(dets) < 2:
        return 0.0
    ious = box_iou([d.box for d in dets], [d.box for d in dets])
    codes: dict = {}
    labels = np.array([codes.setdefault(normalize_label(d.label), len(codes)) for d in dets])
    same = (labels[:, None] == labels[None, :]) & (ious >= 0.95)
    repeats = np.tril(same, k=-1).any(axis=1)  # a box that repeats an EARLIER one
    return float(repeats.sum()) / len(detections)


@register_reward("repetition_penalty")
def repetition_penalty(completions, **kwargs) -> list[float]:
    """-max(repeated word-3-gram fraction, duplicated-box fraction), in [-1, 0] (0 = no repetition)."""
    out = []
    for parsed in answers_from(completions, kwargs):
        text, values = _text_and_values(parsed)
        r_text = max([_text_repetition(text), *map(_text_repetition, values)])
        out.append(0.0 - max(r_text, _box_repetition(parsed.detections)))
    return out


def make_cosine_length_reward(accuracy: str = "accuracy", max_len: int = 1024,
                              correct: tuple[float, float] = (1.0, 0.5), wrong: tuple[float, float] = (-1.0, 0.0),
                              threshold: float = 0.5, name: str | None = None):
    """A cosine length reward (see the module docstring); `correct` / `wrong` are (value at L=0, value at L_max).

    Raises ValueError unless every correct value exceeds every wrong value and max_len > 0.
    """
    if max_len <= 0:
        raise ValueError(f"max_len must be positive, got {max_len}")
    if min(correct) <= max(wrong):
        raise ValueError(f"every correct value {correct} must exceed every wrong value {wrong}")
    accuracy_fn = get_reward(accuracy)  # an unknown name fails here, not as None on every step

    def value(is_correct: bool, length: int) -> float:
        start, end = correct if is_correct else wrong
        progress = min(max(length, 0), max_len) / max_len
        return end + (start - end) * (1.0 + math.cos(math.pi * progress)) / 2.0

    def reward(completions, **kwargs) -> list[float | None]:
        try:
            scores, _ = reward_values(accuracy_fn(completions, **kwargs), len(completions), accuracy)
        except Exception as e:  # a reward must never raise: report it and score the rows None
            warnings.warn(f"{reward.__name__}: its accuracy reward {accuracy!r} failed: {type(e).__name__}: {e}",
                          RuntimeWarning)
            return [None] * len(completions)
        ids = kwargs.get("completion_ids")
        lengths = []
        for i, parsed in enumerate(answers_from(completions, kwargs)):
            seq = ids[i] if isinstance(ids, (list, tuple)) and len(ids) == len(completions) else None
            lengths.append(len(seq) if hasattr(seq, "__len__") else len(parsed.text.split()))
        return [None if s is None else value(s >= threshold, n) for s, n in zip(scores, lengths)]

    reward.__name__ = reward.__qualname__ = name or "cosine_length"
    low, high = min(*wrong, *correct), max(*wrong, *correct)
    reward.__doc__ = (f"Correctness-dependent cosine length reward in [{low:g}, {high:g}] (accuracy from {accuracy!r}, "
                      f"L_max {max_len}): right answers earn more when shorter, wrong ones lose less when longer.")
    reward.value = value  # the formula itself, for tests and plots
    reward.reads_row_reward = getattr(accuracy_fn, "reads_row_reward", False)  # the data loader's row check reads it
    return reward


cosine_length = register_reward("cosine_length")(make_cosine_length_reward())
