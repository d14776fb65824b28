"""Prompt building: a row's problem text -> TRL's conversational prompt with image items in place."""

from __future__ import annotations

from .rows import IMAGE_PLACEHOLDER

QUESTION_SLOT = "{question}"


def check_question_template(question_template: str) -> None:
    """ValueError unless the template holds ``{question}`` exactly once and no ``<image>``."""
    if question_template.count(QUESTION_SLOT) != 1:
        raise ValueError(f"question_template must contain {QUESTION_SLOT} exactly once: {question_template!r}")
    if IMAGE_PLACEHOLDER in question_template:
        raise ValueError(f"question_template may not contain {IMAGE_PLACEHOLDER}: images come from the row")


def to_conversation(problem: str, question_template: str = QUESTION_SLOT, system_prompt: str | None = None) -> list[dict]:
    """Build ``[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ...}, ...]}]``.

    ``question_template`` must contain ``{question}`` once; it is filled by plain replacement (not
    ``str.format``), so templates may contain other braces, e.g. a JSON example. Each ``<image>`` of
    the filled text becomes a ``{"type": "image"}`` item at its place; the text between images is
    kept verbatim, and pieces that are empty or only whitespace are dropped. A ``system_prompt``
    adds a leading system message. The template itself may not contain ``<image>``.
    """
    check_question_template(question_template)
    text = question_template.replace(QUESTION_SLOT, problem)
    content: list[dict] = []
    for i, piece in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if i > 0:
            content.append({"type": "image"})
        if piece.strip():
            content.append({"type": "text", "text": piece})
    messages = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append({"role": "user", "content": content})
    return messages
