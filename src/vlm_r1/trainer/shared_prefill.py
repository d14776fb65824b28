"""Generate G completions per prompt while encoding the prompt (images included) once.

TRL puts every prompt G times in the generation batch, and ``model.generate`` would run the vision
tower and the prompt prefill on each copy. Here the copies are found (:func:`unique_rows`), only the
distinct prompts are tokenised and processed, and :func:`generate_from_shared_prefill`:

1. computes the position ids of the distinct prompts exactly as ``generate`` would (the model's own
   ``_prepare_position_ids_for_generation``; for Qwen's M-RoPE this also stores ``rope_deltas``);
2. runs one forward pass over all prompt tokens but the last, with the images, into a ``DynamicCache``;
3. copies the cache rows (``Cache.reorder_cache`` with an index that may repeat rows) and the
   ``rope_deltas`` to one row per sample, in the batch's original order;
4. calls ``model.generate`` on the full, expanded prompts with that cache. ``generate`` then feeds only
   the last prompt token and decodes with the caller's generation config untouched, so temperature,
   top_p, top_k, min_p, repetition_penalty, suppress_tokens, max_new_tokens and the EOS set apply as
   they would without sharing.

The completions therefore follow the same sampling distribution as the unshared path (the logits
agree to float rounding). Seeds are not guaranteed to give the same samples; in practice they usually
do, because every decoding step draws from a ``[rows, vocab]`` distribution of the same shape in both
paths, so only a draw that lands within rounding of a boundary can differ. Greedy gives the same tokens.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

# Per-token fields that are left-padded with the prompt and must be cut/expanded with it.
PER_TOKEN_FIELDS = ("attention_mask", "mm_token_type_ids", "token_type_ids")


class SharedRows(dict):
    """Multimodal fields of the DISTINCT prompts, plus ``row_index``: for each batch row, its prompt's index.

    Returned by the mixin's ``_tokenize_prompts`` in place of the per-row fields; only the mixin's
    ``_generate_single_turn`` reads it.
    """

    def __init__(self, fields: dict[str, Any], row_index: list[int], prompts: list[Any]):
        super().__init__(fields)
        self.row_index = row_index
        self.prompts = prompts  # the whole batch, for the fallback to TRL's path


def _key(value: Any) -> Any:
    """A hashable key equal for equal prompt content (images compared by mode, size and pixel bytes)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    tobytes = getattr(value, "tobytes", None)
    if callable(tobytes) and hasattr(value, "mode") and hasattr(value, "size"):  # a PIL image
        return ("image", value.mode, value.size, tobytes())
    return ("object", id(value))  # unknown content: equal only to itself, never shared by mistake


def unique_rows(prompts: list[Any]) -> tuple[list[int], list[int]]:
    """(index of the first row of each distinct prompt, row -> distinct prompt index)."""
    seen: dict[Any, int] = {}
    firsts: list[int] = []
    row_index: list[int] = []
    for i, prompt in enumerate(prompts):
        key = _key(prompt)
        if key not in seen:
            seen[key] = len(firsts)
            firsts.append(i)
        row_index.append(seen[key])
    return firsts, row_index


def _rope_holders(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if getattr(m, "rope_deltas", None) is not None]


def can_share_prefill(model: nn.Module, inputs: dict[str, torch.Tensor], generation_config) -> str | None:
    """None if :func:`generate_from_shared_prefill` applies, else the reason it does not."""
    if inputs["input_ids"].size(1) < 2:
        return "prompt shorter than 2 tokens"
    if getattr(generation_config, "use_cache", True) is False:  # generate would re-run the prompt without its images
        return "use_cache=False (the shared prefill is a cache)"
    if getattr(generation_config, "cache_implementation", None) is not None:
        return f"cache_implementation={generation_config.cache_implementation!r} (needs a DynamicCache)"
    if (generation_config.num_beams or 1) > 1 or (generation_config.num_return_sequences or 1) > 1:
        return "beam search / num_return_sequences"
    config = model.config
    for name in ("image_token_id", "image_token_index", "video_token_id"):
        token = getattr(config, name, None)
        if isinstance(token, int) and bool((inputs["input_ids"][:, -1] == token).any()):
            return "the last prompt token is an image token"
    for name in ("mm_token_type_ids", "token_type_ids"):
        if name in inputs and bool(inputs[name][:, -1].any()):
            return "the last prompt token is an image token"
    return None


def cache_keyword(model: nn.Module) -> str:
    """The keyword a model's forward (and ``generate``) takes its key/value cache by: ``cache`` from transformers
    5.24, ``past_key_values`` before (5.24 still takes the old name, with a FutureWarning on every call)."""
    import inspect

    return "cache" if "cache" in inspect.signature(type(model).forward).parameters else "past_key_values"


@torch.no_grad()
def generate_from_shared_prefill(
    model: nn.Module, inputs: dict[str, torch.Tensor], row_index: torch.Tensor, generation_config
) -> torch.Tensor:
    """Prefill the distinct prompts in ``inputs`` once, then sample one completion per entry of ``row_index``.

    ``inputs``: the processor's tensors for the distinct prompts, left-padded (input_ids, attention_mask,
    pixel_values, image_grid_thw, mm_token_type_ids, ...). Returns ``[len(row_index), prompt + new]``
    token ids, like ``generate`` on the expanded batch.
    """
    from transformers import DynamicCache

    input_ids = inputs["input_ids"]
    per_token = {k: v for k, v in inputs.items() if k in PER_TOKEN_FIELDS}
    media = {k: v for k, v in inputs.items() if k != "input_ids" and k not in PER_TOKEN_FIELDS}

    for holder in _rope_holders(model):  # stale deltas from an earlier call must not leak in
        holder.rope_deltas = None
    position_ids = model._prepare_position_ids_for_generation(
        input_ids, {"input_ids": input_ids, **per_token, **media}
    )
    cache = DynamicCache(config=model.config)
    cache_kwarg = cache_keyword(model)
    model(
        input_ids=input_ids[:, :-1],
        position_ids=position_ids[..., :-1],
        **{cache_kwarg: cache},
        use_cache=True,
        logits_to_keep=1,
        **{k: v[:, :-1] for k, v in per_token.items()},
        **media,
    )
    row_index = row_index.to(input_ids.device)
    cache.reorder_cache(row_index)
    for holder in _rope_holders(model):
        holder.rope_deltas = holder.rope_deltas.index_select(0, row_index.to(holder.rope_deltas.device))
    expanded = {k: v.index_select(0, row_index) for k, v in per_token.items()}
    return model.generate(
        input_ids=input_ids.index_select(0, row_index),
        **{cache_kwarg: cache},
        generation_config=generation_config,
        **expanded,
    )
