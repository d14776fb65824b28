"""The contract between the trainer and one family of vision-language models.

A VLM module answers every model-specific question the trainer, the data layer and the rewards would otherwise
hard-code: which classes load the checkpoint, which parameters form the vision tower and the projector (for
freezing and LoRA), which processor settings bound the image size, the default question template, and — most
important for grounding — the coordinate frame the model writes boxes in. Boxes in datasets and rewards are always
``[x1, y1, x2, y2]`` in pixels of the ORIGINAL image; the module converts model output to that frame once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

Box = tuple[float, float, float, float]
Size = tuple[int, int]  # (width, height)

THINK_ANSWER_TEMPLATE = (
    "{question} First output the thinking process in <think> </think> tags and then output the final answer "
    "in <answer> </answer> tags."
)


@dataclass(frozen=True)
class VLMModule:
    """Base class; one subclass per model family. Subclasses set the class attributes and ``output_frame``."""

    #: ``config.model_type`` values this module serves.
    model_types: ClassVar[tuple[str, ...]] = ()
    #: How the model writes box coordinates: "relative_1000" (integers 0–1000 of the image) or
    #: "resized_pixels" (pixels of the image after the processor resized it).
    output_frame: ClassVar[str] = "relative_1000"
    #: Substrings of parameter names that belong to the vision encoder (frozen / excluded from LoRA by default).
    #: In some families the projector sits inside the encoder's module (Qwen's ``visual.merger``), in others next to
    #: it (InternVL's ``multi_modal_projector``); :meth:`part_of` sorts that out.
    vision_keywords: ClassVar[tuple[str, ...]] = ()
    #: Substrings of parameter names of the vision-to-language projector (merger).
    projector_keywords: ClassVar[tuple[str, ...]] = ()
    #: Default question template; ``{question}`` is replaced by the row's question text.
    question_template: ClassVar[str] = THINK_ANSWER_TEMPLATE

    def model_class(self):
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText

    def processor_kwargs(self, min_pixels: int | None, max_pixels: int | None, max_tiles: int | None) -> dict[str, Any]:
        """Keyword arguments for ``AutoProcessor.from_pretrained`` that bound the image size."""
        raise NotImplementedError

    def model_input_size(self, processor, original_size: Size) -> Size:
        """Size (width, height) of the image as the model sees it after the processor resized it."""
        raise NotImplementedError

    def image_problems(self, processor, samples) -> list:
        """A ``vlm_r1.data.Problem`` for each image of ``samples`` this model's processor refuses (Qwen's refuses an
        aspect ratio above 200), so that a run stops before its first step rather than in the middle."""
        from ..data.errors import Problem

        why: dict[Size, str | None] = {}
        problems = []
        for sample in samples:
            for j, size in enumerate(sample.image_sizes):
                if size not in why:
                    try:
                        self.model_input_size(processor, size)
                        why[size] = None
                    except ValueError as e:
                        why[size] = str(e)
                if why[size] is not None:
                    field = "image" if len(sample.image_sizes) == 1 else f"image[{j}]"
                    problems.append(Problem(sample.source, field, f"{size[0]}x{size[1]} px: {why[size]}"))
        return problems

    def text_problems(self, processor, samples) -> list:
        """A ``vlm_r1.data.Problem`` for each row whose question or ground truth holds the text of a token that gives
        the prompt its structure (:func:`structural_tokens`: ``<|im_end|>``, ``<|image_pad|>``, ...). The tokenizer
        reads such text as the token itself: the turn closes early, or an image slot appears without an image and
        the processor stops the run at that row's step; in a ground truth (an SFT target, a class name) it is an
        answer no decoded completion can match. Grounding tokens a question may use on purpose
        (``<|object_ref_start|>``, ``<ref>``, ``<box>``) are not reserved."""
        from ..data.errors import Problem
        from ..data.rows import IMAGE_PLACEHOLDER

        reserved = structural_tokens(processor)
        problems = []
        for sample in samples:
            found = [token for token in reserved if token in sample.problem.replace(IMAGE_PLACEHOLDER, " ")]
            if found:
                problems.append(Problem(sample.source, "question", _holds_control_tokens(found)))
            found = [token for token in reserved if token in sample.solution]  # (JSON leaves these characters be)
            if found:
                problems.append(Problem(sample.source, "solution", _holds_control_tokens(found)))
        return problems

    def input_problems(self, processor, samples) -> list:
        """Every row of ``samples`` this model cannot be given (:meth:`image_problems`, :meth:`text_problems`)."""
        return self.image_problems(processor, samples) + self.text_problems(processor, samples)

    def check_prompt_options(self, processor, question_template: str | None, system_prompt: str | None) -> None:
        """``OptionError`` when ``question_template`` or ``system_prompt`` holds a control token of the prompt, as
        :meth:`text_problems` refuses in a row's question."""
        from ..recipe import OptionError

        reserved = structural_tokens(processor)
        for option, text in (("question_template", question_template), ("system_prompt", system_prompt)):
            found = [token for token in reserved if text and token in text]
            if found:
                raise OptionError(f"--{option} {_holds_control_tokens(found)}")

    def answer_to_original(self, answer, image_sizes, processor):
        """A parsed answer (``vlm_r1.rewards.parsing.ParsedAnswer``) with its boxes in pixels of the row's first
        original image (``image_sizes[0]`` = (width, height)); unchanged when the row has no image or no box.
        The one place where model output changes frame: the GRPO trainer and evaluation both call it."""
        if not image_sizes or not answer.detections:
            return answer
        original = (int(image_sizes[0][0]), int(image_sizes[0][1]))
        input_size = self.model_input_size(processor, original)
        return answer.map_boxes(lambda box: self.to_original(box, original, input_size))

    def to_original(self, box: Box, original_size: Size, input_size: Size) -> Box:
        """Convert a box the model wrote into pixels of the original image."""
        return _rescale(box, self._frame_size(input_size), original_size)

    def _frame_size(self, input_size: Size) -> Size:
        """The (width, height) of the frame the model writes boxes in: 1000 x 1000, or the resized input's pixels."""
        if self.output_frame == "relative_1000":
            return (1000, 1000)
        if self.output_frame == "resized_pixels":
            return input_size
        raise ValueError(f"unknown output frame {self.output_frame!r}")  # pragma: no cover - set by the subclasses

    def from_original(self, box: Box, original_size: Size, input_size: Size) -> Box:
        """Inverse of :meth:`to_original`: write a ground-truth box in the model's frame (for SFT targets)."""
        return _rescale(box, original_size, self._frame_size(input_size))

    def is_projector_param(self, name: str) -> bool:
        return any(key in name for key in self.projector_keywords)

    def part_of(self, name: str) -> str:
        """Which part a parameter (or module) name belongs to: "projector", "vision" (the encoder) or "language"."""
        if self.is_projector_param(name):
            return "projector"
        if any(key in name for key in self.vision_keywords):
            return "vision"
        return "language"


def _holds_control_tokens(found: list[str]) -> str:
    return (f"holds {', '.join(found)}, which this model's tokenizer reads as a control token of the prompt, not as "
            "text: remove it")


def structural_tokens(processor) -> list[str]:
    """The tokenizer's special tokens that give a prompt its structure: those the chat template writes around a
    system and a user turn with an image, the processor's image and video tokens (``image_token``,
    ``start_image_token``, ...) and the end, start, padding and unknown tokens."""
    tokenizer = getattr(processor, "tokenizer", processor)
    special = {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    special |= set(getattr(tokenizer, "all_special_tokens", []))
    conversation = [{"role": "system", "content": [{"type": "text", "text": "S"}]},
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q"}]}]
    try:
        rendered = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    except Exception:  # a template without system turns or images: the named tokens below still count
        rendered = ""
    named = {getattr(processor, name, None) for name in dir(processor) if name.endswith("_token")}
    named |= {getattr(tokenizer, name, None) for name in ("eos_token", "bos_token", "pad_token", "unk_token")}
    return sorted(t for t in special if t and (t in rendered or t in named))


def _rescale(box: Box, source: Size, target: Size) -> Box:
    """``box`` from a frame of size ``source`` (width, height) to one of size ``target``: each coordinate times
    target / source, multiplied first and divided last, so an exact result stays exact (375 of 1000 on 288 px is
    108, not 107.99999999999999 as with 375 * (288 / 1000): an IoU of exactly 0.5 then read as a miss)."""
    (sw, sh), (tw, th) = source, target
    x1, y1, x2, y2 = box
    return (x1 * tw / sw, y1 * th / sh, x2 * tw / sw, y2 * th / sh)
