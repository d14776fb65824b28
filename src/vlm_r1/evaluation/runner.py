"""Run a model over validated rows and score its answers: batched generation, frame conversion, metrics, JSON.

1. Rows (:class:`vlm_r1.data.Sample`) become the same chat prompts GRPO and SFT use (question template of the VLM
   module unless given), and are generated in batches with ``model.generate`` — greedy by default; with
   ``num_samples > 1`` (and sampling) every row gets k completions and best-of-k is reported as well.
   Before anything is generated, every row's task is taken from ``task``, else from its ``reward`` column, else
   read from its ground truth's shape (REC box, detection list, number, class name), and its reward name and
   ground truth are validated for that task; one error lists every bad row (``file:line: field: message``).
2. Each completion is parsed once (:func:`vlm_r1.rewards.parsing.parse_answer`) and its boxes are converted from the
   model's frame to pixels of the row's first original image by ``VLMModule.answer_to_original`` (the one
   conversion the GRPO trainer uses too).
3. Rows are grouped by task and each group is scored by its evaluator: :mod:`.rec`, :mod:`.detection`,
   :mod:`.counting`, :mod:`.answers` (classification, multiple choice, yes/no); per-row scores are the matching
   rewards'. Every row counts; nothing is capped.

The result is a plain dict (``metrics`` per task, ``predictions`` per row) that :func:`write_json` saves.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import DataError, Problem, Sample, load_row_images, to_conversation
from ..modules import VLMModule
from ..recipe import only_apply
from ..rewards.boxes import is_four_numbers
from ..rewards.dispatch import TASK_REWARDS, task_validator, validate_solution
from ..rewards.parsing import ParsedAnswer, load_solution, parse_answer
from .answers import ANSWER_TASKS, answer_metrics, answer_scores
from .counting import counting_metrics
from .detection import ImageAnnotations, coco_metrics, detections_from_answer
from .rec import HIT_IOU, rec_scores, rec_summary

logger = logging.getLogger(__name__)

TASKS = ("rec", "detection", *ANSWER_TASKS)  # each is a key of rewards.dispatch.TASK_REWARDS


def infer_task(value: Any) -> str:
    """The task a decoded ground truth belongs to, from its shape (see the data contract in docs/contracts.md). It is
    not decoded again: the JSON string "7" is a class named 7, not the count 7."""
    if isinstance(value, list) and is_four_numbers(value):
        return "rec"
    if isinstance(value, list) and all(isinstance(v, dict) and "bbox_2d" in v for v in value):
        return "detection"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "counting"
    if isinstance(value, str) or (isinstance(value, dict) and "label" in value):
        return "classification"
    raise ValueError(f"cannot tell the task of ground truth {value!r:.120}: add a `reward` field naming its task, or "
                     "pass task explicitly")


def reward_task(reward: str | None) -> str | None:
    """The task of a row's ``reward`` column: a task name ("mc", "counting", ...) or an accuracy reward ("iou",
    "det_iou", ...) gives the task whose reward checks ground truth the same way; None for a row that names no
    reward or a 'package.module:function' one (its task is then read from the ground truth's shape)."""
    validator = task_validator(reward)
    return next((t for t in TASKS if validator is not None and task_validator(t) is validator), None)


def row_task(reward: str | None, value: Any, task: str = "auto") -> str:
    """One row's task (``task``; with "auto" the one its ``reward`` column names, else the one its ground truth's
    shape says), its ``reward`` and ground truth checked as a training run checks them: a reward name that is no
    accuracy reward is refused (:class:`~vlm_r1.rewards.dispatch.RewardNameError`, whose ``field`` is "reward"),
    and the ground truth must suit the row's reward and the task. A 'package.module:function' reward is not
    imported (evaluation never runs it). ``value`` is the decoded ground truth. Raises ValueError; the signature
    is the ``validate_solution`` callback of :func:`vlm_r1.data.load_rows`."""
    if reward is not None and ":" not in TASK_REWARDS.get(reward, reward):
        validate_solution(reward, value)
    named = reward_task(reward)
    if task == "auto" and named is not None:
        return named  # checked above by the row's own reward name ("numeric" is not held to a count's rule)
    chosen = task if task != "auto" else infer_task(value)
    # a number's shape says "counting" but not that it is a count: checked as training's number_match checks it
    checked_as = "numeric" if task == "auto" and chosen == "counting" else chosen
    try:
        validate_solution(checked_as, value)
    except ValueError as e:
        raise ValueError(f"{e} (task {task!r})" if task != "auto" else str(e)) from e
    return chosen


def row_tasks(samples: Sequence[Sample], task: str = "auto") -> list[str]:
    """Each row's task (:func:`row_task`), called before any generation.

    Raises :class:`~vlm_r1.data.DataError` listing every bad row as ``file:line: field: message``."""
    if task != "auto" and task not in TASKS:
        raise ValueError(f"task must be auto or one of {TASKS}, got {task!r}")
    tasks, problems = [], []
    for s in samples:
        try:
            tasks.append(row_task(s.reward, load_solution(s.solution), task))
        except ValueError as e:
            problems.append(Problem(s.source, getattr(e, "field", "solution"), str(e)))
    if problems:
        raise DataError.from_problems(problems, f"{len(problems)} of {len(samples)} rows cannot be evaluated:")
    return tasks


_SAMPLING_KNOBS = ("num_samples", "temperature", "top_p", "seed")  # what greedy decoding ignores


@dataclass
class GenerationSettings:
    batch_size: int = 32
    max_new_tokens: int = 64
    num_samples: int = 1  # completions per row; > 1 needs do_sample
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.num_samples < 1:
            raise ValueError("batch_size, max_new_tokens and num_samples must be >= 1")
        if not self.temperature > 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be > 0 and top_p in (0, 1], got {self.temperature} and {self.top_p}")
        if not self.do_sample:
            changed = [k for k in _SAMPLING_KNOBS if getattr(self, k) != getattr(GenerationSettings, k)]
            if changed:
                raise ValueError(f"{only_apply(changed)} when sampling (greedy decoding ignores them): "
                                 "add --do_sample, or leave them at their defaults")  # fmt: skip


# The decoding named by the settings and nothing else: a checkpoint's generation_config.json may carry beams, a
# repetition penalty (Qwen-VL-Instruct ships repetition_penalty 1.05) or other logits processors, which generate()
# would apply. None unsets a knob (it overrides the checkpoint's value; transformers 5 defaults are None).
PLAIN_DECODING: dict[str, Any] = {
    "num_beams": 1, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
    **dict.fromkeys(("min_p", "typical_p", "epsilon_cutoff", "eta_cutoff", "top_h", "encoder_repetition_penalty",
                     "bad_words_ids", "suppress_tokens", "begin_suppress_tokens", "sequence_bias",
                     "forced_bos_token_id", "forced_eos_token_id", "exponential_decay_length_penalty",
                     "guidance_scale", "min_length", "min_new_tokens", "stop_strings")),
}  # fmt: skip
# Greedy: the sampling knobs unset, which also silences "temperature is set but do_sample is False".
GREEDY_DECODING: dict[str, Any] = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


@torch.no_grad()
def generate(
    model,
    processor,
    samples: Sequence[Sample],
    question_template: str,
    system_prompt: str | None = None,
    settings: GenerationSettings | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[list[str]]:
    """``num_samples`` completions (decoded text, special tokens dropped) for every sample, in order."""
    settings = settings or GenerationSettings()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    tokenizer = getattr(processor, "tokenizer", processor)
    gen_kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "num_return_sequences": settings.num_samples,
        "pad_token_id": tokenizer.pad_token_id,
        **PLAIN_DECODING,
    }
    if settings.do_sample:
        gen_kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:
        gen_kwargs.update(GREEDY_DECODING)
    if settings.do_sample:
        torch.manual_seed(settings.seed)
    out: list[list[str]] = []
    for start in range(0, len(samples), settings.batch_size):
        batch = samples[start : start + settings.batch_size]
        prompts = [to_conversation(s.problem, question_template, system_prompt) for s in batch]
        texts = [processor.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
        images = [image for s in batch for image in load_row_images(s.images, s.source)]
        try:  # left padding whatever the processor was loaded with: generation continues every row at its end
            inputs = processor(text=texts, images=images or None, padding=True, padding_side="left",
                               return_tensors="pt").to(device)
        except ValueError as e:  # e.g. an image shape the processor cannot resize: say which rows
            raise ValueError(f"the processor refused rows {', '.join(s.source for s in batch)}: {e}") from e
        ids = model.generate(**inputs, **gen_kwargs)
        decoded = tokenizer.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        k = settings.num_samples
        out.extend(decoded[i * k : (i + 1) * k] for i in range(len(batch)))
        if progress is not None:
            progress(len(out), len(samples))
    model.train(was_training)
    return out


def _score_rows(task: str, answers: list[ParsedAnswer], samples: Sequence[Sample]) -> list[float | None]:
    """Per-completion score used for best-of-k and per-row records: IoU (REC) or 0/1 correctness (the rewards')."""
    solutions = [s.solution for s in samples]
    if task == "rec":
        return rec_scores(answers, solutions)
    if task in ANSWER_TASKS:
        return answer_scores(task, answers, solutions)
    return [None] * len(answers)  # detection is scored per split (COCO), not per row


def task_metrics(task: str, answers: list[ParsedAnswer], samples: Sequence[Sample]) -> dict[str, Any]:
    solutions = [s.solution for s in samples]
    if task == "rec":
        return rec_summary(rec_scores(answers, solutions), [a.answer is not None for a in answers])
    if task == "detection":
        ground_truth = []
        for s in samples:
            items = load_solution(s.solution)
            size = s.image_sizes[0] if s.image_sizes else (None, None)
            ground_truth.append(
                ImageAnnotations([i["bbox_2d"] for i in items], [i.get("label", "object") for i in items], *size)
            )
        metrics = coco_metrics(ground_truth, [detections_from_answer(a) for a in answers])
        metrics["answered"] = sum(a.answer is not None for a in answers) / max(len(answers), 1)
        return metrics
    if task == "counting":
        return counting_metrics(answers, solutions)
    if task in ANSWER_TASKS:
        return answer_metrics(task, answers, solutions)
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")


def check_inputs(module: VLMModule, processor, samples: Sequence[Sample], question_template: str | None,
                 system_prompt: str | None) -> None:
    """Refuse, before anything is generated, a prompt option holding a control token and every row the model cannot
    be given (its processor refuses the image, the question holds a control token): all of them at once."""
    module.check_prompt_options(processor, question_template, system_prompt)
    unfit = module.input_problems(processor, samples)
    if unfit:
        raise DataError.from_problems(unfit, f"{len(unfit)} problem(s) with rows this model cannot be given (nothing "
                                             "was generated): resize the images or edit the questions, or drop the "
                                             "rows")


def evaluate_samples(
    model,
    processor,
    module: VLMModule,
    samples: Sequence[Sample],
    question_template: str | None = None,
    system_prompt: str | None = None,
    settings: GenerationSettings | None = None,
    task: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    checked: bool = False,
) -> dict[str, Any]:
    """Generate for every sample and score (``checked``: the caller ran :func:`check_inputs` on them already).
    Returns ``{"metrics": {task: {...}}, "predictions": [...], ...}``.

    With ``num_samples = k > 1`` the metrics are those of each row's FIRST completion, plus ``best_of_k`` (REC: any
    completion with IoU >= 0.5; counting / classification: any correct).
    """
    settings = settings or GenerationSettings()
    tasks = row_tasks(samples, task)
    if not checked:
        check_inputs(module, processor, samples, question_template, system_prompt)
    template = question_template or module.question_template
    started = time.monotonic()
    completions = generate(model, processor, samples, template, system_prompt, settings, progress)
    seconds = time.monotonic() - started
    answers = [
        [module.answer_to_original(parse_answer(c), s.image_sizes, processor) for c in cs]
        for cs, s in zip(completions, samples)
    ]

    metrics: dict[str, Any] = {}
    scores: list[list[float]] = [[] for _ in samples]
    for name in TASKS:
        idx = [i for i, t in enumerate(tasks) if t == name]
        if not idx:
            continue
        group = [samples[i] for i in idx]
        metrics[name] = task_metrics(name, [answers[i][0] for i in idx], group)
        for j in range(settings.num_samples):
            for i, value in zip(idx, _score_rows(name, [answers[i][j] for i in idx], group)):
                scores[i].append(value)
        if settings.num_samples > 1 and name != "detection":
            hit = (lambda v: v >= HIT_IOU) if name == "rec" else (lambda v: v >= 1.0)
            metrics[name][f"best_of_{settings.num_samples}"] = sum(any(hit(v) for v in scores[i]) for i in idx) / len(idx)

    predictions = []
    for i, s in enumerate(samples):
        predictions.append({
            "source": s.source,
            "task": tasks[i],
            "question": s.problem,
            "solution": load_solution(s.solution),
            "completions": completions[i],
            "boxes": [[list(d.box) if d.box is not None else None for d in a.detections] for a in answers[i]],
            "labels": [[d.label for d in a.detections] for a in answers[i]],
            "box_scores": [[d.score for d in a.detections] for a in answers[i]],
            "scores": scores[i],
        })  # fmt: skip
    return {
        "metrics": metrics,
        "n": len(samples),
        "generation": {**settings.__dict__, "question_template": template, "system_prompt": system_prompt,
                       "seconds": seconds},  # fmt: skip
        "predictions": predictions,
    }


def _finite_json(value):
    """``value`` with each non-finite float as the string "nan", "inf" or "-inf" (standard JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return value


def write_json(result: dict, path) -> Path:
    """Write ``result`` as standard JSON (``jq`` and JavaScript read it; no NaN or Infinity literals), whole or not at
    all: through a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_finite_json(result), indent=1, default=str, allow_nan=False)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text + "\n", encoding="utf-8")
    partial.replace(path)
    return path
