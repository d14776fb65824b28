"""Classification reward: normalised exact match of the `<answer>` with the class name or an alias.

Ground truth: `"cat"` or `{"label": "cat", "aliases": ["kitty", ...]}`.
Normalisation (both sides): Unicode NFKC and casefold; in each word, marks (punctuation, symbols) at its start are
dropped, a run of marks between letters or digits becomes a space ("hot-dog" = "hot dog", "jack-o'-lantern" =
"jack o lantern"), and marks at its end are dropped unless they tell classes apart (+ - # % …: "C++" is not "C",
"AB-" not "AB+", "O-" not "O"; "cat." = "**cat**" = "cat"); words that are only marks are dropped; the articles
a / an / the are dropped unless nothing else is left ("A" stays a class); whitespace collapsed. The WHOLE answer
must then equal a name: "cat or dog", "cat, dog, bird", "a photo of a cat" and "" score 0, so an answer that hedges over
several classes (or lists all of them) never earns the reward.
"""
from __future__ import annotations

import json
import unicodedata
from typing import Any

from .parsing import load_solution, score_rows
from .registry import register_reward

_ARTICLES = {"a", "an", "the"}


# Marks that tell classes apart when they end a word ("C++", "C#", "AB+", "O-", "50%"); every other mark at the end
# of a word, and every mark at its start, is dropped ("cat.", "**cat**", "(B)", "猫。").
_DISTINCTIVE_ENDINGS = set("+-#%±°−")


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def _normal_word(word: str) -> str:
    """One whitespace-separated word: marks at its start dropped, a run of marks between letters or digits becomes a
    space ("jack-o'-lantern" -> "jack o lantern"), and a run at its end kept only if every mark in it (once
    other marks are stripped from the very end) is distinctive ("c++)" -> "c++", "cat." -> "cat")."""
    start = 0
    while start < len(word) and _is_mark(word[start]):
        start += 1
    end = len(word)
    while end > start and _is_mark(word[end - 1]) and word[end - 1] not in _DISTINCTIVE_ENDINGS:
        end -= 1
    tail = end
    while tail > start and _is_mark(word[tail - 1]):
        tail -= 1
    if any(ch not in _DISTINCTIVE_ENDINGS for ch in word[tail:end]):
        end = tail
    core = "".join(" " if _is_mark(ch) else ch for ch in word[start:tail])
    return " ".join(core.split()) + word[tail:end] if core.strip() else ""


def normalize_text(text: str) -> str:
    """Lower-case words, single-spaced, without articles or sentence punctuation ("The Cat!" -> "cat",
    "C++" -> "c++"); see the module docstring for the rule."""
    text = "".join(" " if unicodedata.category(ch)[0] in "ZC" else ch for ch in unicodedata.normalize("NFKC", text))
    words = " ".join(_normal_word(word) for word in text.casefold().split()).split()
    return " ".join([w for w in words if w not in _ARTICLES] or words)


def validate_classification(solution: Any) -> None:
    """Raise ValueError unless `solution` is a non-empty class name or {"label": str, "aliases": [str, ...]}."""
    if isinstance(solution, dict):
        unknown = sorted(set(solution) - {"label", "aliases"})
        if unknown:  # e.g. "synonyms": names that would never be accepted
            raise ValueError(f"classification ground truth keys are label and aliases; {', '.join(map(repr, unknown)):.200} "
                             "would be ignored (put other accepted names in aliases)")
        label, aliases = solution.get("label"), solution.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ValueError(f"classification 'aliases' must be a list of strings, got {aliases!r:.200}")
    else:
        label = solution
    if not isinstance(label, str) or not normalize_text(label):
        hint = ""
        if isinstance(label, (bool, int, float)):  # "7" and "true" in a JSONL row are read as JSON values
            hint = f' (a class named {json.dumps(label)} is written {{"label": "{json.dumps(label)}"}})'
        raise ValueError("classification ground truth must be a class name or {'label', 'aliases'}, "
                         f"got {solution!r:.200}{hint}")


def class_names(solution: Any) -> set[str] | None:
    """The normalised accepted names of a classification ground truth, or None when it is unusable."""
    value = load_solution(solution)
    try:
        validate_classification(value)
    except ValueError:
        return None
    if isinstance(value, str):
        return {normalize_text(value)}
    names = {normalize_text(value["label"])} | {normalize_text(a) for a in value.get("aliases", [])}
    return names - {""}


@register_reward("cls_match", validator=validate_classification)
def cls_match(completions, solution=None, **kwargs) -> list[float | None]:
    """1.0 if the normalised `<answer>` equals the class name or an alias, else 0.0.

    >>> cls_match(["<answer> The Cat. </answer>", "<answer>cat or dog</answer>"], solution=['"cat"', '"cat"'])
    [1.0, 0.0]
    """
    def score_answer(parsed, names: set[str]) -> float:
        if parsed.answer is None or len(parsed.answer) > 10_000:
            return 0.0
        answer = normalize_text(parsed.answer)
        return 1.0 if answer and answer in names else 0.0

    return score_rows(completions, solution, kwargs, class_names, score_answer)
