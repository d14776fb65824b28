"""Prompt building: a row's problem text -> TRL's conversational prompt with image items in place."""

from __future__ import annotations

import json
from pathlib import Path

from .rows import IMAGE_PLACEHOLDER

QUESTION_SLOT = "{question}"
# Written by `vlm-r1 train` / `vlm-r1 sft` into the output folder and each checkpoint-N, copied by `merge-lora`, read
# by `vlm-r1 eval`: the prompt a checkpoint was trained with travels with it.
PROMPT_FILE = "vlm_r1_prompt.json"


def save_prompt(folder, question_template: str, system_prompt: str | None) -> Path:
    """Write the prompt a run trains with (the template in effect, not None) to ``folder/PROMPT_FILE``."""
    path = Path(folder) / PROMPT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"question_template": question_template, "system_prompt": system_prompt}) + "\n")
    return path


def read_prompt(folder) -> dict | None:
    """``{"question_template", "system_prompt"}`` a checkpoint folder was trained with, or None when it records none."""
    from ..checkpoints import CheckpointError

    path = Path(folder) / PROMPT_FILE
    if not path.is_file():
        return None
    try:
        prompt = json.loads(path.read_text(encoding="utf-8"))
        if not (isinstance(prompt, dict) and isinstance(prompt.get("question_template"), str)
                and isinstance(prompt.get("system_prompt"), (str, type(None)))):
            raise ValueError("expected {'question_template': str, 'system_prompt': str or null}, "
                             f"got {prompt!r:.200}")
        check_question_template(prompt["question_template"])
    except (ValueError, UnicodeDecodeError) as e:  # json's errors are ValueErrors
        raise CheckpointError(f"{path}: {e}") from e
    return {"question_template": prompt["question_template"], "system_prompt": prompt["system_prompt"]}


def prompt_change_from(checkpoint: str, question_template: str, system_prompt: str | None) -> str | None:
    """A sentence saying how the prompt a run trains with differs from the one ``checkpoint`` was trained with (its
    ``PROMPT_FILE``), or None when they agree or the checkpoint records none (a hub id, a foreign folder)."""
    from ..checkpoints import CheckpointError

    if not Path(checkpoint).is_dir():
        return None
    try:
        recorded = read_prompt(checkpoint)
    except CheckpointError as e:  # a broken record does not stop a run that does not need it
        return f"{e}: the prompt {checkpoint} was trained with is unknown"
    if recorded is None:
        return None
    given = {"question_template": question_template, "system_prompt": system_prompt}
    differ = [name for name in given if given[name] != recorded[name]]
    if not differ:
        return None
    changed = [f"{name} {given[name]!r} (it was trained with {recorded[name]!r})" for name in differ]
    keep = [f"--{name} {recorded[name]!r}" if recorded[name] is not None else f"no --{name}" for name in differ]
    return (f"this run trains with {' and '.join(changed)}, from {checkpoint}'s {PROMPT_FILE}; to keep the "
            f"prompt it knows, give {' and '.join(keep)}")


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
