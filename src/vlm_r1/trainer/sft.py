"""The SFT baseline on the same JSONL rows as GRPO: ground truth written as a completion in the MODEL's frame.

Each validated row (:class:`vlm_r1.data.Sample`) becomes one conversational prompt-completion example for TRL's
``SFTTrainer``: the prompt is exactly the one GRPO samples from (same question template, same image items), the
completion is ``<think>{think}</think><answer>{answer}</answer>`` and only the completion tokens carry loss
(``completion_only_loss``, which TRL's vision collator applies to prompt-completion data; it works with any chat
template, unlike ``assistant_only_loss``, which needs ``{% generation %}`` markers).

The answer is the ground truth re-written in the frame the model will be read in, through the VLM module:

* REC ``[x1, y1, x2, y2]`` (original pixels) -> ``module.from_original`` -> rounded integers, clipped to the frame;
* detection ``[{"bbox_2d", "label"}, ...]`` -> the same list with converted boxes and the labels (JSON, other keys of
  the ground truth left out, labels as their own characters);
* counting -> the integer; classification -> the class name; anything else -> its JSON text, refused when it holds
  a box in another shape (it would be written in original pixels, and rewards read boxes in the model's frame).

``think`` is a fixed, templated sentence (``{question}`` is replaced by the row's question without ``<image>``).
A tiny model cannot reason; the think block is there so that the SFT model emits the same
``<think>…</think><answer>…</answer>`` layout the format reward and the papers' prompts ask for, at a cost of a
handful of tokens. The default (see :data:`DEFAULT_THINK`) is short on purpose: every completion token costs
generation time in GRPO.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from datasets import Dataset
from trl import SFTTrainer

from ..checkpoints import SFT_STATE, ResumeWeightsMixin
from ..data import (BOX_WITHOUT_IMAGE, IMAGE_PLACEHOLDER, DataError, Problem, Sample, holds_boxes, load_row_images,
                    to_conversation)  # fmt: skip
from ..modules import VLMModule
from ..recipe import OptionError
from ..rewards.boxes import is_four_numbers
from ..rewards.format import THINK_TAGS
from ..rewards.parsing import detections_in

DEFAULT_THINK = "Find it."


def frame_limits(module: VLMModule, input_size: tuple[int, int]) -> tuple[float, float]:
    """Largest x and y a box may have in the module's output frame."""
    if module.output_frame == "relative_1000":
        return 1000.0, 1000.0
    return float(input_size[0]), float(input_size[1])


def box_in_model_frame(box, module: VLMModule, original_size, input_size) -> list[int]:
    """A ground-truth pixel box as the integers the model should write (rounded, clipped to its frame)."""
    max_x, max_y = frame_limits(module, input_size)
    x1, y1, x2, y2 = module.from_original(tuple(float(v) for v in box), original_size, input_size)
    clip = lambda v, hi: int(min(max(round(v), 0), hi))  # noqa: E731
    return [clip(x1, max_x), clip(y1, max_y), clip(x2, max_x), clip(y2, max_y)]


UNCONVERTED_BOXES = ("holds boxes in a shape SFT does not write in the model's frame (a REC box [x1, y1, x2, y2] or a "
                     "detection list of {\"bbox_2d\", \"label\"} objects): the target would teach original pixels, "
                     "which the rewards read in the model's frame")


def render_answer(solution: Any, module: VLMModule, original_size, input_size) -> str:
    """The text that goes between ``<answer>`` tags for one ground truth (see the module docstring). ValueError
    for a ground truth with boxes in any other shape (:data:`UNCONVERTED_BOXES`)."""
    value = json.loads(solution) if isinstance(solution, str) else solution
    if is_four_numbers(value):
        return json.dumps(box_in_model_frame(value, module, original_size, input_size))
    if isinstance(value, list) and all(isinstance(v, dict) and is_four_numbers(v.get("bbox_2d")) for v in value):
        items = [{"bbox_2d": box_in_model_frame(v["bbox_2d"], module, original_size, input_size),
                  **({"label": v["label"]} if "label" in v else {})} for v in value]  # fmt: skip
        return json.dumps(items, ensure_ascii=False)  # a label as its own characters, as classification writes it
    if isinstance(value, bool):
        text = json.dumps(value)
    elif isinstance(value, (int, float)):
        text = str(int(value)) if float(value).is_integer() else str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, dict) and isinstance(value.get("label"), str):
        text = value["label"]
    else:
        text = json.dumps(value, ensure_ascii=False)
    if detections_in(text):
        raise ValueError(UNCONVERTED_BOXES)
    return text


def render_completion(answer: str, think: str = DEFAULT_THINK) -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


def question_text(problem: str) -> str:
    return problem.replace(IMAGE_PLACEHOLDER, "").strip()


def sft_targets(samples: Sequence[Sample], module: VLMModule, processor, think: str = DEFAULT_THINK) -> list[str]:
    """One completion text per sample (boxes refer to the first image of a row). A row whose ground truth holds
    boxes but which has no image is refused (every such row in one :class:`DataError`)."""
    out, problems = [], []
    for s in samples:
        if s.image_sizes:
            original = (int(s.image_sizes[0][0]), int(s.image_sizes[0][1]))
            input_size = module.model_input_size(processor, original)
        elif holds_boxes(json.loads(s.solution)):  # pixels of no image: there is no frame to write the box in
            problems.append(Problem(s.source, "solution", BOX_WITHOUT_IMAGE))
            continue
        else:
            original = input_size = (1, 1)  # no box to convert: the sizes are never read
        try:
            answer = render_answer(s.solution, module, original, input_size)
        except ValueError as e:
            problems.append(Problem(s.source, "solution", str(e)))
            continue
        question = question_text(s.problem)
        tags = [tag for tag in THINK_TAGS if "{question}" in think and tag in question]
        if tags:  # the think block would close early and hold another answer (the model is taught that one)
            problems.append(Problem(s.source, "question", f"holds {', '.join(tags)}, and --think writes the question "
                                                          "into the target's <think> block: remove them, or drop "
                                                          "{question} from --think"))
            continue
        out.append(render_completion(answer, think.replace("{question}", question)))
    if problems:
        raise DataError.from_problems(problems, f"{len(problems)} row(s) SFT cannot write a target for:")
    return out


def to_sft_dataset(
    samples: Sequence[Sample],
    module: VLMModule,
    processor,
    question_template: str,
    system_prompt: str | None = None,
    think: str = DEFAULT_THINK,
) -> Dataset:
    """A prompt-completion dataset (conversational, with ``images``) that TRL's SFTTrainer collates on the fly.

    Images are decoded when a row is read (``with_transform``), so the table holds only paths and texts.
    """
    table = Dataset.from_dict(
        {
            "problem": [s.problem for s in samples],
            "image_paths": [list(s.images) for s in samples],
            "source": [s.source for s in samples],
            "target": sft_targets(samples, module, processor, think),
        }
    )

    def materialise(batch: dict[str, list]) -> dict[str, list]:
        return {
            "prompt": [
                to_conversation(p, question_template=question_template, system_prompt=system_prompt)
                for p in batch["problem"]
            ],
            "completion": [[{"role": "assistant", "content": [{"type": "text", "text": t}]}] for t in batch["target"]],
            "images": [load_row_images(paths, source) for paths, source in zip(batch["image_paths"], batch["source"])],
        }

    return table.with_transform(materialise)


class VLMSFTTrainer(ResumeWeightsMixin, SFTTrainer):
    """TRL's SFTTrainer that resumes a checkpoint's weights correctly and refuses a batch with nothing to learn.

    TRL counts the training tokens it logs (``num_tokens``) in a field that no checkpoint holds, so a resumed run
    counted from 0: the count is carried in each checkpoint (``sft_state.json``, through ``ResumeWeightsMixin``)."""

    counters_file = SFT_STATE

    def _counters_to_save(self) -> dict:
        return {"total_train_tokens": self._total_train_tokens}

    def _restore_counters(self, saved: dict) -> None:
        self._total_train_tokens = saved["total_train_tokens"]

    def compute_loss(self, model, inputs, *args, **kwargs):
        labels = inputs.get("labels")
        if labels is not None and not bool((labels != -100).any()):
            raise OptionError(f"no completion token is left in this batch to train on: max_length "
                             f"({self.args.max_length}) cut them all (the prompt, image tokens included, comes first); "
                             "raise max_length or leave it unset")
        return super().compute_loss(model, inputs, *args, **kwargs)
