"""Turn a completion into a `ParsedAnswer`: its `<answer>` text and the boxes found in it.

Everything here is total: it never raises and runs in time linear in the text (str.find / rfind and
regexes without nested quantifiers; no catastrophic backtracking). Model output is only ever read
with `json.loads` (bounded size, recursion caught) and a lenient bracket-number extractor; nothing is
evaluated.

Boxes are `(x1, y1, x2, y2)` floats. A box is kept only when its four numbers are finite, at most
`MAX_COORD` in absolute value and ordered (x1 <= x2, y1 <= y2). A reversed or non-finite box is
REJECTED, not normalised: its `Detection` keeps `box=None` so box rewards still count it as a
(wrong) prediction. Zero-area predictions are kept (their IoU is 0).

Boxes are looked for inside the last `<answer>...</answer>` only, in this order:
1. the whole answer (or its body, when all of it is one ``` or ```json fenced block: `strip_fence`) as
   JSON: a 4-number list, a dict with a `bbox_2d` / `bbox` / `box` key (plus `label` and `score` /
   `confidence`), or lists / dicts nesting those (only the first MAX_DEPTH levels are searched; JSON nested beyond the
   interpreter's recursion limit yields no detection at all);
2. if that is not valid JSON (prose around a fence included): each flat `{...}` object in the text that is
   valid JSON;
3. and every `[n, n, n, n]` outside those objects (each is a prediction too: a box list beside an object is not
   hidden by it);
4. if steps 1 to 3 found none: every `(n, n), (n, n)` in the text, Qwen2-VL's own box format once the special
   tokens around it (`<|box_start|>`, `<|box_end|>`) are decoded away, as TRL and the evaluator decode.
Detections come in the order they appear in the answer (a box written twice counts twice). At most MAX_DETECTIONS
detections are kept (the rest are dropped), and an answer longer than
MAX_ANSWER_CHARS is not searched at all (no model answer is that long: it has no detections).
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

from .boxes import is_four_numbers

MAX_ANSWER_CHARS = 200_000  # longer answers are not searched for boxes
MAX_JSON_CHARS = MAX_ANSWER_CHARS
MAX_OBJECT_CHARS = 4_096  # longest single {...} object the lenient extractor tries
MAX_DEPTH = 8  # deepest JSON nesting walked for detections
MAX_DETECTIONS = 1_000
MAX_COORD = 1e7  # no image is ten million pixels wide; larger numbers are treated as garbage

BOX_KEYS = ("bbox_2d", "bbox", "box")
SCORE_KEYS = ("score", "confidence", "conf")
LABEL_KEYS = ("label", "category", "class")

_NUM = r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# a bare `[x1, y1, x2, y2]`: four ASCII numbers in brackets (repetition_penalty takes these out of its text too)
BOX_LIST = re.compile(rf"\[\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*,\s*({_NUM})\s*\]", re.ASCII)
_PAIR_BOX_RE = re.compile(rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*(?:,\s*)?\(\s*({_NUM})\s*,\s*({_NUM})\s*\)", re.ASCII)
_OBJECT_RE = re.compile(r"\{[^{}]{0,%d}\}" % MAX_OBJECT_CHARS)
_EMPTY_ANSWERS = {"", '""', "[]", "{}", "none", "null", "nothing", "no objects", "no object"}  # '""': JSON's empty string


@dataclass(frozen=True)
class Detection:
    """One predicted box: pixel `box` (None when present but malformed), `label`, `score` (None if absent)."""

    box: tuple[float, float, float, float] | None
    label: str | None = None
    score: float | None = None


@dataclass(frozen=True)
class ParsedAnswer:
    """A completion's `text`, the content of its last `<answer>` (None if absent) and the detections in it."""

    text: str
    answer: str | None
    detections: tuple[Detection, ...] = ()

    def map_boxes(self, fn: Callable[[tuple[float, float, float, float]], Sequence[float]]) -> "ParsedAnswer":
        """A copy with every (non-None) box replaced by `fn(box)`; a result that is not a valid box becomes None."""
        dets = tuple(replace(d, box=make_box(fn(d.box)) if d.box is not None else None) for d in self.detections)
        return replace(self, detections=dets)


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a str, or chat messages whose content is a str or a list of text parts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        return ""
    texts = []
    for message in completion:
        if isinstance(message, str):
            texts.append(message)
            continue
        if not isinstance(message, dict) or message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, (list, tuple)):
            for part in content:
                if isinstance(part, str):
                    texts.append(part)
                elif (isinstance(part, dict) and part.get("type", "text") == "text"
                      and isinstance(part.get("text"), str)):
                    texts.append(part["text"])
    return "\n".join(texts)


def extract_answer(text: str) -> str | None:
    """Content of the last complete `<answer>...</answer>` in `text`, or None."""
    end = text.rfind("</answer>")
    if end < 0:
        return None
    start = text.rfind("<answer>", 0, end)
    if start < 0:
        return None
    return text[start + len("<answer>"):end]


_FENCE_LANGUAGE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*")


def strip_fence(text: str) -> str:
    """The body of `text` when all of it (whitespace aside) is one ``` or ```json fenced block, else `text` stripped.

    An unclosed fence runs to the end (a truncated completion). A fence with text after it, or with another
    language word, is not stripped, so prose around a fenced answer stays in the answer (and hedges stay visible).
    """
    stripped = text.strip()
    if not stripped.startswith("```"):
        return stripped
    rest = stripped[3:]
    close = rest.find("```")
    if close >= 0 and rest[close + 3:].strip():
        return stripped
    body = rest if close < 0 else rest[:close]
    first, newline, after = body.partition("\n")
    word = first.strip() if newline else (body.lstrip()[:4] if body.lstrip()[:4].lower() == "json" else "")
    if word and not (newline and not _FENCE_LANGUAGE.fullmatch(word)):  # a language word, not content
        if word.lower() != "json":
            return stripped
        body = after if newline else body.lstrip()[4:]
    return body.strip()


class TooDeep(ValueError):
    """JSON nested deeper than the parser's recursion limit."""


def _no_constant(name: str):
    raise ValueError(f"{name} is not strict JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is beyond the float range")
    return value


def loads_bounded(text: str, max_chars: int = MAX_JSON_CHARS, strict: bool = False) -> tuple[bool, Any]:
    """`(True, value)` when `text` is JSON of at most `max_chars` characters, else `(False, None)`. Never raises.

    `strict=True` also refuses NaN / Infinity (Python's json accepts them) and numbers beyond the float range
    (`1e999`, which Python reads as infinity). Nesting deeper than the interpreter's recursion limit gives
    `(False, TooDeep)`.
    """
    if not isinstance(text, str) or len(text) > max_chars:
        return False, None
    try:
        if strict:
            return True, json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
        return True, json.loads(text)
    except RecursionError:
        return False, TooDeep
    except (ValueError, TypeError, OverflowError):
        return False, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        x = float(value)
    except (OverflowError, ValueError):
        return None
    return x if math.isfinite(x) else None


def make_box(values: Any) -> tuple[float, float, float, float] | None:
    """`(x1, y1, x2, y2)` floats when `values` is 4 finite ordered numbers within MAX_COORD, else None."""
    try:
        if len(values) != 4:
            return None
        nums = [_number(v) for v in values]
    except TypeError:
        return None
    if any(x is None or abs(x) > MAX_COORD for x in nums):
        return None
    x1, y1, x2, y2 = nums
    if x2 < x1 or y2 < y1:
        return None
    return (x1, y1, x2, y2)


def _detection_from_dict(obj: dict) -> Detection:
    box = next((make_box(obj[k]) for k in BOX_KEYS if k in obj), None)
    label = next((obj[k].strip() for k in LABEL_KEYS if isinstance(obj.get(k), str)), None)
    score = next((s for s in (_number(obj.get(k)) for k in SCORE_KEYS) if s is not None), None)
    return Detection(box, label, score)


def _walk(value: Any, out: list, depth: int) -> None:
    if depth > MAX_DEPTH or len(out) >= MAX_DETECTIONS:
        return
    if isinstance(value, list):
        if is_four_numbers(value):
            out.append(Detection(make_box(value)))
            return
        for item in value:
            _walk(item, out, depth + 1)
    elif isinstance(value, dict):
        if any(k in value for k in BOX_KEYS):
            out.append(_detection_from_dict(value))
            return
        for item in value.values():
            _walk(item, out, depth + 1)


def detections_in(answer: str) -> tuple[Detection, ...]:
    """All detections found in an answer text (see the module docstring for the order of attempts)."""
    out: list[Detection] = []
    if len(answer) > MAX_ANSWER_CHARS:
        return ()
    ok, value = loads_bounded(strip_fence(answer))
    if ok:
        _walk(value, out, 0)
        return tuple(out[:MAX_DETECTIONS])
    if value is TooDeep:  # absurdly nested JSON is garbage, not a container of boxes
        return ()
    found: list[tuple[int, Detection]] = []  # (where in the answer, detection): kept in the answer's order
    outside = list(answer)  # the text with every object read here blanked: its boxes are not counted twice
    for match in _OBJECT_RE.finditer(answer):
        ok, obj = loads_bounded(match.group(0), MAX_OBJECT_CHARS + 2)
        if ok and isinstance(obj, dict):
            _walk(obj, out, 0)
            found += [(match.start(), d) for d in out]
            out.clear()
            outside[match.start():match.end()] = " " * (match.end() - match.start())
        if len(found) >= MAX_DETECTIONS:
            break
    rest = "".join(outside)
    for pattern in (BOX_LIST, _PAIR_BOX_RE):  # bare lists beside the objects; Qwen2-VL's pairs only if nothing else
        if pattern is _PAIR_BOX_RE and found:
            break
        for match in pattern.finditer(rest):
            try:
                nums = [float(g) for g in match.groups()]
            except (ValueError, OverflowError):
                nums = None
            found.append((match.start(), Detection(make_box(nums) if nums else None)))
            if len(found) >= MAX_DETECTIONS:
                break
    found.sort(key=lambda item: item[0])  # stable: an object's own detections keep their order
    return tuple(d for _, d in found[:MAX_DETECTIONS])


def parse_answer(text: Any) -> ParsedAnswer:
    """Parse one completion (any object; non-text becomes ""). Never raises."""
    try:
        text = completion_text(text)
        answer = extract_answer(text)
        return ParsedAnswer(text, answer, detections_in(answer) if answer is not None else ())
    except Exception:  # belt and braces: the helpers above are total, but a reward must never raise
        return ParsedAnswer(text if isinstance(text, str) else "", None, ())


def answers_from(completions: Sequence[Any], kwargs: dict) -> list[ParsedAnswer]:
    """`kwargs["answers"]` (parsed by the trainer, boxes in original-image pixels) or the completions parsed here."""
    given = kwargs.get("answers")
    if (isinstance(given, (list, tuple)) and len(given) == len(completions)
            and all(isinstance(a, ParsedAnswer) for a in given)):
        return list(given)
    return [parse_answer(c) for c in completions]


def score_rows(completions: Sequence[Any], solution: Any, kwargs: dict,
               ground_truth: Callable[[Any], Any], score: Callable[[ParsedAnswer, Any], float]) -> list[float | None]:
    """The per-row loop of every accuracy reward: `ground_truth(row_solution)` gives the usable ground truth or
    None (the reward does not apply: None), and `score(parsed_answer, ground_truth)` scores the completion."""
    answers = answers_from(completions, kwargs)
    solutions = solution if isinstance(solution, (list, tuple)) else [None] * len(answers)
    if len(solutions) != len(answers):  # a caller's mistake: say so, and score nothing rather than a short list
        warnings.warn(f"{len(solutions)} ground truths for {len(answers)} completions; every row scores None",
                      RuntimeWarning)
        solutions = [None] * len(answers)
    out: list[float | None] = []
    for parsed, sol in zip(answers, solutions):
        gt = ground_truth(sol)
        out.append(None if gt is None else float(score(parsed, gt)))
    return out


def is_empty_answer(answer: str | None) -> bool:
    """True when an answer explicitly says "nothing" ("", "[]", "none", "null", ...); False when there is no answer."""
    if answer is None:
        return False
    text = strip_fence(answer).strip().rstrip(".").strip().lower()
    return text in _EMPTY_ANSWERS or "".join(text.split()) in ("[]", "{}")  # "[ ]", pretty-printed "[\n]"


def normalize_label(label: Any) -> str | None:
    """Case- and whitespace-insensitive form of a class label (NFKC, casefold, single spaces; invisible format and
    control characters such as a zero-width space count as spaces, as in classification's ``normalize_text``)."""
    if not isinstance(label, str):
        return None
    text = unicodedata.normalize("NFKC", label)
    return " ".join("".join(" " if unicodedata.category(ch)[0] in "ZC" else ch for ch in text).casefold().split())


def load_solution(solution: Any) -> Any:
    """A ground truth as given to a reward: a JSON string is decoded; a non-JSON string or a decoded value is kept."""
    if isinstance(solution, str):
        ok, value = loads_bounded(solution)
        return value if ok else solution
    return solution
