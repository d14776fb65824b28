"""Run the vision tower once per distinct image in a forward pass, and hand every row its features.

In GRPO each prompt appears G times in a batch, so a plain forward pass encodes every image G times.
:func:`share_image_features` temporarily wraps the inner vision-language model's ``get_image_features``:
the wrapper finds the distinct images in ``pixel_values`` (exact equality of their pixels, compared
on the tensors themselves), encodes only those, and indexes the result back out to one entry per image
of the batch. The model's own forward then scatters the features into the token embeddings exactly as
before, so positions (Qwen's M-RoPE), masks and everything else stay the model's business.

Indexing is differentiable: the gradient reaching a shared image's features is the sum over the rows
that use it, which is what the unshared pass accumulates in the vision tower's parameters — the same
gradient, summed in a different order (equal up to float rounding).

Supported inner models (others run unchanged):

* Qwen2-VL / Qwen2.5-VL: ``pixel_values`` is ``[patches, dim]``, split per image by ``image_grid_thw``;
  each image is encoded independently (attention is block-diagonal per image), so encoding a subset
  gives the same features.
* InternVL: ``pixel_values`` is ``[tiles, 3, H, W]``; each tile is encoded independently, so distinct
  tiles are the unit.

Qwen3-VL is not covered: its encoder also returns DeepStack features for intermediate LM layers,
which would need the same indexing; it falls back to the plain path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

# Inner model class name -> how its pixel_values split into independently encoded units.
GRID_MODELS = ("Qwen2VLModel", "Qwen2_5_VLModel")
TILE_MODELS = ("InternVLModel",)
_SAMPLES = 64  # elements per unit read for the cheap fingerprint (exact equality is checked afterwards)


def find_vision_language_model(model: nn.Module) -> nn.Module | None:
    """The inner ``*Model`` whose ``get_image_features`` this module supports, or None.

    Looks through wrappers (DDP, PEFT, the ``ForConditionalGeneration`` head) by walking the modules.
    """
    for module in model.modules():
        if type(module).__name__ in GRID_MODELS + TILE_MODELS:
            return module
    return None


def group_identical(units: list[torch.Tensor]) -> tuple[list[int], list[int]]:
    """Group equal tensors. Returns (index of the first occurrence of each distinct unit, unit -> group).

    A strided sample of each unit (moved to the CPU in one transfer) narrows the candidates, then
    ``torch.equal`` decides, so two units share a group only if they are exactly equal.
    """
    if not units:
        return [], []
    samples = []
    for unit in units:
        flat = unit.reshape(-1)
        samples.append(flat[:: max(1, flat.numel() // _SAMPLES)][:_SAMPLES])
    if len({s.numel() for s in samples}) == 1:
        samples = list(torch.stack(samples).cpu())  # one device-to-host transfer
    keys = [(tuple(unit.shape), tuple(s.tolist())) for unit, s in zip(units, samples, strict=True)]
    firsts: list[int] = []
    by_key: dict[tuple, list[int]] = {}
    assignment: list[int] = []
    for i, (unit, key) in enumerate(zip(units, keys, strict=True)):
        group = None
        for candidate in by_key.get(key, []):
            if torch.equal(units[firsts[candidate]], unit):
                group = candidate
                break
        if group is None:
            group = len(firsts)
            firsts.append(i)
            by_key.setdefault(key, []).append(group)
        assignment.append(group)
    return firsts, assignment


def _grid_wrapper(original):
    def get_image_features(pixel_values, image_grid_thw=None, **kwargs):
        if image_grid_thw is None or any(isinstance(v, torch.Tensor) for v in kwargs.values()):
            return original(pixel_values, image_grid_thw, **kwargs)
        sizes = image_grid_thw.prod(-1).tolist()
        images = list(torch.split(pixel_values, sizes))
        firsts, assignment = group_identical(images)
        if len(firsts) == len(images):
            return original(pixel_values, image_grid_thw, **kwargs)
        unique_pixels = torch.cat([images[i] for i in firsts])
        outputs = original(unique_pixels, image_grid_thw[firsts], **kwargs)
        per_image = outputs.pooler_output  # tuple: one [tokens, dim] tensor per distinct image
        outputs.pooler_output = tuple(per_image[g] for g in assignment)
        outputs.last_hidden_state = None  # per distinct image; nothing downstream reads it
        return outputs

    return get_image_features


def _tile_wrapper(original):
    def get_image_features(pixel_values, *args, **kwargs):
        if any(isinstance(v, torch.Tensor) for v in kwargs.values()) or pixel_values.dim() != 4:
            return original(pixel_values, *args, **kwargs)
        tiles = list(pixel_values.unbind(0))
        firsts, assignment = group_identical(tiles)
        if len(firsts) == len(tiles):
            return original(pixel_values, *args, **kwargs)
        outputs = original(pixel_values[firsts], *args, **kwargs)
        index = torch.tensor(assignment, device=outputs.pooler_output.device)
        outputs.pooler_output = outputs.pooler_output.index_select(0, index)
        outputs.last_hidden_state = None
        outputs.hidden_states = None
        return outputs

    return get_image_features


@contextlib.contextmanager
def share_image_features(model: nn.Module, enabled: bool = True) -> Iterator[bool]:
    """Within the block, ``model`` encodes each distinct image once per forward pass.

    Yields whether sharing is active (False for unsupported models or ``enabled=False``). Nesting is
    safe: an already wrapped model is left as it is.
    """
    inner = find_vision_language_model(model) if enabled else None
    if inner is None or "get_image_features" in vars(inner):
        yield inner is not None
        return
    original = inner.get_image_features
    wrap = _grid_wrapper if type(inner).__name__ in GRID_MODELS else _tile_wrapper
    inner.get_image_features = wrap(original)
    try:
        yield True
    finally:
        del inner.get_image_features
