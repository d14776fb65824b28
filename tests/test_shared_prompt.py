"""Packing each group's completions behind one copy of its prompt changes speed, not results.

For tiny Qwen2-VL, Qwen2.5-VL and InternVL models (weights perturbed so outputs depend on the input), the trainer with
``share_prompt_tokens`` on and off must give the same per-token log-probs on the scored positions, the same
loss and the same gradients: one and two images per row, rows shuffled (groups not adjacent), chunks that cut
groups apart, a completion whose mask is all zero (a truncated row), sdpa and eager attention, and gradient
checkpointing. Tolerances (``torch.testing.assert_close``, float32): log-probs rtol 1e-4, atol 1e-5 (values
up to ~4.5; measured gaps up to 1.9e-5); loss rtol 1e-5, atol 1e-7; gradients rtol 1e-4, atol 2e-5 x the
largest gradient entry of the plain pass (measured up to 6e-6 x). The gaps are float32 rounding: the packed
pass attends over a longer, masked key set and sums the G rows' prompt gradients in one backward, in
another order than the plain pass (the perturbed test weights make activations large).
"""

from __future__ import annotations

import pytest
import torch
from test_shared_encoding import G, _loss_and_grads, _rows, _shuffled, _trainer

LOGP_TOL = {"rtol": 1e-4, "atol": 1e-5}
LOSS_TOL = {"rtol": 1e-5, "atol": 1e-7}
GRAD_RTOL, GRAD_ATOL_SCALE = 1e-4, 2e-5


class LanguageModelTokens:
    """Counts the token positions the language model runs on (batch x sequence of its input embeddings)."""

    def __init__(self, model):
        from vlm_r1.trainer.shared_vision import find_vision_language_model

        self.count = 0
        find_vision_language_model(model).language_model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        self.count += embeds.shape[0] * embeds.shape[1]


@pytest.fixture(scope="module", params=[("qwen2_vl", "sdpa"), ("qwen2_5_vl", "sdpa"), ("qwen2_vl", "eager"),
                                        ("internvl", "sdpa")], ids=lambda p: "-".join(p))  # fmt: skip
def setup(request, tiny_model_dir, tmp_path_factory):
    model_type, attention = request.param
    trainer = _trainer(tiny_model_dir(model_type), model_type, tmp_path_factory.mktemp(model_type),
                       max_completion_length=6, share_prompt_tokens=True)  # fmt: skip
    trainer.model.set_attn_implementation(attention)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    batches = {}
    for images_per_row in (1, 2):
        rows = [row for row in _rows(images_per_row) for _ in range(G)]
        batches[images_per_row] = trainer._generate_and_score_completions(rows)
    return trainer, batches


def _scored(inputs):
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    keys = ("pixel_values", "image_grid_thw", "num_images", "num_tiles", "mm_token_type_ids")
    return ids, mask, {k: inputs[k] for k in keys if k in inputs}


def _logps_and_entropies(trainer, inputs, batch_size, packed):
    trainer.args.share_prompt_tokens = packed
    ids, mask, fields = _scored(inputs)
    with torch.no_grad():
        logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, inputs["completion_ids"].size(1), batch_size=batch_size,
            compute_entropy=True, **fields,
        )  # fmt: skip
    return logps, entropies


def _truncate_one(inputs):
    """The second row as TRL leaves a truncated completion under mask_truncated_completions: mask all zero."""
    inputs = dict(inputs)
    inputs["completion_mask"] = inputs["completion_mask"].clone()
    inputs["completion_mask"][1] = 0
    return inputs


@pytest.mark.parametrize("images_per_row", [1, 2])
def test_logps_and_entropies_match_and_prompt_runs_once(setup, images_per_row):
    trainer, batches = setup
    counter = LanguageModelTokens(trainer.model)
    inputs = _truncate_one(_shuffled(batches[images_per_row]))
    mask = inputs["completion_mask"].bool()
    for batch_size in (2 * G, 3):  # one chunk; chunks that cut groups apart
        counter.count = 0
        plain = _logps_and_entropies(trainer, inputs, batch_size, packed=False)
        plain_tokens = counter.count
        counter.count = 0
        packed = _logps_and_entropies(trainer, inputs, batch_size, packed=True)
        for got, want in zip(packed, plain, strict=True):
            torch.testing.assert_close(got[mask], want[mask], **LOGP_TOL)
            assert torch.all(got[~mask] == 0) and torch.all(want[~mask] == 0)
        assert not trainer._packing_refusals, trainer._packing_refusals
        if batch_size == 2 * G:
            prompt, completion = inputs["prompt_ids"].size(1), inputs["completion_ids"].size(1)
            assert plain_tokens == 2 * G * (prompt + completion)
            assert counter.count <= 2 * (prompt + G * completion)  # each prompt once (padding aside)


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("images_per_row", [1, 2])
def test_loss_and_gradients_match(setup, images_per_row, checkpointing):
    trainer, batches = setup
    inputs = _truncate_one(_shuffled(batches[images_per_row]))
    inputs["advantages"] = torch.linspace(-1.0, 1.0, inputs["completion_ids"].size(0))
    trainer.args.share_prompt_tokens = False
    plain_loss, plain_grads = _loss_and_grads(trainer, inputs)
    if checkpointing:
        trainer.model.gradient_checkpointing_enable({"use_reentrant": False})
    try:
        trainer.args.share_prompt_tokens = True
        packed_loss, packed_grads = _loss_and_grads(trainer, inputs)
    finally:
        trainer.model.gradient_checkpointing_disable()
    torch.testing.assert_close(packed_loss, plain_loss, **LOSS_TOL)
    assert packed_grads.keys() == plain_grads.keys()
    scale = max(g.abs().max().item() for g in plain_grads.values())
    for name, grad in plain_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=GRAD_RTOL, atol=GRAD_ATOL_SCALE * scale, msg=name)


def test_uncovered_attention_falls_back_with_a_warning(setup, monkeypatch, caplog):
    """An attention kernel that takes no 4-D mask: the plain pass runs, and a warning says why, once."""
    from vlm_r1.trainer import shared_prompt

    trainer, batches = setup
    plain = _logps_and_entropies(trainer, batches[1], 2 * G, packed=False)[0]
    monkeypatch.setattr(shared_prompt, "_ATTENTION", ("flash_attention_2",))  # as if sdpa / eager were not allowed
    try:
        with caplog.at_level("WARNING"):
            for _ in range(2):
                fallback = _logps_and_entropies(trainer, batches[1], 2 * G, packed=True)[0]
    finally:
        trainer._packing_refusals.clear()
    torch.testing.assert_close(fallback, plain, rtol=0, atol=0)
    assert caplog.text.count("share_prompt_tokens: log-prob pass not packed") == 1
    assert "takes no 4-D mask" in caplog.text


def test_group_rows_needs_equal_tokens_and_pixels():
    from vlm_r1.trainer.shared_prompt import group_rows

    ids = torch.tensor([[1, 2, 3], [1, 2, 3], [1, 2, 4], [1, 2, 3]])
    mask = torch.ones_like(ids)
    pixels = [torch.zeros(4), torch.zeros(4), torch.zeros(4), torch.ones(4)]
    assert group_rows(ids, mask, pixels) == [[0, 1], [2], [3]]
    # equal tokens and pixels but transposed image grids (e.g. blank 224 x 112 and 112 x 224 images): the grids
    # place the positions, so the rows are not one group
    grids = [((1, 8, 16),), ((1, 16, 8),), ((1, 8, 16),), ((1, 8, 16),)]
    assert group_rows(ids, mask, pixels, grids) == [[0], [1], [2], [3]]


def test_a_chunk_of_text_only_rows_is_scored_without_image_fields(setup):
    """Rows with an image and rows without, chunked so that one chunk holds only text-only rows: the packed pass,
    the image-sharing plain pass and TRL's pass agree (TRL's own chunking would hand that chunk empty pixels)."""
    from test_shared_encoding import _image

    trainer, _ = setup
    rows = [{"prompt": [{"role": "user", "content": "Find the red circle."}], "images": [_image(0)]},
            {"prompt": [{"role": "user", "content": "Say hello in a sentence."}], "images": []}]  # fmt: skip
    inputs = trainer._generate_and_score_completions([row for row in rows for _ in range(G)])
    mask = inputs["completion_mask"].bool()
    plain = _logps_and_entropies(trainer, inputs, G, packed=False)
    packed = _logps_and_entropies(trainer, inputs, G, packed=True)
    trainer.args.share_image_encoding = False
    try:
        unshared = _logps_and_entropies(trainer, inputs, G, packed=False)
    finally:
        trainer.args.share_image_encoding = True
    for got, want in ((packed, plain), (unshared, plain)):
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g[mask], w[mask], **LOGP_TOL)


def test_needs_shared_image_encoding(setup):
    """With share_image_encoding off every pass is TRL's, whatever share_prompt_tokens says."""
    trainer, batches = setup
    counter = LanguageModelTokens(trainer.model)
    trainer.args.share_image_encoding = False
    try:
        _logps_and_entropies(trainer, batches[1], 2 * G, packed=True)
    finally:
        trainer.args.share_image_encoding = True
    ids = batches[1]
    assert counter.count == 2 * G * (ids["prompt_ids"].size(1) + ids["completion_ids"].size(1))


def test_refuses_a_repeated_or_completion_image_token(setup):
    from vlm_r1.trainer.shared_prompt import why_not_packed

    trainer, batches = setup
    ids, _, fields = _scored(batches[1])
    clen = batches[1]["completion_ids"].size(1)
    assert why_not_packed(trainer.model, ids, clen, **fields) is None
    image = trainer.model.config.image_token_id
    in_completion = ids.clone()
    in_completion[0, -1] = image
    assert "completion holds an image token" in why_not_packed(trainer.model, in_completion, clen, **fields)
    ends_prompt = ids.clone()
    ends_prompt[0, -clen - 1] = image
    assert "prompt ends with an image" in why_not_packed(trainer.model, ends_prompt, clen, **fields)
