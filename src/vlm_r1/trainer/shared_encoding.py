"""SharedEncodingMixin: encode each image (and prefill each prompt) once per GRPO group.

GRPO samples every prompt G times, and TRL's GRPOTrainer runs the vision tower and the prompt prefill on
every copy: in generation, in the old-policy / reference log-prob passes, and in the training forward.
This mixin, placed before ``GRPOTrainer`` in the bases, removes the repeats when
``args.share_image_encoding`` is true (the default of :class:`vlm_r1.config.VLMGRPOConfig`):

* ``_tokenize_prompts``: only the distinct prompts of the batch are templated and run through the
  processor; the result carries a row -> prompt index (:class:`~.shared_prefill.SharedRows`).
* ``_generate_single_turn``: one prefill per distinct prompt (vision tower included), the KV cache and
  M-RoPE deltas copied to the G rows, then ``generate`` decodes with the trainer's generation config
  (:mod:`.shared_prefill`). Same sampling distribution; greedy gives identical tokens.
* ``_get_per_token_logps_and_entropies``: with ``share_prompt_tokens`` (default on), each group's completions
  are packed behind one copy of its prompt (:mod:`.shared_prompt`), so the vision tower AND the language
  model's prompt positions run once per group; otherwise (or where packing does not apply)
  the vision tower runs once per distinct image of each chunk (:mod:`.shared_vision`) and the language
  model on every row. Log-probs, loss and gradients equal the unshared path to float rounding
  (tests/test_shared_encoding.py, tests/test_shared_prompt.py state the tolerances).

Anything the sharing does not cover falls back to TRL's own code, unchanged: vLLM, continuous batching,
tools / environments, a static cache, a prompt whose last token is an image token, and Qwen3-VL's log-prob and
training passes (its vision path returns DeepStack features; its generation is shared). With ``share_image_encoding=False`` every method is TRL's.

Not shared: TRL's second processor call in ``_generate_and_score_completions`` (it builds the training
``pixel_values`` for all rows, G copies each).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from transformers import Trainer
from trl.extras.profiling import profiling_context
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import pad

from .shared_prefill import SharedRows, can_share_prefill, generate_from_shared_prefill, unique_rows
from .shared_prompt import CHUNKED_FIELDS, chunk_fields, chunked_packed_logps, why_not_packed
from .shared_vision import find_vision_language_model, share_image_features


logger = logging.getLogger(__name__)


class SharedEncodingMixin:
    """Mix into a ``trl.GRPOTrainer`` subclass, before it: ``class T(SharedEncodingMixin, GRPOTrainer)``."""

    _prefill_refusals: set[str]

    def __init__(self, *args, **kwargs):
        self._prefill_refusals = set()
        self._packing_refusals: set[str] = set()
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------------ when sharing applies
    @property
    def share_image_encoding(self) -> bool:
        return bool(getattr(self.args, "share_image_encoding", False))

    def _shares_generation(self) -> bool:
        return (
            self.share_image_encoding
            and not self.use_vllm
            and not getattr(self, "use_transformers_continuous_batching", False)
            and not self.tools
            and getattr(self, "environment_factories", None) is None
            and getattr(self, "rollout_func", None) is None
        )

    # ------------------------------------------------------------------ generation
    def _tokenize_prompts(self, prompts: list):
        if not self._shares_generation():
            return super()._tokenize_prompts(prompts)
        firsts, row_index = unique_rows(prompts)
        if len(firsts) == len(prompts):
            return super()._tokenize_prompts(prompts)
        prompt_ids, images, fields = super()._tokenize_prompts([prompts[i] for i in firsts])
        prompt_ids = [list(prompt_ids[j]) for j in row_index]
        images = [images[j] for j in row_index] if images is not None else None
        return prompt_ids, images, SharedRows(fields, row_index, prompts)

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        if isinstance(multimodal_fields, SharedRows) and not has_tool_images:
            return self._generate_shared(prompt_ids, multimodal_fields, num_generations)
        return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations, has_tool_images)

    def _distinct_prompt_inputs(self, prompt_ids, fields: SharedRows) -> dict[str, torch.Tensor]:
        """Left-padded tensors for the distinct prompts, padded exactly as TRL pads the whole batch."""
        firsts = {}
        for row, j in enumerate(fields.row_index):
            firsts.setdefault(j, row)
        rows = [torch.tensor(prompt_ids[firsts[j]]) for j in range(len(firsts))]
        pad_kw = {"padding_side": "left", "pad_to_multiple_of": self.pad_to_multiple_of}
        inputs = {
            "input_ids": pad(rows, padding_value=self._tokenizer.pad_token_id, **pad_kw),
            "attention_mask": pad([torch.ones_like(r) for r in rows], padding_value=0, **pad_kw),
        }
        for key, value in fields.items():
            if isinstance(value, torch.Tensor):
                inputs[key] = value
            elif isinstance(value, list) and value and isinstance(value[0], list):  # per-token, e.g. mm_token_type_ids
                inputs[key] = pad([torch.tensor(v) for v in value], padding_value=0, **pad_kw)
            else:
                inputs[key] = torch.tensor(np.array(value))
        return Trainer._prepare_inputs(self, inputs)

    def _generate_shared(self, prompt_ids, fields: SharedRows, num_generations: int):
        device = self.accelerator.device
        inputs = self._distinct_prompt_inputs(prompt_ids, fields)
        reason = can_share_prefill(self.accelerator.unwrap_model(self.model), inputs, self.generation_config)
        if reason is not None:  # TRL's path on the full batch (processes the prompts again; rare)
            if reason not in self._prefill_refusals:
                self._prefill_refusals.add(reason)
                logger.warning("share_image_encoding: generation not shared (%s); using TRL's path", reason)
            plain = super(SharedEncodingMixin, self)
            prompt_ids, images, full_fields = plain._tokenize_prompts(fields.prompts)
            return plain._generate_single_turn(prompt_ids, images, full_fields, num_generations)
        row_index = torch.tensor(fields.row_index, device=device)
        with (
            profiling_context(self, "transformers.generate"),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            sequences = generate_from_shared_prefill(unwrapped_model, inputs, row_index, self.generation_config)
        completion_ids = sequences[:, inputs["input_ids"].size(1) :]
        return self._cut_at_eos(completion_ids), None

    def _cut_at_eos(self, completion_ids: torch.Tensor) -> list[list[int]]:
        """Token ids up to and including the first EOS, one list per row (as TRL's generation path returns)."""
        is_eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids, device=completion_ids.device))
        full = torch.full_like(is_eos[:, 0], is_eos.size(1), dtype=torch.long)
        length = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1) + 1, full)
        return [row[:n].tolist() for row, n in zip(completion_ids.cpu(), length.cpu().tolist(), strict=True)]

    # ------------------------------------------------------------------ log-prob and training passes
    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           compute_entropy=False, compute_aux_loss=False, **fields):  # fmt: skip
        if self.share_image_encoding and getattr(self.args, "share_prompt_tokens", False):
            reason = why_not_packed(model, input_ids, logits_to_keep, compute_aux_loss=compute_aux_loss, **fields)
            if reason is None:
                logps, entropies = chunked_packed_logps(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy=compute_entropy,
                    autocast=self.accelerator.autocast, **{k: v for k, v in fields.items() if v is not None},
                )  # fmt: skip
                return logps, entropies, None
            if reason not in self._packing_refusals:
                self._packing_refusals.add(reason)
                logger.warning("share_prompt_tokens: log-prob pass not packed (%s); using the plain pass", reason)
        inner = find_vision_language_model(model)
        sliceable = fields.get("pixel_values") is not None and inner is not None and all(
            v is None or k in CHUNKED_FIELDS for k, v in fields.items())
        rows = input_ids.size(0)
        step = (batch_size or rows) if sliceable else rows  # our own chunks: TRL's hand an image-less chunk pixels
        parts = []
        with share_image_features(model, enabled=self.share_image_encoding):
            for start in range(0, rows, step):
                end = min(start + step, rows)
                chunk = chunk_fields(inner, fields, rows, start, end) if sliceable else fields
                parts.append(super()._get_per_token_logps_and_entropies(
                    model, input_ids[start:end], attention_mask[start:end], logits_to_keep, batch_size=batch_size,
                    compute_entropy=compute_entropy, compute_aux_loss=compute_aux_loss, **chunk,
                ))  # fmt: skip
        if len(parts) == 1:
            return parts[0]
        logps, entropies, aux = zip(*parts)
        return (torch.cat(logps), torch.cat(entropies) if compute_entropy else None,
                torch.stack(aux).mean() if compute_aux_loss else None)  # as TRL combines its chunks

