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


@pytest.mark.parametrize("eval_greedy", [True, False])
def test_eval_greedy_decodes_eval_data_greedily(tiny_model_dir, rec_rows, grpo_run, monkeypatch, eval_greedy):
    """With eval_greedy, the evaluations during training decode greedily, one completion per prompt, while training
    samples. With the learning rate at 0 the weights never change, so two evaluations (before the first step and
    after it) must then give the same completions; sampled evaluations (the control) do not."""
    from vlm_r1.trainer.grpo import VLMGRPOTrainer

    scored = []  # (model in training mode, prompts, completions) per scored batch
    original = VLMGRPOTrainer._calculate_rewards

    def capture(self, inputs, prompts, completions, completion_ids_list):
        scored.append((self.model.training, [row["problem"] for row in inputs], list(completions)))
        return original(self, inputs, prompts, completions, completion_ids_list)

    monkeypatch.setattr(VLMGRPOTrainer, "_calculate_rewards", capture)
    summary = grpo_run(
        tiny_model_dir("qwen2_vl"), rec_rows, eval_data=[str(rec_rows)], eval_strategy="steps", eval_steps=1,
        eval_on_start=True, max_steps=1, learning_rate=0.0, eval_greedy=eval_greedy, max_completion_length=12,
    )  # fmt: skip
    evaluations = [(prompts, completions) for training, prompts, completions in scored if not training]
    assert any(training for training, _, _ in scored)
    assert sum("eval_reward" in entry for entry in summary["log_history"]) == 2
    if eval_greedy:
        assert len(evaluations) == 2  # 8 rows, one completion each, in one eval batch of 8
        (prompts_0, completions_0), (prompts_1, completions_1) = evaluations
        assert len(prompts_0) == len(set(prompts_0)) == 8 and prompts_0 == prompts_1
        assert completions_0 == completions_1
    else:  # TRL's default: num_generations samples of each prompt
        assert len(evaluations) == 8
        first = [c for _, completions in evaluations[:4] for c in completions]
        second = [c for _, completions in evaluations[4:] for c in completions]
        assert first != second


def test_eval_greedy_refuses_what_it_cannot_honour(parse_only_argv):
    from vlm_r1.train import parse_args

    evaluating = ["--eval_data", "b.jsonl", "--eval_strategy", "steps", "--eval_steps", "10"]
    assert parse_args(parse_only_argv + evaluating + ["--eval_greedy", "true"])[2].num_generations_eval == 1
    for extra, message in ((["--eval_greedy", "true"], "eval_greedy decodes eval_data greedily during training: set"),
                           ([*evaluating, "--eval_greedy", "true", "--num_generations_eval", "4"],
                            "num_generations_eval must be 1"),
                           ([*evaluating, "--eval_greedy", "true", "--use_vllm", "true"], "not supported with use_vllm")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_args(parse_only_argv + extra)


def test_eval_greedy_reward_is_what_vlm_r1_eval_reports(tmp_path, grpo_run, monkeypatch):
    """On the shipped warm start, the greedy eval during training writes the completions `vlm-r1 eval` writes for
    the same rows, and its logged iou_acc is the evaluator's Acc@0.5."""
    from vlm_r1.config import ModelArguments
    from vlm_r1.data import load_rows
    from vlm_r1.evaluation.runner import GenerationSettings, evaluate_samples
    from vlm_r1.loading import load_policy
    from vlm_r1.pipeline import SHIPPED_WARM_START
    from vlm_r1.rewards.parsing import completion_text
    from vlm_r1.trainer.grpo import VLMGRPOTrainer

    rows = write_split(tmp_path / "data", "rec", "test", 24, seed=0, image_size=112)
    evaluated = {}  # row ("file:line") -> greedy completion in the evaluation during training
    original = VLMGRPOTrainer._calculate_rewards

    def capture(self, inputs, prompts, completions, completion_ids_list):
        if not self.model.training:
            for row, completion in zip(inputs, completions, strict=True):
                evaluated[row["source"]] = completion_text(completion)
        return original(self, inputs, prompts, completions, completion_ids_list)

    monkeypatch.setattr(VLMGRPOTrainer, "_calculate_rewards", capture)
    summary = grpo_run(
        SHIPPED_WARM_START, rows, eval_data=[str(rows)], eval_strategy="steps", eval_steps=1, max_steps=1,
        learning_rate=0.0, eval_greedy=True, reward_funcs=["iou_acc"], question_template="{question}",
        max_completion_length=40, dtype="float32",
    )  # fmt: skip
    model, processor, module = load_policy(ModelArguments(model_name_or_path=str(SHIPPED_WARM_START), dtype="float32"))
    reference = evaluate_samples(model, processor, module, list(load_rows(rows)), "{question}", None,
                                 GenerationSettings(batch_size=24, max_new_tokens=40))  # fmt: skip
    assert evaluated == {p["source"]: p["completions"][0] for p in reference["predictions"]}
    logged = next(entry["eval_rewards/iou_acc/mean"] for entry in summary["log_history"] if "eval_reward" in entry)
    assert logged == pytest.approx(reference["metrics"]["rec"]["acc@0.5"], abs=1e-6)


def test_greedy_version_decodes_as_the_evaluator():
    from transformers import GenerationConfig

    from vlm_r1.trainer.grpo import greedy_version

    sampling = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=5, repetition_penalty=1.3,
                                max_new_tokens=40, suppress_tokens=[7], eos_token_id=[1, 2], pad_token_id=0)  # fmt: skip
    greedy = greedy_version(sampling)
    assert (greedy.do_sample, greedy.temperature, greedy.top_p, greedy.top_k, greedy.repetition_penalty) == (
        False, None, None, None, 1.0)  # fmt: skip
    assert (greedy.max_new_tokens, greedy.suppress_tokens, greedy.eos_token_id) == (40, [7], [1, 2])
    assert (sampling.do_sample, sampling.temperature, sampling.repetition_penalty) == (True, 0.7, 1.3)  # untouched
