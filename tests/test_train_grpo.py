"""End to end: `vlm_r1.train.main` runs GRPO on a tiny model and synthetic REC data, on CPU."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vlm_r1.synthetic import write_split

CUSTOM_REWARD = '''
def digits(completions, **kwargs):
    """Share of digit characters: varies between random completions, so advantages are non-zero."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]
'''


@pytest.fixture(scope="module")
def rec_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rec")
    return write_split(root, "rec", "train", 16, seed=0)


def _recipe(grpo_recipe, model_dir, data, **overrides):
    return grpo_recipe(
        model_dir,
        data,
        reward_module=("my_rewards", CUSTOM_REWARD),
        reward_funcs=["think_format", "iou", "my_rewards:digits"],
        max_completion_length=12,
        **overrides,
    )


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_grpo_end_to_end(tiny_model_dir, rec_data, tmp_path, grpo_recipe, beta):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlm_r1.train import main

    model_dir = tiny_model_dir("qwen2_vl")
    before = {k: v.clone() for k, v in AutoModelForImageTextToText.from_pretrained(model_dir).state_dict().items()}
    recipe = _recipe(grpo_recipe, model_dir, rec_data)
    # A CLI flag overrides the recipe (TrlParser): beta comes from the command line.
    summary = main(["--config", str(recipe), "--beta", str(beta)])

    out = tmp_path / "out"
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert summary["reward_start"] is not None and math.isfinite(summary["reward_end"])
    if beta:
        assert any(entry.get("kl", 0) > 0 for entry in summary["log_history"])
    reloaded = AutoModelForImageTextToText.from_pretrained(out)
    AutoProcessor.from_pretrained(out)
    after = reloaded.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before), f"unchanged: {sorted(set(before) - set(changed))[:5]}"
    for value in after.values():
        assert torch.isfinite(value).all()


@pytest.mark.parametrize(
    "model_type, written, expected",
    [
        ("qwen2_vl", "[100, 200, 500, 1000]", (20.0, 20.0, 100.0, 100.0)),  # 0-1000 of the 200x100 image
        ("qwen2_5_vl", "[112, 56, 224, 112]", (100.0, 50.0, 200.0, 100.0)),  # pixels of its 224x112 resize
    ],
)
def test_rewards_get_pixel_boxes(tiny_model_dir, model_type, written, expected):
    """The trainer converts boxes from the model's frame to original pixels before any reward sees them."""
    from transformers import AutoProcessor

    from vlm_r1.modules import get_module
    from vlm_r1.rewards import get_reward
    from vlm_r1.trainer.grpo import VLMGRPOTrainer

    trainer = VLMGRPOTrainer.__new__(VLMGRPOTrainer)  # only the conversion helper is exercised here
    trainer.vlm_module = get_module(model_type)
    trainer.processing_class = AutoProcessor.from_pretrained(tiny_model_dir(model_type))
    trainer.processing_class.image_processor.size = {"shortest_edge": 224 * 112, "longest_edge": 224 * 112}
    row = {"image_sizes": [[200, 100]]}
    answer = trainer.answer_in_pixels(row, f"<think>x</think><answer>{written}</answer>")
    assert answer.detections[0].box == pytest.approx(expected)
    iou = get_reward("iou")
    assert iou(["ignored"], solution=[json.dumps(expected)], answers=[answer]) == pytest.approx([1.0])


def test_unknown_option_in_recipe_is_refused(tiny_model_dir, rec_data, grpo_recipe):
    from vlm_r1.train import parse_args

    recipe = _recipe(grpo_recipe, tiny_model_dir("qwen2_vl"), rec_data, not_an_option=3)
    with pytest.raises((ValueError, SystemExit)):
        parse_args(["--config", str(recipe)])


def test_reward_weights_and_sampling_options_are_honoured(tiny_model_dir, rec_rows, grpo_run, monkeypatch):
    """reward_weights weight the logged total; temperature and top_p reach the generation config that samples."""
    from vlm_r1.trainer.grpo import VLMGRPOTrainer

    seen = []
    original = VLMGRPOTrainer._generate_single_turn

    def record(self, *args, **kwargs):
        seen.append((self.generation_config.temperature, self.generation_config.top_p, self.generation_config.do_sample))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(VLMGRPOTrainer, "_generate_single_turn", record)
    summary = grpo_run(
        tiny_model_dir("qwen2_vl"),
        rec_rows,
        reward_funcs=["think_format", "varying_rewards:bracket_share"],
        reward_weights=[0.0, 2.0],
        temperature=0.7,
        top_p=0.9,
    )
    assert seen and all(entry == (0.7, 0.9, True) for entry in seen)
    for entry in (e for e in summary["log_history"] if "reward" in e):
        assert entry["reward"] == pytest.approx(2.0 * entry["rewards/bracket_share/mean"], abs=1e-6)


def test_options_grpo_would_ignore_are_refused(parse_only_argv):
    from vlm_r1.train import parse_args

    base = parse_only_argv
    for extra, message in ((["--data_seed", "7"], "data_seed has no effect in GRPO"),
                           (["--train_sampling_strategy", "group_by_length"], "train_sampling_strategy has no effect"),
                           (["--label_smoothing_factor", "0.1"], "label_smoothing_factor has no effect")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_args(base + extra)
