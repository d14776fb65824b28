"""Score G completions of one prompt with the prompt's language-model positions computed once.

TRL's log-prob passes (the reference / old-policy pass and the training forward) run the language model on
``[prompt, completion]`` for every row, so each prompt token is computed G times. :func:`packed_logps`
packs each group of rows that share a prompt (same tokens, same pixels) into one sequence::

    prompt[:-1] | last, c1[0], ..., c1[C-2] | last, c2[0], ..., c2[C-2] | ...

with a 4-D attention mask in which each completion block sees the prompt and its own earlier tokens only,
and with each token at the position it has in its own unshared row. The prompt's last token is repeated at
the head of each block, since its hidden state predicts a different first token per completion. TRL's
fused LM head then scores each block position against the next token of its own completion
(``shift_labels``), and the log-probs are gathered back to one row per completion. Every query sees exactly
the keys, values and positions it sees in the unshared pass, so log-probs, loss and gradients agree to
float rounding (tests/test_shared_prompt.py). Gradients flow through the shared prompt positions once,
summed over the group, as the unshared pass sums them over the G copies.

Covered, with ``sdpa`` or ``eager`` attention:

* Qwen2-VL / Qwen2.5-VL: M-RoPE positions from the model's ``get_rope_index`` on the prompt (padding
  skipped); images as patch rows split by ``image_grid_thw``.
* InternVL: the language model numbers the padded row ``0..L-1`` (no position ids are passed), so the
  prompt keeps its indices and a completion continues at the prompt length; images as 448-px tiles split
  by ``num_tiles`` (per row; without it, one tile per image).

:func:`why_not_packed` names what blocks the packed pass otherwise (the caller then runs the plain pass).
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict

import torch
from torch import nn

from .shared_vision import GRID_MODELS, find_vision_language_model, group_identical

_ATTENTION = ("sdpa", "eager")


def _uses_mrope(inner: nn.Module) -> bool:
    """Qwen2-VL / Qwen2.5-VL (M-RoPE, patch rows per image); otherwise InternVL (positions 0..L-1, tiles)."""
    return type(inner).__name__ in GRID_MODELS


def why_not_packed(model: nn.Module, input_ids: torch.Tensor, logits_to_keep: int, **fields) -> str | None:
    """None if :func:`packed_logps` applies to ``model``, these rows and log-prob fields, else the reason."""
    inner = find_vision_language_model(model)
    if inner is None:
        return f"{type(model).__name__} is not a Qwen2-VL / Qwen2.5-VL / InternVL model"
    image, video = (getattr(inner.config, name, None) for name in ("image_token_id", "video_token_id"))
    last_prompt_token = input_ids[:, -logits_to_keep - 1]
    if any(t is not None and bool((last_prompt_token == t).any()) for t in (image, video)):
        return "a prompt ends with an image or video token"
    if image is not None and bool((input_ids[:, -logits_to_keep:] == image).any()):
        return "a completion holds an image token (the plain pass decides what that means)"
    attention = getattr(inner.config.get_text_config(), "_attn_implementation", None)
    if attention not in _ATTENTION:
        return f"attention {attention!r} takes no 4-D mask (use sdpa or eager)"
    if fields.get("compute_aux_loss"):
        return "the MoE aux loss is requested"
    if fields.get("pixel_values") is None:
        return "no images (text-only rows)"
    needed = ("image_grid_thw", "mm_token_type_ids") if _uses_mrope(inner) else ()
    missing = [k for k in needed if fields.get(k) is None]
    if missing:
        return f"{missing} not given (the packed pass needs them to place images and positions)"
    if not _uses_mrope(inner) and fields.get("num_tiles") is None:  # TRL leaves it out when each image is one tile
        images = sum(fields["num_images"]) if fields.get("num_images") is not None else input_ids.size(0)
        if fields["pixel_values"].size(0) != images:
            return "InternVL tiles per row are unknown (no num_tiles)"
    known = ("pixel_values", "num_images", "num_tiles", *needed)
    unknown = sorted(k for k, v in fields.items() if v is not None and k not in known and k != "compute_aux_loss")
    if unknown:
        return f"fields {unknown} are not covered"
    return None


def span_starts(counts) -> list[int]:
    """Where each of consecutive spans of ``counts`` items begins, plus the end: ``[0, c0, c0 + c1, ...]``."""
    return list(itertools.accumulate(counts, initial=0))


def row_pixel_starts(inner: nn.Module, image_grid_thw, num_images: list[int], num_tiles) -> list[int]:
    """Where each row's pixels begin in ``pixel_values`` (one entry per row, plus the end). Qwen: its images'
    patch rows (``image_grid_thw``); InternVL: its tiles (``num_tiles``; without it, one tile per image)."""
    if _uses_mrope(inner):
        patch_starts = span_starts(image_grid_thw.prod(-1).tolist())
        return [patch_starts[i] for i in span_starts(num_images)]
    return span_starts(num_tiles if num_tiles is not None else num_images)


def group_rows(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, row_pixels: list,
               row_grids: list | None = None) -> list[list[int]]:
    """Rows grouped by identical prompt (tokens, padding, image grids and pixels; ``row_pixels[r]`` None for no
    image; ``row_grids[r]`` a row's image grids, which place its images' positions), in order of first appearance."""
    row_grids = row_grids if row_grids is not None else [None] * len(row_pixels)
    by_tokens: dict[tuple, list[int]] = defaultdict(list)
    for row, (ids, mask) in enumerate(zip(prompt_ids.tolist(), prompt_mask.tolist(), strict=True)):
        by_tokens[(tuple(ids), tuple(mask), row_grids[row])].append(row)
    groups = []
    for rows in by_tokens.values():
        with_pixels = [row for row in rows if row_pixels[row] is not None]
        without = [row for row in rows if row_pixels[row] is None]
        if without:
            groups.append(without)
        if with_pixels:
            firsts, assignment = group_identical([row_pixels[row] for row in with_pixels])
            split = [[] for _ in firsts]
            for row, g in zip(with_pixels, assignment, strict=True):
                split[g].append(row)
            groups.extend(split)
    return sorted(groups, key=lambda rows: rows[0])


def _prompt_positions(inner, prompt_ids, prompt_mask, image_grid_thw, mm_token_type_ids) -> torch.Tensor:
    """[D, rows, P] positions of the prompts as the model numbers them in the unshared rows (Qwen: D = 3,
    M-RoPE from ``get_rope_index``; InternVL: D = 1, ``0..P-1``). In both, the text after the prompt continues
    one by one, so completion token t sits at the last prompt token's position + 1 + t."""
    if _uses_mrope(inner):
        positions, _ = inner.get_rope_index(
            prompt_ids, mm_token_type_ids=mm_token_type_ids, image_grid_thw=image_grid_thw, attention_mask=prompt_mask
        )
        return positions
    return torch.arange(prompt_ids.size(1), device=prompt_ids.device).expand(1, *prompt_ids.shape)


def _attention_mask(keys_valid: torch.Tensor, block: torch.Tensor, dtype, attention: str) -> torch.Tensor:
    """[rows, 1, L, L] mask: causal, prompt keys visible to all, completion keys only within their block.

    ``keys_valid[r, j]``: token j may be attended (not padding); ``block[r, j]``: -1 in the prompt part, else
    the completion block of token j. Every token sees itself, so no query row is empty.
    """
    length = keys_valid.size(1)
    idx = torch.arange(length, device=keys_valid.device)
    causal = idx[None, :] <= idx[:, None]
    same_block = (block[:, None, :] == block[:, :, None]) | (block[:, None, :] == -1)
    allowed = causal[None] & same_block & keys_valid[:, None, :]
    allowed |= torch.eye(length, dtype=torch.bool, device=keys_valid.device)[None]
    allowed = allowed[:, None]
    if attention == "sdpa":
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def packed_logps(model, input_ids, attention_mask, logits_to_keep, *, compute_entropy=False, pixel_values=None,
                 image_grid_thw=None, num_images=None, num_tiles=None, mm_token_type_ids=None,
                 autocast=contextlib.nullcontext):  # fmt: skip
    """Per-token log-probs (and entropies) of the completions, ``[rows, logits_to_keep]``, as TRL's
    ``_get_per_token_logps_and_entropies`` returns them for one chunk, with each prompt run once.
    ``autocast``: a callable giving the context to run the model in (the accelerator's ``autocast``)."""
    inner = find_vision_language_model(model)
    mrope = _uses_mrope(inner)
    attention = inner.config.get_text_config()._attn_implementation
    device = input_ids.device
    clen = logits_to_keep
    plen = input_ids.size(1) - clen
    prompt_ids, prompt_mask = input_ids[:, :plen], attention_mask[:, :plen]
    comp_ids, comp_mask = input_ids[:, plen:], attention_mask[:, plen:]
    num_images = list(num_images) if num_images is not None else [1] * input_ids.size(0)
    image_starts = span_starts(num_images)
    if pixel_values is None:  # a chunk of text-only rows
        pixels_by_row = [None] * input_ids.size(0)
    else:
        pixel_starts = row_pixel_starts(inner, image_grid_thw, num_images, num_tiles)
        pixels_by_row = [pixel_values[a:b] if b > a else None for a, b in zip(pixel_starts, pixel_starts[1:])]
    grids_by_row = None
    if mrope and image_grid_thw is not None:
        grids_by_row = [tuple(map(tuple, image_grid_thw[a:b].tolist()))
                        for a, b in zip(image_starts, image_starts[1:])]
    groups = group_rows(prompt_ids, prompt_mask, pixels_by_row, grids_by_row)
    leaders = [rows[0] for rows in groups]
    lead = torch.tensor(leaders, device=device)

    leader_pixels = [pixels_by_row[r] for r in leaders if pixels_by_row[r] is not None]
    vision = {"pixel_values": torch.cat(leader_pixels)} if leader_pixels else {}
    grid_lead = None
    if mrope and leader_pixels:
        grid_lead = torch.cat([image_grid_thw[image_starts[r] : image_starts[r + 1]] for r in leaders])
        vision["image_grid_thw"] = grid_lead
    type_ids = mm_token_type_ids[lead, :plen] if mrope else None
    prompt_pos = _prompt_positions(inner, prompt_ids[lead], prompt_mask[lead], grid_lead, type_ids)

    # Row r is member k of group g: its block starts at plen - 1 + k * clen in packed row g.
    n, width = len(groups), max(plen - 1 + len(rows) * clen for rows in groups)
    group_of, member_of = torch.zeros(len(input_ids), dtype=torch.long), torch.zeros(len(input_ids), dtype=torch.long)
    for g, rows in enumerate(groups):
        group_of[rows] = g
        member_of[rows] = torch.arange(len(rows))
    group_of, member_of = group_of.to(device), member_of.to(device)
    offsets = torch.arange(clen, device=device)
    gather_index = (plen - 1 + member_of * clen)[:, None] + offsets  # [rows, clen] columns in the packed row
    flat_index = (group_of[:, None] * width + gather_index).reshape(-1)

    def pack(prompt_part: torch.Tensor, blocks: torch.Tensor, fill) -> torch.Tensor:
        """[n, width]: the groups' prompt part, then each row's block at its columns; ``fill`` elsewhere."""
        out = torch.full((n * width,), fill, dtype=blocks.dtype, device=device)
        out[flat_index] = blocks.reshape(-1)
        out = out.view(n, width)
        out[:, : plen - 1] = prompt_part
        return out

    last_token = prompt_ids[:, -1:]
    packed = pack(prompt_ids[lead, :-1], torch.cat([last_token, comp_ids[:, :-1]], 1), 0)
    keys_valid = pack(prompt_mask[lead, :-1].bool(),
                      torch.cat([torch.ones_like(last_token), comp_mask[:, :-1]], 1).bool(), False)  # fmt: skip
    block = pack(torch.full((n, plen - 1), -1, device=device), member_of[:, None].expand(-1, clen), -2)
    labels = pack(torch.full((n, plen - 1), -100, dtype=input_ids.dtype, device=device),
                  comp_ids.masked_fill(comp_mask == 0, -100), -100)  # fmt: skip
    block_positions = prompt_pos[:, :, -1:][:, group_of] + offsets  # [D, rows, clen]
    positions = torch.stack([pack(prompt_pos[d, :, :-1], block_positions[d], 0) for d in range(prompt_pos.size(0))])

    mask = _attention_mask(keys_valid, block, next(model.parameters()).dtype, attention)
    inputs = {"input_ids": packed, "attention_mask": mask, "position_ids": positions if mrope else positions[0]}
    with autocast():
        outputs = model(**inputs, **vision, shift_labels=labels, fused_lm_head=True)
    logps = outputs.log_probs[group_of[:, None], gather_index]
    entropies = outputs.entropy[group_of[:, None], gather_index] if compute_entropy else None
    return logps, entropies


CHUNKED_FIELDS = ("pixel_values", "image_grid_thw", "num_images", "num_tiles", "mm_token_type_ids")


def chunk_fields(inner: nn.Module, fields: dict, rows: int, start: int, end: int) -> dict:
    """The log-prob fields (``CHUNKED_FIELDS``) of rows ``start:end`` of a batch of ``rows``. A chunk whose rows
    hold no image gets no image fields (an empty ``pixel_values`` would reach the vision tower)."""
    out = {}
    if fields.get("mm_token_type_ids") is not None:
        out["mm_token_type_ids"] = fields["mm_token_type_ids"][start:end]
    if fields.get("num_images") is not None:
        out["num_images"] = list(fields["num_images"])[start:end]
    num_images = list(fields["num_images"]) if fields.get("num_images") is not None else [1] * rows
    image_starts = span_starts(num_images)
    if fields.get("pixel_values") is None or image_starts[end] == image_starts[start]:
        return out
    num_tiles = fields.get("num_tiles")
    pixel_starts = row_pixel_starts(inner, fields.get("image_grid_thw"), num_images, num_tiles)
    out["pixel_values"] = fields["pixel_values"][pixel_starts[start] : pixel_starts[end]]
    if fields.get("image_grid_thw") is not None:
        out["image_grid_thw"] = fields["image_grid_thw"][image_starts[start] : image_starts[end]]
    if num_tiles is not None:
        out["num_tiles"] = list(num_tiles)[start:end]
    return out


def chunked_packed_logps(model, input_ids, attention_mask, logits_to_keep, batch_size, *, compute_entropy,
                         autocast, **fields):  # fmt: skip
    """:func:`packed_logps` over chunks of ``batch_size`` rows, as TRL chunks its plain pass."""
    rows = input_ids.size(0)
    step = batch_size or rows
    inner = find_vision_language_model(model)
    all_logps, all_entropies = [], []
    for start in range(0, rows, step):
        end = min(start + step, rows)
        logps, entropies = packed_logps(
            model, input_ids[start:end], attention_mask[start:end], logits_to_keep, compute_entropy=compute_entropy,
            autocast=autocast, **chunk_fields(inner, fields, rows, start, end),
        )  # fmt: skip
        all_logps.append(logps)
        all_entropies.append(entropies)
    entropies = torch.cat(all_entropies) if compute_entropy else None
    return torch.cat(all_logps), entropies
