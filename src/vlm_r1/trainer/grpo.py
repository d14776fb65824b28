"""VLMGRPOTrainer: TRL's GRPOTrainer plus what vision-language grounding needs.

What it adds to ``trl.GRPOTrainer`` (everything else — sampling, advantages, the loss family, vLLM, DeepSpeed — is
TRL's own):

* Every completion is parsed once (:func:`vlm_r1.rewards.parsing.parse_answer`) and the boxes it holds are
  converted from the model's coordinate frame to pixels of the original image through the VLM module, before any
  reward runs. Rewards receive the result as the ``answers`` column and never guess a model's convention.
  For rows with several images, boxes are taken to refer to the first image.
* Batches may mix rows with images and rows without: TRL hands ``None`` to the processor for an image-less row,
  which transformers refuses, so the image lists are normalised to ``[]`` after generation.
* ``eval_greedy``: evaluation during training decodes greedily (:meth:`_eval_decoding`), so the logged eval
  rewards are the greedy accuracy that evaluations report, while training keeps sampling.
* The logged eval rewards are means over the evaluated rows (:meth:`_row_means_of_eval_rewards`); TRL averages one
  mean per eval batch, so a short last batch weighed as much as a full one, and with several processes the rows
  that pad the last batch counted twice.
* The last scored batch (rows, completions, parsed answers in pixels, per-function rewards) is kept in
  ``last_scored_batch`` so the report callback can draw what the model answered.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from accelerate.utils import gather_object
from transformers import GenerationConfig
from trl import GRPOTrainer

from ..evaluation.runner import GREEDY_DECODING, PLAIN_DECODING
from ..modules import VLMModule
from ..rewards.parsing import ParsedAnswer, completion_text, parse_answer
from .guards import GuardsMixin
from .shared_encoding import SharedEncodingMixin


@dataclass
class ScoredBatch:
    """What this process generated and scored in one generation batch (for reports and galleries)."""

    step: int
    rows: list[dict[str, Any]]  # dataset columns (image_paths, image_sizes, problem, solution, reward, source)
    completions: list[str]
    answers: list[ParsedAnswer]  # boxes in pixels of the original (first) image
    rewards: dict[str, list[float]]  # reward function name -> one value per completion (NaN: did not apply)


def greedy_version(sampling: GenerationConfig) -> GenerationConfig:
    """A copy of ``sampling`` that decodes as ``vlm-r1 eval`` does (the evaluator's plain greedy decoding, with no
    other logits processor); the length, the special tokens (eos, pad, bos) and the suppressed tokens stay: TRL
    suppresses the image token, whose generation would break the evaluation loss's image-feature count."""
    greedy = copy.deepcopy(sampling)
    suppressed = sampling.suppress_tokens
    greedy.update(**PLAIN_DECODING, **GREEDY_DECODING)
    greedy.suppress_tokens = suppressed
    return greedy


class VLMGRPOTrainer(SharedEncodingMixin, GuardsMixin, GRPOTrainer):
    def __init__(self, *args, vlm_module: VLMModule, **kwargs):
        self.vlm_module = vlm_module
        super().__init__(*args, **kwargs)
        self.last_scored_batch: ScoredBatch | None = None
        # TRL gathers the logged images only on a process whose batch holds some: with text-only rows on one process
        # and image rows on another, the other process waited in that gather forever. Gathered here, on every one.
        self._log_images, self.log_multimodal = self.log_multimodal, False
        self._eval_rewards: list[tuple[list, torch.Tensor]] = []  # (sources, rewards_per_func) per eval batch

    def answer_in_pixels(self, row: dict[str, Any], completion: Any) -> ParsedAnswer:
        """Parse one completion and express its boxes in pixels of the row's (first) original image."""
        answer = parse_answer(completion_text(completion))
        return self.vlm_module.answer_to_original(answer, row.get("image_sizes"), self.processing_class)

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self._log_images:  # one entry per completion, [] for a text-only row (TRL's completions table)
            self._logs["images"].extend(gather_object([row.get("images") or [] for row in inputs]))
        return output

    def _generate(self, prompts):
        with self._eval_decoding():
            out = super()._generate(prompts)
        images = out[6]  # (prompt_ids, completion_ids, tool_mask, completions, logprobs, extra, images, tool_images)
        if images is not None and any(not row_images for row_images in images):
            out = (*out[:6], [row_images or [] for row_images in images], *out[7:])
        return out

    @contextmanager
    def _eval_decoding(self):
        """With ``eval_greedy``, evaluation (the model in eval mode, as TRL tells train from eval) decodes greedily."""
        if self.model.training or not self.args.eval_greedy:
            yield
            return
        sampling = self.generation_config
        self.generation_config = greedy_version(sampling)
        try:
            yield
        finally:
            self.generation_config = sampling

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        answers = [self.answer_in_pixels(row, completion) for row, completion in zip(inputs, completions, strict=True)]
        inputs = [{**row, "answers": answer} for row, answer in zip(inputs, answers, strict=True)]
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:  # the gallery shows sampled training completions, not an evaluation's batch
            self._keep_scored_batch(inputs, completions, answers, rewards_per_func)
        else:  # every process's rows (gathered, in process order), with the rows' sources in the same order
            sources = gather_object([row.get("source") for row in inputs])
            self._eval_rewards.append((sources, rewards_per_func.detach().cpu()))
        return rewards_per_func

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if not self.model.training and self._eval_rewards:
            self._row_means_of_eval_rewards()
        if not self.model.training and self.args.eval_greedy:  # one completion per prompt: no advantage, no spread
            logs.pop("eval_loss", None)
            metrics = self._metrics["eval"]
            for key in [k for k in metrics if k in ("frac_reward_zero_std", "reward_std") or k.startswith("clip_ratio")]:
                del metrics[key]
        super().log(logs, start_time)

    def _row_means_of_eval_rewards(self) -> None:
        """Set the eval metrics ``rewards/<name>/mean`` and ``reward`` to means over every evaluated row (NaN: the
        function did not apply), as TRL computes them for one batch, instead of TRL's mean of per-batch means."""
        sources = [source for batch_sources, _ in self._eval_rewards for source in batch_sources]
        rewards_per_func = torch.cat([rewards for _, rewards in self._eval_rewards])
        self._eval_rewards = []
        # Several processes: the last eval batch is padded with repeated rows; each row counts once (its first
        # num_generations_eval completions).
        seen: dict[str, int] = {}
        keep = []
        for i, source in enumerate(sources):
            seen[source] = seen.get(source, 0) + 1
            if source is None or seen[source] <= self.num_generations_eval:
                keep.append(i)
        rewards_per_func = rewards_per_func[keep]
        metrics = self._metrics["eval"]
        for i, name in enumerate(self.reward_func_names):
            metrics[f"rewards/{name}/mean"] = [torch.nanmean(rewards_per_func[:, i]).item()]
        total = (rewards_per_func * self.reward_weights.cpu().unsqueeze(0)).nansum(dim=1)
        total[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan  # unscorable rows, as TRL leaves them out
        metrics["reward"] = [torch.nanmean(total).item()]

    def _keep_scored_batch(self, inputs, completions, answers, rewards_per_func: torch.Tensor) -> None:
        """Keep the generation batch for the gallery: with several processes, the whole batch (one prompt's G
        completions may be spread over them; ``rewards_per_func`` is already gathered, in process order)."""
        keep = ("image_paths", "image_sizes", "problem", "solution", "reward", "source")
        rows = [{key: row.get(key) for key in keep} for row in inputs]
        texts, answers = [completion_text(c) for c in completions], list(answers)
        if self.accelerator.num_processes > 1:
            parts = gather_object([(rows, texts, answers)])  # one collective, every rank's part in process order
            rows, texts, answers = ([x for part in parts for x in part[i]] for i in range(3))
        else:
            rewards_per_func = rewards_per_func[: len(inputs)]
        local = rewards_per_func.detach().cpu()
        self.last_scored_batch = ScoredBatch(
            step=self.state.global_step, rows=rows, completions=texts, answers=answers,
            rewards={name: local[:, i].tolist() for i, name in enumerate(self.reward_func_names)},
        )
