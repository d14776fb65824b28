"""Classification reward: normalised exact match of the `<answer>` with the class name or an alias.

Ground truth: `"cat"` or `{"label": "cat", "aliases": ["kitty", ...]}`.
Normalisation (both sides): Unicode NFKC and casefold; a punctuation mark or symbol between two letters or digits
becomes a space ("hot-dog" = "hot dog"); quotes, brackets and `. , ! ? : ;` elsewhere are dropped ("The cat." =
"the cat"); any other mark is kept, so "C++" is not "C", "AB-" not "AB+" and "O-" not "O"; the articles a / an /
the are dropped unless nothing else is left ("A" stays a class); whitespace collapsed. The WHOLE answer must then
equal a name: "cat or dog", "cat, dog, bird", "a photo of a cat" and "" score 0, so an answer that hedges over
several classes (or lists all of them) never earns the reward.
"""
from __future__ import annotations

import json
import unicodedata
from typing import Any

from .parsing import load_solution, score_rows
from .registry import register_reward

_ARTICLES = {"a", "an", "the"}


_DROPPED_AT_EDGES = set(".,!?:;\"'`")  # and every quote or bracket (Unicode categories Ps, Pe, Pi, Pf)


def _mark(text: str, i: int) -> str:
    """What punctuation or symbol ``text[i]`` becomes: a space inside a word, nothing or itself elsewhere."""
    if 0 < i < len(text) - 1 and text[i - 1].isalnum() and text[i + 1].isalnum():
        return " "
    ch = text[i]
    return "" if ch in _DROPPED_AT_EDGES or unicodedata.category(ch) in ("Ps", "Pe", "Pi", "Pf") else ch


def normalize_text(text: str) -> str:
    """Lower-case words, single-spaced, without articles or sentence punctuation ("The Cat!" -> "cat",
    "C++" -> "c++"); see the module docstring for the rule."""
    text = "".join(" " if unicodedata.category(ch)[0] in "ZC" else ch for ch in unicodedata.normalize("NFKC", text))
    words = []
    for word in text.casefold().split():  # "U.S.A." is one word ("u s a"), so its "a" is no article
        marks = [unicodedata.category(ch)[0] in "PS" for ch in word]
        words.append(" ".join("".join(_mark(word, i) if m else ch for i, (ch, m) in enumerate(zip(word, marks))).split()))
    words = [w for w in words if w]
    return " ".join([w for w in words if w not in _ARTICLES] or words)


def validate_classification(solution: Any) -> None:
    """Raise ValueError unless `solution` is a non-empty class name or {"label": str, "aliases": [str, ...]}."""
    if isinstance(solution, dict):
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
