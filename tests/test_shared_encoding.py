"""Sharing the image encoding across a GRPO group changes speed, not results.

For tiny Qwen2-VL, Qwen2.5-VL and InternVL models, the trainer with ``share_image_encoding`` on and off
must give the same per-token log-probs, loss and gradients (vision tower trainable or frozen; one or two
images per row), and the same tokens under greedy decoding. The comparisons use float32 and these
tolerances (``torch.testing.assert_close``):

* log-probs: rtol 1e-5, atol 1e-5 (values are about -7; batching order moves them by ~1e-6);
* loss: rtol 1e-5, atol 1e-7;
* gradients: rtol 1e-4, atol 1e-6 x the largest gradient entry of the unshared pass (the shared pass sums
  the G rows' feature gradients before the vision backward, the unshared pass sums parameter gradients
  after it: same sum, different order).

Each test also checks that sharing happened: the vision tower sees each distinct image once.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from PIL import Image

G = 4  # completions per prompt
MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "internvl")
LOGP_TOL = {"rtol": 1e-5, "atol": 1e-5}
LOSS_TOL = {"rtol": 1e-5, "atol": 1e-7}
GRAD_RTOL, GRAD_ATOL_SCALE = 1e-4, 1e-6


def _image(seed: int, size=(112, 112)) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def _rows(images_per_row: int) -> list[dict]:
    """Two prompts of different length (so one is left-padded); the second has `images_per_row` images."""
    return [
        {"prompt": [{"role": "user", "content": "Find the red circle."}], "images": [_image(0)]},
        {
            "prompt": [{"role": "user", "content": "Count the shapes in these pictures, then answer."}],
            "images": [_image(1, (140, 112)), _image(2)][:images_per_row],
        },
    ]


def _perturb(model: torch.nn.Module) -> None:
    """Random init gives near-constant greedy output; larger weights make tokens depend on the input."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 1.0 if "embed" in name else 0.15, generator=g)


def _reward(completions, **kwargs):
    return [float(len(str(c)) % 7) for c in completions]


def _trainer(model_dir, model_type, tmp_path, share=True, **config):
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlm_r1.config import VLMGRPOConfig
    from vlm_r1.modules import get_module
    from vlm_r1.trainer.grpo import VLMGRPOTrainer

    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    _perturb(model)
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    settings = {
        "output_dir": str(tmp_path / "out"),
        "use_cpu": True,
        "bf16": False,
        "per_device_train_batch_size": 2 * G,
        "num_generations": G,
        "max_completion_length": 8,
        "report_to": "none",
        "seed": 0,
        "share_image_encoding": share,
        "share_prompt_tokens": False,  # tested on its own in test_shared_prompt.py
    }
    args = VLMGRPOConfig(**{**settings, **config})
    return VLMGRPOTrainer(
        model=model,
        reward_funcs=[_reward],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["unused: batches are built by the tests"]}),
        processing_class=processor,
        vlm_module=get_module(model_type),
    )


class VisionCounter:
    """Counts the image units (Qwen: images; InternVL: tiles) the vision tower encodes."""

    def __init__(self, model):
        from vlm_r1.trainer.shared_vision import find_vision_language_model

        inner = find_vision_language_model(model)
        tower = getattr(inner, "visual", None) or inner.vision_tower
        self.count = 0
        tower.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        grid = kwargs.get("grid_thw")
        if grid is None and len(args) > 1:
            grid = args[1]
        pixels = args[0] if args else kwargs["pixel_values"]
        self.count += len(grid) if grid is not None else pixels.size(0)


@pytest.fixture(scope="module", params=MODEL_TYPES)
def setup(request, tiny_model_dir, tmp_path_factory):
    """One trainer per model type, plus generated batches (one- and two-image rows) to score."""
    model_type = request.param
    trainer = _trainer(tiny_model_dir(model_type), model_type, tmp_path_factory.mktemp(model_type))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, read by the loss
    counter = VisionCounter(trainer.model)
    batches = {}
    for images_per_row in (1, 2):
        rows = [row for row in _rows(images_per_row) for _ in range(G)]  # what RepeatSampler yields
        counter.count = 0
        batches[images_per_row] = trainer._generate_and_score_completions(rows)
        distinct = 1 + images_per_row
        if model_type != "internvl":  # InternVL counts tiles, checked in the log-prob test
            assert counter.count == distinct, "generation encoded a repeated image"
    return model_type, trainer, counter, batches


def _logp_kwargs(inputs):
    keys = ("pixel_values", "image_grid_thw", "num_images", "num_tiles", "mm_token_type_ids", "token_type_ids")
    return {k: inputs[k] for k in keys if k in inputs}


def _logps(trainer, inputs, batch_size):
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    with torch.no_grad():
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, inputs["completion_ids"].size(1), batch_size=batch_size, **_logp_kwargs(inputs)
        )
    return logps


def _shuffled(inputs):
    """The rows in a random order, as TRL's _prepare_inputs hands them to the training pass."""
    from trl.trainer.utils import shuffle_sequence_dict, split_pixel_values_by_grid, unsplit_pixel_values_by_grid

    torch.manual_seed(1)
    return unsplit_pixel_values_by_grid(shuffle_sequence_dict(split_pixel_values_by_grid(dict(inputs))))


def _loss_and_grads(trainer, inputs):
    trainer.model.zero_grad(set_to_none=True)
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def _set_share(trainer, share: bool):
    trainer.args.share_image_encoding = share


@pytest.mark.parametrize("images_per_row", [1, 2])
def test_logps_match_and_vision_runs_once_per_image(setup, images_per_row):
    model_type, trainer, counter, batches = setup
    inputs = batches[images_per_row]
    if model_type != "internvl":
        inputs = _shuffled(inputs)
    _assert_shared_logps_match(trainer, counter, inputs)


def _assert_shared_logps_match(trainer, counter, inputs):
    """Log-probs with sharing equal those without, for the whole batch in one chunk and in chunks that cut groups
    apart; with one chunk, the vision tower sees each distinct unit (image or tile) once."""
    for batch_size in (2 * G, 3):
        _set_share(trainer, False)
        counter.count = 0
        plain = _logps(trainer, inputs, batch_size)
        plain_units = counter.count
        _set_share(trainer, True)
        counter.count = 0
        torch.testing.assert_close(_logps(trainer, inputs, batch_size), plain, **LOGP_TOL)
        if batch_size == 2 * G:
            assert counter.count * G == plain_units, (counter.count, plain_units)


def test_internvl_images_cut_into_tiles_are_encoded_once_per_group(tiny_model_dir, tmp_path):
    """Non-square images that InternVL's processor cuts into several tiles plus a thumbnail (TRL's ``num_tiles``
    path; the rows above fit one tile each), in order and shuffled: the same log-probs, each tile encoded once."""
    trainer = _trainer(tiny_model_dir("internvl"), "internvl", tmp_path)
    counter = VisionCounter(trainer.model)
    rows = [{"prompt": [{"role": "user", "content": "Find the red circle."}], "images": [_image(0, (300, 100))]},
            {"prompt": [{"role": "user", "content": "Count the shapes in these pictures, then answer."}],
             "images": [_image(1, (100, 300)), _image(2)]}]  # fmt: skip
    generated = trainer._generate_and_score_completions([row for row in rows for _ in range(G)])
    assert max(generated["num_tiles"]) > 1, generated["num_tiles"]  # the case under test: several tiles per image
    for inputs in (generated, _shuffled(generated)):
        _assert_shared_logps_match(trainer, counter, inputs)


@pytest.mark.parametrize("trainable_vision", [True, False])
@pytest.mark.parametrize("images_per_row", [1, 2])
def test_loss_and_gradients_match(setup, images_per_row, trainable_vision):
    from vlm_r1.trainer.shared_vision import find_vision_language_model

    model_type, trainer, _, batches = setup
    inputs = dict(batches[images_per_row])
    inputs["advantages"] = torch.linspace(-1.0, 1.0, inputs["completion_ids"].size(0))  # non-zero gradients
    inner = find_vision_language_model(trainer.model)
    tower = getattr(inner, "visual", None) or inner.vision_tower
    tower.requires_grad_(trainable_vision)
    try:
        _set_share(trainer, False)
        plain_loss, plain_grads = _loss_and_grads(trainer, inputs)
        _set_share(trainer, True)
        shared_loss, shared_grads = _loss_and_grads(trainer, inputs)
    finally:
        tower.requires_grad_(True)
        _set_share(trainer, True)
    torch.testing.assert_close(shared_loss, plain_loss, **LOSS_TOL)
    assert shared_grads.keys() == plain_grads.keys()
    tower_ids = {id(p) for p in tower.parameters()}
    vision_names = {n for n, p in trainer.model.named_parameters() if id(p) in tower_ids}
    assert bool(vision_names & plain_grads.keys()) == trainable_vision
    scale = max(g.abs().max().item() for g in plain_grads.values())
    for name, grad in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, rtol=GRAD_RTOL, atol=GRAD_ATOL_SCALE * scale, msg=name)


@pytest.mark.parametrize("model_type", (*MODEL_TYPES, "qwen3_vl"))
def test_greedy_generation_gives_identical_tokens(tiny_model_dir, tmp_path, model_type):
    """Greedy decoding (with a repetition penalty, which reads the prompt) gives the same tokens either way; for
    Qwen3-VL too, whose generation is shared (its log-prob and training passes are TRL's: DeepStack features)."""
    config = {"generation_kwargs": {"do_sample": False}, "repetition_penalty": 1.3, "max_completion_length": 12}
    trainer = _trainer(tiny_model_dir(model_type), model_type, tmp_path, **config)
    from trl.data_utils import prepare_multimodal_messages

    prompts = [prepare_multimodal_messages(r["prompt"], r["images"]) for r in _rows(2) for _ in range(G)]
    results = {}
    for share in (False, True):
        _set_share(trainer, share)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            prompt_ids, completion_ids, *_ = trainer._generate(prompts)
        results[share] = (prompt_ids, completion_ids)
        # transformers 5.24 renamed past_key_values to cache and warns at every call with the old name (the default
        # job printed two warnings per step)
        assert not [w for w in caught if "past_key_values" in str(w.message)], share
    assert results[True] == results[False]
    assert not trainer._prefill_refusals, trainer._prefill_refusals  # the shared prefill ran, no fallback
    distinct = {tuple(ids) for ids in results[True][1]}
    assert len(distinct) == 2, "the two prompts should give different completions (weights are perturbed)"


def test_generation_without_a_cache_falls_back_to_trls_path(tiny_model_dir, tmp_path):
    """The shared prefill is a key/value cache: with use_cache off, generate re-ran the prompt without its images."""
    config = {"generation_kwargs": {"do_sample": False, "use_cache": False}, "max_completion_length": 8}
    trainer = _trainer(tiny_model_dir("qwen2_vl"), "qwen2_vl", tmp_path, **config)
    from trl.data_utils import prepare_multimodal_messages

    prompts = [prepare_multimodal_messages(r["prompt"], r["images"]) for r in _rows(2) for _ in range(G)]
    results = {}
    for share in (False, True):
        _set_share(trainer, share)
        results[share] = trainer._generate(prompts)[:2]
    assert results[True] == results[False]
    assert any("use_cache=False" in reason for reason in trainer._prefill_refusals)


def test_flag_off_is_trls_path(tiny_model_dir, tmp_path):
    from trl.data_utils import prepare_multimodal_messages

    from vlm_r1.trainer.shared_prefill import SharedRows

    trainer = _trainer(tiny_model_dir("qwen2_vl"), "qwen2_vl", tmp_path, share=False)
    prompts = [prepare_multimodal_messages(r["prompt"], r["images"]) for r in _rows(1) for _ in range(G)]
    _, _, fields = trainer._tokenize_prompts(prompts)
    assert not isinstance(fields, SharedRows) and fields["image_grid_thw"].size(0) == 2 * G
    _set_share(trainer, True)
    prompt_ids, _, fields = trainer._tokenize_prompts(prompts)
    assert isinstance(fields, SharedRows) and fields["image_grid_thw"].size(0) == 2 and len(prompt_ids) == 2 * G


def test_group_identical_needs_exact_equality():
    from vlm_r1.trainer.shared_vision import group_identical

    a = torch.zeros(1000)
    b = a.clone()
    b[1] = 1e-30  # not on the sampled grid, so only the exact check can tell them apart
    firsts, assignment = group_identical([a, b, a.clone(), torch.ones(3)])
    assert firsts == [0, 1, 3] and assignment == [0, 1, 0, 2]


def test_gradient_checkpointing_keeps_gradients(setup):
    """Shared encoding under gradient checkpointing gives the plain pass's loss and gradients."""
    _, trainer, _, batches = setup
    inputs = dict(batches[2])
    inputs["advantages"] = torch.linspace(-1.0, 1.0, inputs["completion_ids"].size(0))
    _set_share(trainer, False)
    plain_loss, plain_grads = _loss_and_grads(trainer, inputs)
    trainer.model.gradient_checkpointing_enable({"use_reentrant": False})
    try:
        _set_share(trainer, True)
        shared_loss, shared_grads = _loss_and_grads(trainer, inputs)
    finally:
        trainer.model.gradient_checkpointing_disable()
    torch.testing.assert_close(shared_loss, plain_loss, **LOSS_TOL)
    scale = max(g.abs().max().item() for g in plain_grads.values())
    for name, grad in plain_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, rtol=GRAD_RTOL, atol=GRAD_ATOL_SCALE * scale, msg=name)
