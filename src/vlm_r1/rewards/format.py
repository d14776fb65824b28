"""Format rewards (no ground truth): 1.0 when the completion has the required tag layout, else 0.0.

- think_format: `<think>...</think>` then `<answer>...</answer>` and nothing else, whitespace allowed
  around and between the blocks; exactly one of each tag; the answer is not blank (the thinking
  may be).
- think_json_format: think_format, and the answer (or its body, when all of it is one ``` or ```json fenced
  block) parses as strict JSON (no NaN / Infinity, no number beyond the float range) and is a list or an object
  (a bare number, string or null is not).
- answer_format: `<answer>...</answer>` alone (no think tags), exactly one of each tag, not blank.
Checked with str.count / str.find, so linear in the text.
"""
from __future__ import annotations

from .parsing import completion_text, loads_bounded, strip_fence
from .registry import register_reward

THINK_TAGS = ("<think>", "</think>", "<answer>", "</answer>")  # the layout every completion keeps


def _answer_if_formatted(text: str, think: bool) -> str | None:
    """The answer of a well-formed completion, or None."""
    text = text.strip()
    counts = [text.count(tag) for tag in THINK_TAGS]
    if counts != ([1, 1, 1, 1] if think else [0, 0, 1, 1]):
        return None
    if think:
        if not text.startswith("<think>"):
            return None
        between = text[text.find("</think>") + len("</think>"):text.find("<answer>")]
        if between.strip() or text.find("</think>") > text.find("<answer>"):
            return None
    elif not text.startswith("<answer>"):
        return None
    if not text.endswith("</answer>"):
        return None
    answer = text[text.find("<answer>") + len("<answer>"):-len("</answer>")]
    return answer if answer.strip() else None


def _is_json_container(answer: str) -> bool:
    """Strict JSON that is a list or an object: boxes and detections come in one (a bare `0`, `null` or `""` is
    JSON too, and would earn the format reward for no answer at all)."""
    ok, value = loads_bounded(strip_fence(answer), strict=True)
    return ok and isinstance(value, (list, dict))


def _score(completions, think: bool, need_json: bool = False) -> list[float]:
    out = []
    for completion in completions:
        answer = _answer_if_formatted(completion_text(completion), think)
        ok = answer is not None and (not need_json or _is_json_container(answer))
        out.append(1.0 if ok else 0.0)
    return out


@register_reward("think_format")
def think_format(completions, **kwargs) -> list[float]:
    """1.0 for exactly `<think>...</think><answer>...</answer>` (whitespace-tolerant), else 0.0.

    >>> think_format(["<think>hm</think> <answer>B</answer>", "<answer>B</answer>"])
    [1.0, 0.0]
    """
    return _score(completions, think=True)


@register_reward("think_json_format")
def think_json_format(completions, **kwargs) -> list[float]:
    """1.0 for the think_format layout with a JSON list or object as the answer (a ```json fence is allowed), else
    0.0."""
    return _score(completions, think=True, need_json=True)


@register_reward("answer_format")
def answer_format(completions, **kwargs) -> list[float]:
    """1.0 for exactly `<answer>...</answer>` with no think block (whitespace-tolerant), else 0.0."""
    return _score(completions, think=False)
