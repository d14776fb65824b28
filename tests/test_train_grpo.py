"""End to end: `vlm_r1.train.main` runs GRPO on a tiny model and synthetic REC data, on CPU."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from vlm_r1.synthetic import write_split

REPO = Path(__file__).resolve().parents[1]

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
                           (["--label_smoothing_factor", "0.1"], "label_smoothing_factor has no effect"),
                           (["--lora_r", "8", "--lora_dropout", "0.1"], "lora_r, lora_dropout only apply with use_peft"),
                           (["--lora_vision", "true"], "lora_vision only applies with use_peft"),
                           (["--max_train_samples", "0"], "max_train_samples must be >= 1"),
                           (["--max_steps", "5", "--num_train_epochs", "2"], "max_steps and num_train_epochs are both given"),
                           (["--default_reward", "bogus"], "default_reward: unknown accuracy reward 'bogus'"),
                           (["--min_pixels", "0"], "min_pixels must be >= 1"),
                           (["--min_pixels", "60000", "--max_pixels", "20000"], "min_pixels .60000. is above max_pixels"),
                           (["--question_template", ""], "question_template must contain"),
                           (["--question_template", "Where?"], "question_template must contain"),
                           (["--vllm_mode", "server"], "vllm_mode only applies with use_vllm true"),
                           (["--remove_unused_columns", "true"], "remove_unused_columns would drop the columns"),
                           (["--use_transformers_continuous_batching", "true"], "is for text-only models"),
                           (["--use_peft", "true", "--lora_target_modules", "q_proj", "lm_head"],
                            "lora_target_modules may not include lm_head"),
                           (["--use_vllm", "true", "--ds3_gather_for_generation", "false"],
                            "ds3_gather_for_generation false only applies to generation without vLLM"),
                           (["--fp16", "true", "--bf16", "false"], "fp16 does nothing on the CPU"),
                           (["--model_name_or_path", ".", "--model_revision", "v2"],
                            "model_revision 'v2' only applies to a hub id, and . is a local folder")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_args(base + extra)
    assert parse_args(base + ["--default_reward", "rec", "--max_steps", "5"])[0].default_reward == "rec"


FAILING_LATE = [  # (flags, message): each used to pass the option checks and fail after the data and model loaded
    (["--reward_funcs", "iou_accc"], "reward_funcs: unknown reward 'iou_accc'"),
    # a recipe's two weights beside one misspelt reward: the name is the mistake to report, not the count
    (["--reward_funcs", "short_answer", "--reward_weights", "1", "0.1"], "reward_funcs: unknown reward 'short_answer'"),
    (["--reward_funcs", "iou_acc,think_format"], r"separate the names with spaces \(--reward_funcs iou_acc think_format"),
    (["--reward_funcs", "iou_acc", "think_format", "--reward_weights", "1", "2", "3"],
     "reward_weights has 3 values for 2 reward_funcs"),
    (["--eval_strategy", "steps", "--eval_steps", "1"], "eval_strategy 'steps' needs eval_data"),
    (["--eval_on_start", "true"], "eval_on_start needs eval_data"),
    (["--image_root", "no_such_root"], "image_root no_such_root: no such folder"),  # one error per row before
    (["--attn_implementation", "flash_attn"], "attn_implementation 'flash_attn' is not one transformers knows: eager, "),
    (["--lr_scheduler_kwargs", '{"min_lr": 1e-6}'], "lr_scheduler_kwargs min_lr are not taken by lr_scheduler_type 'linear'"),
    (["--lr_scheduler_type", "cosine_with_min_lr"], "'cosine_with_min_lr' needs its floor"),
    (["--temperature", "0"], "temperature must be > 0"),
    (["--top_k", "-5"], "top_k must be >= 0"),
    (["--top_p", "0"], r"top_p must be in \(0, 1\]"),
    (["--max_completion_length", "0"], "max_completion_length must be >= 1"),
    (["--sync_ref_model", "true"], "sync_ref_model updates the reference model, and beta 0 has none"),
    (["--sync_ref_model", "true", "--beta", "0.04", "--use_peft", "true"], "sync_ref_model does not apply with use_peft"),
]
IGNORED_WITHOUT_EVAL_DATA = [  # (flags, message): each was parsed and then never read
    (["--num_generations_eval", "3"], "num_generations_eval only applies when the run evaluates"),
    (["--per_device_eval_batch_size", "3"], "per_device_eval_batch_size only applies when the run evaluates"),
    (["--load_best_model_at_end", "true", "--metric_for_best_model", "reward", "--save_strategy", "no"],
     "load_best_model_at_end, metric_for_best_model only apply when the run evaluates"),
    (["--generation_kwargs", '{"do_sample": false}'], "do_sample false makes every completion of a group the same"),
]
OUTSIDE_THEIR_VALUES = [  # (flags, message): each passed, loaded the model and failed at the first step
    (["--loss_type", "gspo"], r"loss_type 'gspo' is not one of grpo, dr_grpo, .* \(GSPO is importance_sampling_level"),
    (["--loss_type", "DAPO"], "loss_type 'DAPO' is not one of"),
    (["--scale_rewards", "foo"], "scale_rewards 'foo' is not one of group, batch, none"),
    (["--importance_sampling_level", "seq"], "importance_sampling_level 'seq' is not one of token, sequence"),
    (["--multi_objective_aggregation", "mean"], "multi_objective_aggregation 'mean' is not one of"),
]
READ_ONLY_UNDER_ANOTHER_SETTING = [  # (flags, message): each was parsed and never read (TRL reads it only under another)
    (["--ref_model_sync_steps", "64"], "ref_model_sync_steps only applies with sync_ref_model true"),
    (["--entropy_target", "0.3"], "entropy_target only applies with use_adaptive_entropy true"),
    (["--sapo_temperature_pos", "2"], "sapo_temperature_pos only applies with loss_type sapo"),
    (["--vespo_k_pos", "3"], "vespo_k_pos only applies with loss_type vespo"),
    (["--loss_type", "sapo", "--epsilon_high", "0.28"], r"epsilon_high only applies with a clipped loss_type \(not sapo"),
    (["--loss_type", "cispo", "--delta", "2"], "delta only applies with loss_type grpo, bnpo, dr_grpo, dapo or luspo"),
    (["--num_completions_to_print", "2"], "num_completions_to_print only applies with log_completions true"),
    (["--use_bias_correction_kl", "false"], r"use_bias_correction_kl only applies with beta > 0"),
    (["--greater_is_better", "true"], "greater_is_better only applies with metric_for_best_model"),
    (["--hub_model_id", "me/run"], "hub_model_id only applies with push_to_hub true"),
    (["--gradient_checkpointing", "false", "--gradient_checkpointing_kwargs", '{"use_reentrant": false}'],
     "gradient_checkpointing_kwargs only applies with gradient_checkpointing true"),
    (["--optim_target_modules", "q_proj"], r"optim_target_modules only applies with an optim that targets modules"),
    (["--train_data", "a.jsonl", "./a.jsonl"], r"train_data names .*a.jsonl more than once"),
    (["--optim_args", "momentum=0.9"], "optim_args only applies with an optimizer that reads it, and optim adamw_torch"),
    (["--optim", "sgd", "--optim_args", "momentum=0.9,betas=0.8"], r"optim_args betas: optim sgd does not read it \(it reads momentum"),
    (["--optim", "sgd", "--optim_args", "momentum:0.9"], "optim_args: 'momentum:0.9' is not key=value"),
    (["--dataloader_persistent_workers", "true"], "dataloader_persistent_workers only applies with dataloader_num"),
    (["--eval_do_concat_batches", "false"], "eval_do_concat_batches only applies when the run evaluates"),
    (["--max_tool_calling_iterations", "3"], "max_tool_calling_iterations has no effect in vlm-r1 "),
    (["--bf16_full_eval", "true"], "bf16_full_eval has no effect in vlm-r1 "),
    (["--eval_data", "e.jsonl", "--eval_strategy", "steps", "--eval_steps", "1", "--eval_accumulation_steps", "2"],
     "eval_accumulation_steps has no effect in vlm-r1 "),
    (["--length_column_name", "n"], "length_column_name has no effect"),
    (["--do_train", "true"], "do_train has no effect in vlm-r1 .example scripts read it"),
    (["--use_peft", "true", "--disable_dropout", "true", "--lora_dropout", "0.1"],
     "disable_dropout also zeroes the LoRA adapters' dropout, so lora_dropout 0.1 would be ignored"),  # (the default
    # 0.05 may be zeroed: see test_the_fixed_value_sets_...)
]
MISSPELT_FLAGS = [
    (["--learning_rat", "1e-5"], r"learning_rat \(did you mean learning_rate\?\): no such option of vlm-r1 train"),
    (["--warmup_ratio", "0.1"], r"warmup_ratio \(gone; use warmup_steps: a value below 1 is a fraction"),
    (["--max_prompt_length=64"], r"max_prompt_length \(gone; use nothing: TRL 1.x does not cut prompts"),
]


@pytest.mark.parametrize("extra,message", FAILING_LATE + IGNORED_WITHOUT_EVAL_DATA + OUTSIDE_THEIR_VALUES
                         + READ_ONLY_UNDER_ANOTHER_SETTING + MISSPELT_FLAGS,
                         ids=lambda v: v if isinstance(v, str) and not v.startswith("--") else None)
def test_options_that_would_fail_late_or_be_ignored_are_refused_when_parsed(parse_only_argv, extra, message):
    from vlm_r1.recipe import OptionError
    from vlm_r1.train import parse_args

    with pytest.raises(OptionError, match=message):
        parse_args(parse_only_argv + extra)


def test_documented_overrides_of_the_shipped_recipes_are_accepted(parse_only_argv):
    """What the option checks must not refuse: the rl_vs_sft benchmark's --save_strategy no over a recipe that keeps
    one checkpoint, GaLore with its target modules, and the pipeline's documented reward list equal to the recipe's."""
    from vlm_r1.train import parse_args

    recipe = ["--config", str(REPO / "recipes" / "tiny" / "rec_grpo.yaml")]
    assert parse_args(parse_only_argv + recipe + ["--save_strategy", "no"])[2].save_total_limit == 1
    for optim in ("galore_adamw", "apollo_adamw"):
        parse_args(parse_only_argv + ["--optim", optim, "--optim_target_modules", "q_proj"])
    args = parse_args(parse_only_argv + recipe + ["--reward_funcs", "iou_acc", "think_format"])
    assert args[0].reward_funcs == ["iou_acc", "think_format"] and args[2].reward_weights == [1.0, 0.1]


def test_the_optim_args_table_is_what_the_installed_transformers_reads(monkeypatch, tmp_path, parse_only_argv):
    """Every optimizer transformers offers is in the table, and for those that need no extra package the keys the
    table lists are exactly the keys transformers looks up (recorded by handing it a dict that notes each look-up),
    so an upgrade that changes either fails here. A key the optimizer reads is accepted."""
    import transformers.trainer
    from transformers import Trainer, TrainingArguments
    from transformers.training_args import OptimizerNames

    from vlm_r1.optim_args import KEYS_READ
    from vlm_r1.train import parse_args

    assert {o.value for o in OptimizerNames} == set(KEYS_READ)

    class NotingDict(dict):
        def __init__(self):
            super().__init__()
            self.asked = set()

        def get(self, key, default=None):
            self.asked.add(key)
            return super().get(key, default)

        def pop(self, key, *default):
            self.asked.add(key)
            return super().pop(key, *default)

        def __contains__(self, key):
            self.asked.add(key)
            return super().__contains__(key)

        def __bool__(self):  # transformers skips the look-ups of an empty optim_args
            return True

    for optim in ("sgd", "adagrad", "rmsprop", "adamw_torch", "adafactor"):
        noted = NotingDict()
        monkeypatch.setattr(transformers.trainer, "_parse_optim_args", lambda text: noted)
        Trainer.get_optimizer_cls_and_kwargs(TrainingArguments(output_dir=str(tmp_path), optim=optim, use_cpu=True))
        assert noted.asked == set(KEYS_READ[optim]), optim
    parse_args(parse_only_argv + ["--optim", "rmsprop", "--optim_args", "momentum=0.9, centered=true"])


def test_a_liger_kernel_config_without_use_liger_kernel_is_refused(tmp_path):  # a mapping: recipes only
    from vlm_r1.config import VLMGRPOConfig, check_conditional_options

    with pytest.raises(ValueError, match="liger_kernel_config only applies with use_liger_kernel true"):
        check_conditional_options(VLMGRPOConfig(output_dir=str(tmp_path), use_cpu=True, liger_kernel_config={"rope": True}))


def test_the_fixed_value_sets_are_trls_own_and_its_boolean_scale_rewards_are_read(parse_only_argv):
    """Every value the check lets through is one TRL's loss computes with (so the set cannot refuse a valid value
    TRL documents, nor pass one it fails on), and `--scale_rewards false` means TRL's False: none."""
    import inspect

    from trl import GRPOConfig, GRPOTrainer

    from vlm_r1.config import _CHOICES
    from vlm_r1.train import parse_args

    source = inspect.getsource(GRPOTrainer)
    loss_help = GRPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    for value in _CHOICES["loss_type"]:
        assert f'"{value}"' in source and f"'{value}'" in loss_help, value
    assert parse_args(parse_only_argv + ["--scale_rewards", "false"])[2].scale_rewards == "none"
    assert parse_args(parse_only_argv + ["--scale_rewards", "True"])[2].scale_rewards == "group"
    assert parse_args(parse_only_argv + ["--loss_type", "cispo"])[2].loss_type == "cispo"
    # disable_dropout with LoRA's default dropout (TRL recommends it with a reference model): the default is zeroed
    assert parse_args(parse_only_argv + ["--use_peft", "true", "--disable_dropout", "true"])[2].disable_dropout


def test_what_this_machine_lacks_is_refused_before_anything_loads(parse_only_argv, monkeypatch):
    import importlib.util

    from vlm_r1.config import check_installed
    from vlm_r1.recipe import OptionError
    from vlm_r1.train import parse_args

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))
    with pytest.raises(OptionError, match="use_vllm: vLLM is not installed here"):
        check_installed(parse_args(parse_only_argv + ["--use_vllm", "true"])[2])  # the recipe itself parses
    monkeypatch.setattr("transformers.integrations.get_available_reporting_integrations", lambda: ["tensorboard"])
    with pytest.raises(OptionError, match=r"report_to wandb: not installed here \(pip install wandb\); installed: "
                                          "tensorboard"):
        check_installed(parse_args(parse_only_argv + ["--report_to", "wandb"])[2])
    check_installed(parse_args(parse_only_argv + ["--report_to", "tensorboard"])[2])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "liger_kernel" else real_find_spec(name, *a))
    with pytest.raises(OptionError, match=r"use_liger_kernel: liger-kernel is not installed here"):
        check_installed(parse_args(parse_only_argv + ["--use_liger_kernel", "true"])[2])


def test_options_the_checkpoints_architecture_cannot_honour_are_refused_before_it_loads(tiny_model_dir, tmp_path,
                                                                                        monkeypatch):  # fmt: skip
    import vlm_r1.loading
    from vlm_r1.recipe import OptionError
    from vlm_r1.train import main

    monkeypatch.setattr(vlm_r1.loading, "load_policy", lambda *a, **k: pytest.fail("the model was loaded"))
    base = ["--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--train_data", str(tmp_path / "missing.jsonl"),
            "--output_dir", str(tmp_path / "out"), "--use_cpu", "true"]  # fmt: skip
    for extra, message in ((["--cast_lm_head_to_fp32", "true"], "cast_lm_head_to_fp32 is not supported for a qwen2_vl "
                            "checkpoint with tied word embeddings"),
                           (["--router_aux_loss_coef", "0.01"], "router_aux_loss_coef applies to Mixture-of-Experts "
                            "models, and this qwen2_vl checkpoint is not one")):  # fmt: skip
        with pytest.raises(OptionError, match=message):
            main(base + extra)


RECIPE_MISTAKES = [  # (recipe text, message)
    ("max_steps: 1.5\n", "max_steps: expected an integer, got 1.5"),
    ("max_steps: true\n", "max_steps: expected an integer, got True"),
    ("learning_rate: fast\n", "learning_rate: expected a number, got 'fast'"),
    ("reward_weights: [1.0, x]\n", r"reward_weights\[1\]: expected a number, got 'x'"),
    ("bf16: 1\n", "bf16: expected true or false, got 1"),
    ("output_dir: 2024\n", "output_dir: expected text, got 2024"),
    ("learning_rate: 1.0e-5\nseed: 3\nlearning_rate: 2.0e-5\n", "line 5: key 'learning_rate' is given twice .first on line 3."),
    ("max_step: 10\nrewards: [iou]\n", r"max_step \(did you mean max_steps\?\), rewards \(did you mean reward_funcs\?\) are no "
     "options of vlm-r1 train"),
    ("max_steps: 10\nnum_train_epochs: 3\n", "max_steps and num_train_epochs are both given"),
    # null, a list or a mapping where one value belongs: passed, then crashed after the model loaded, or (a bool)
    # silently read as false
    ("temperature: null\n", "temperature: null is not a value this option takes; leave the key out"),
    ("share_image_encoding: null\n", "share_image_encoding: null is not a value"),
    ("reward_funcs: null\n", "reward_funcs: null is not a value"),
    ("reward_weights: [1.0, null]\n", r"reward_weights\[1\]: null is not a value"),
    ("learning_rate: [0.001]\n", r"learning_rate: expected one value, got a list \[0.001\]"),
    ("question_template: {q: 1}\n", "question_template: expected one value, got a mapping"),
    ("reward_funcs: {iou_acc: 1}\n", r"reward_funcs\[0\]: expected one value, got a mapping"),
]


@pytest.mark.parametrize("text,message", RECIPE_MISTAKES)
def test_recipe_values_are_checked_against_their_fields(tmp_path, text, message):
    from vlm_r1.train import parse_args

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: x\nuse_cpu: true\n" + text)
    with pytest.raises(ValueError, match=re.escape(str(recipe)) + ": " + message):
        parse_args(["--config", str(recipe), "--train_data", "a.jsonl", "--output_dir", str(tmp_path / "o")])


def test_recipe_scalars_for_lists_and_integral_floats_are_read_as_meant(tmp_path):
    from vlm_r1.train import parse_args

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: x\nuse_cpu: true\ntrain_data: a.jsonl\nreward_funcs: iou_acc\n"
                      "reward_weights: 2\nmax_steps: 800.0\nlearning_rate: 1e-5\noutput_dir: out\n")
    data_args, _, training_args = parse_args(["--config", str(recipe)])
    assert data_args.train_data == ["a.jsonl"] and data_args.reward_funcs == ["iou_acc"]
    assert training_args.reward_weights == [2.0] and training_args.max_steps == 800
    assert isinstance(training_args.max_steps, int) and training_args.learning_rate == 1e-5


def test_an_option_given_twice_keeps_its_last_value_with_a_warning(parse_only_argv, caplog):
    """argparse dropped the first value silently (`--data a --data b` evaluated b alone). The last one still wins (a
    wrapper script's default, then its caller's override), and a warning says so."""
    from vlm_r1.evaluate import parse_args as parse_eval
    from vlm_r1.train import parse_args

    with caplog.at_level("WARNING", logger="vlm_r1"):
        assert parse_eval(["--model_name_or_path", "x", "--data", "a.jsonl", "--data", "b.jsonl"])[1].data == ["b.jsonl"]
    assert ("--data is given twice (--data, then --data): the last value is used (several values go after one flag: "
            "--data A B)") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="vlm_r1"):
        args = parse_args(parse_only_argv + ["--learning_rate", "1e-5", "--learning-rate=2e-5"])
    assert args[2].learning_rate == 2e-5
    assert "--learning_rate is given twice (--learning_rate, then --learning-rate): the last value is used\n" in \
        caplog.text + "\n"
    caplog.clear()
    with caplog.at_level("WARNING", logger="vlm_r1"):
        parse_eval(["--model_name_or_path", "x", "--data", "a.jsonl", "b.jsonl"])
    assert "given twice" not in caplog.text


def test_recipe_values_meant_for_other_options_are_refused(tmp_path):
    """The recipe's reward_weights were written for its reward_funcs: with other rewards on the command line they
    would weigh them by position. share_prompt_tokens given without share_image_encoding would be ignored."""
    from vlm_r1.train import parse_args

    recipe = tmp_path / "recipe.yaml"
    argv = ["--config", str(recipe), "--train_data", "a.jsonl", "--output_dir", str(tmp_path / "o")]
    recipe.write_text("model_name_or_path: x\nuse_cpu: true\nreward_funcs: [iou_acc, think_format]\n"
                      "reward_weights: [1.0, 0.1]\n")
    with pytest.raises(ValueError, match=r"--reward_funcs replaces the reward list of .*recipe.yaml \(\['iou_acc', "
                                         r"'think_format'\]\), whose "
                                         r"reward_weights \[1.0, 0.1\] were for that list"):
        parse_args(argv + ["--reward_funcs", "think_format", "iou"])
    args = parse_args(argv + ["--reward_funcs", "think_format", "iou", "--reward_weights", "0.1", "1"])
    assert args[0].reward_funcs == ["think_format", "iou"] and args[2].reward_weights == [0.1, 1.0]
    assert parse_args(argv + ["--reward_weights", "2", "1"])[2].reward_weights == [2.0, 1.0]
    with pytest.raises(ValueError, match="share_prompt_tokens only applies with share_image_encoding true"):
        parse_args(argv + ["--share_image_encoding", "false", "--share_prompt_tokens", "true"])
    assert not parse_args(argv + ["--share_image_encoding", "false"])[2].share_image_encoding  # the default stays


def test_the_command_line_sets_the_runs_length_over_the_recipe(tmp_path):
    """max_steps and num_train_epochs are one setting: the one given on the command line replaces the recipe's."""
    from vlm_r1.train import parse_args

    recipe = tmp_path / "recipe.yaml"
    argv = ["--config", str(recipe), "--train_data", "a.jsonl", "--output_dir", str(tmp_path / "o")]
    recipe.write_text("model_name_or_path: x\nuse_cpu: true\nbf16: false\nnum_train_epochs: 2\n")
    training_args = parse_args(argv + ["--max_steps", "5"])[2]
    assert (training_args.max_steps, training_args.num_train_epochs) == (5, 3.0)  # 3: the default, not used
    recipe.write_text("model_name_or_path: x\nuse_cpu: true\nbf16: false\nmax_steps: 800\n")
    training_args = parse_args(argv + ["--num_train_epochs", "2"])[2]
    assert (training_args.max_steps, training_args.num_train_epochs) == (-1, 2.0)
    training_args = parse_args(argv + ["--num-train-epochs=2"])[2]  # the dashed alias is the same option
    assert (training_args.max_steps, training_args.num_train_epochs) == (-1, 2.0)
    with pytest.raises(ValueError, match=r"num_train_epoch \(did you mean num_train_epochs\?\)"):  # refused, not
        parse_args(argv + ["--num_train_epoch", "2"])  # read as the option it abbreviates
    with pytest.raises(ValueError, match="the command line: max_steps and num_train_epochs are both given"):  # 3 is
        # the default value, but it was given
        parse_args(argv + ["--max_steps", "5", "--num_train_epochs", "3"])


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
    eval_keys = {key for entry in summary["log_history"] if "eval_reward" in entry for key in entry}
    meaningless = {"eval_loss", "eval_frac_reward_zero_std", "eval_reward_std", "eval_clip_ratio/region_mean"}
    assert eval_keys & meaningless == (set() if eval_greedy else meaningless)  # one completion a prompt: no spread
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
                           ([*evaluating, "--eval_greedy", "true", "--use_vllm", "true"], "not supported with use_vllm"),
                           ([*evaluating, "--eval_greedy", "true", "--load_best_model_at_end", "true",
                             "--save_strategy", "steps", "--save_steps", "10"], "eval_greedy logs no eval loss")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_args(parse_only_argv + extra)


def test_eval_greedy_reward_is_what_vlm_r1_eval_reports(tmp_path, grpo_run, monkeypatch):
    """On the shipped warm start, the greedy eval during training writes the completions `vlm-r1 eval` writes for
    the same rows, and its logged iou_acc is the evaluator's Acc@0.5: a mean over rows, also when the last eval
    batch is short (10 rows in batches of 8)."""
    from vlm_r1.config import ModelArguments
    from vlm_r1.data import load_rows
    from vlm_r1.evaluation.runner import GenerationSettings, evaluate_samples
    from vlm_r1.loading import load_policy
    from vlm_r1.pipeline import SHIPPED_WARM_START
    from vlm_r1.rewards.parsing import completion_text
    from vlm_r1.trainer.grpo import VLMGRPOTrainer

    rows = write_split(tmp_path / "data", "rec", "test", 10, seed=0, image_size=112)
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
                                 GenerationSettings(batch_size=10, max_new_tokens=40))  # fmt: skip
    assert evaluated == {p["source"]: p["completions"][0] for p in reference["predictions"]}
    logged = next(entry for entry in summary["log_history"] if "eval_reward" in entry)
    assert logged["eval_rewards/iou_acc/mean"] == pytest.approx(reference["metrics"]["rec"]["acc@0.5"], abs=1e-6)
    assert logged["eval_reward"] == pytest.approx(reference["metrics"]["rec"]["acc@0.5"], abs=1e-6)


def test_greedy_version_decodes_as_the_evaluator():
    from transformers import GenerationConfig

    from vlm_r1.trainer.grpo import greedy_version

    sampling = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=5, repetition_penalty=1.3, min_p=0.1,
                                max_new_tokens=40, suppress_tokens=[7], eos_token_id=[1, 2], pad_token_id=0)  # fmt: skip
    greedy = greedy_version(sampling)
    assert (greedy.do_sample, greedy.temperature, greedy.top_p, greedy.top_k, greedy.repetition_penalty) == (
        False, None, None, None, 1.0)  # fmt: skip
    # the length, stop tokens and suppressed tokens (TRL's image token) stay; other logits processors go
    assert (greedy.max_new_tokens, greedy.eos_token_id, greedy.suppress_tokens) == (40, [1, 2], [7])
    assert greedy.min_p is None
    assert (sampling.do_sample, sampling.temperature, sampling.repetition_penalty) == (True, 0.7, 1.3)  # untouched


def test_the_kl_reference_is_loaded_at_the_policys_revision(tiny_model_dir, rec_rows, grpo_run, monkeypatch):
    """TRL builds the reference from the checkpoint id alone; `model_revision` must reach it (a local folder has no
    revisions, so the call is spied on, and the refusal of a revision for a local folder is switched off)."""
    import trl.trainer.grpo_trainer as grpo_trainer

    import vlm_r1.config

    monkeypatch.setattr(vlm_r1.config, "refuse_revision_of_a_folder", lambda model_args: None)

    seen = []
    original = grpo_trainer.create_model_from_path

    def spy(path, **kwargs):
        seen.append(kwargs.get("revision"))
        return original(path, **kwargs)

    monkeypatch.setattr(grpo_trainer, "create_model_from_path", spy)
    grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, "--model_revision", "v1.0", beta=0.04, max_steps=1,
             max_completion_length=8)
    assert seen == ["v1.0"]


def test_the_gallery_keeps_the_training_batch_when_an_evaluation_ends_the_run(tiny_model_dir, rec_rows, grpo_run,
                                                                               tmp_path):
    """An evaluation at the last step scores its own batch; the gallery still shows the sampled training groups."""
    eval_rows = write_split(tmp_path / "eval", "rec", "test", 4, seed=1)
    summary = grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, eval_data=[str(eval_rows)], eval_strategy="steps",
                       eval_steps=1, max_steps=1, eval_greedy=True, max_completion_length=8)
    gallery = json.loads((Path(summary["checkpoint"]) / "report" / "gallery.json").read_text())
    sources = [group["source"] for shot in gallery["snapshots"] for group in shot["groups"]]
    assert sources and all(source.startswith(str(rec_rows)) for source in sources)
    assert all(len(group["cards"]) > 1 for shot in gallery["snapshots"] for group in shot["groups"])


def test_bf16_on_a_machine_without_a_gpu_says_which_flags_train_on_the_cpu(tmp_path):
    from vlm_r1.train import parse_args

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: bf16 is allowed")
    recipe = tmp_path / "gpu.yaml"
    recipe.write_text("model_name_or_path: x\nbf16: true\n")
    for argv, source in ((["--model_name_or_path", "x"], "bf16 is true by default"),
                         (["--config", str(recipe)], f"`bf16: true` in {recipe}")):  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(source) + ".*add --bf16 false --use_cpu true"):
            parse_args(argv + ["--train_data", "a.jsonl", "--output_dir", str(tmp_path / "o")])


def test_the_console_line_survives_a_reward_that_applied_to_nothing():
    """TRL logs None for a reward with no value in the window (e.g. one that raised on every row): printed n/a.
    An evaluation gets a compact line too, without its (meaningless) loss."""
    from types import SimpleNamespace

    from vlm_r1.trainer.callbacks import StepPrinter, end_line, step_line

    state = SimpleNamespace(is_world_process_zero=True, global_step=3, max_steps=10)
    line = step_line({"reward": 0.5, "rewards/iou_acc/mean": None, "loss": None, "kl": 0.01}, state, 0.5)
    assert "iou_acc n/a" in line and "loss n/a" in line and "reward 0.500" in line and "0.50 s/step" in line
    evaluation = {"eval_reward": 0.25, "eval_rewards/iou_acc/mean": 0.25, "eval_loss": 0.0, "eval_kl": 0.02,
                  "eval_clip_ratio/region_mean": 0.0, "eval_completions/mean_length": 31.5}
    assert step_line(evaluation, state, 0.0) == "eval at step 3 | reward 0.250 (iou_acc 0.250) | kl 0.0200 | len 31.5"
    assert step_line({"train_runtime": 4.0}, state, 0.0) is None  # the end of training has its own line:
    end = {"train_runtime": 4.0, "train_samples_per_second": 8.0, "train_loss": 0.0123, "total_flos": 1.0}
    assert end_line(end, state) == "training done: 3 steps in 4 s (1.33 s/step), mean loss 0.0123"
    assert end_line(evaluation, state) is None
    assert end_line(end, state, first_step=1) == "training done: steps 2 to 3 in 4 s (2.00 s/step), mean loss 0.0123"
    lines = []
    printer = StepPrinter()
    printer.training_bar = SimpleNamespace(write=lines.append)
    printer._start_timing(state)
    printer.on_log(None, state, None, logs=evaluation)
    assert lines == [step_line(evaluation, state, 0.0)]



def test_disable_tqdm_prints_the_compact_lines(tiny_model_dir, rec_rows, grpo_run, capsys):
    """transformers' PrinterCallback printed every logged dict in full instead."""
    grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, max_steps=1)  # the test recipe sets disable_tqdm true
    printed = capsys.readouterr().out
    assert "step     1/1 | reward " in printed and "'clip_ratio/region_mean'" not in printed
    assert "training done: 1 step in " in printed and "'train_runtime'" not in printed  # nor the end's raw dict


def test_the_launchers_mixed_precision_must_agree_with_the_recipe(parse_only_argv, monkeypatch):
    from vlm_r1.train import parse_args

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")  # what `accelerate launch` sets from its config
    with pytest.raises(ValueError, match="accelerate launches with mixed_precision 'bf16' but the recipe says 'no'"):
        parse_args(parse_only_argv + ["--bf16", "false"])
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert parse_args(parse_only_argv + ["--bf16", "false"])[2].bf16 is False


def test_ds3_gather_for_generation_false_needs_zero3(parse_only_argv, monkeypatch):
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from vlm_r1.train import parse_args

    argv = parse_only_argv + ["--bf16", "false", "--ds3_gather_for_generation", "false"]
    with pytest.raises(ValueError, match="only applies under DeepSpeed ZeRO-3 .this run has no DeepSpeed"):
        parse_args(argv)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # what `accelerate launch` sets from a DeepSpeed config
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    try:
        with pytest.raises(ValueError, match="this run has DeepSpeed ZeRO-2"):
            parse_args(argv)
        monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
        assert parse_args(argv)[2].ds3_gather_for_generation is False
    finally:
        unset_hf_deepspeed_config()  # the plugin registers ZeRO-3 globally; later tests must not load under it


def test_the_prompt_travels_with_every_checkpoint_and_eval_uses_it(tiny_model_dir, rec_rows, grpo_run, tmp_path, caplog):
    import json

    from vlm_r1.data import PROMPT_FILE
    from vlm_r1.evaluate import main as evaluate

    template = "Box it: {question}"
    grpo_run(tiny_model_dir("qwen2_vl"), rec_rows, question_template=template, system_prompt="Be brief.",
             save_strategy="steps", save_steps=1)  # fmt: skip
    out = tmp_path / "out"
    recorded = {"question_template": template, "system_prompt": "Be brief."}
    for folder in (out, out / "checkpoint-1", out / "checkpoint-2"):
        assert json.loads((folder / PROMPT_FILE).read_text()) == recorded, folder
    argv = ["--model_name_or_path", str(out / "checkpoint-1"), "--data", str(rec_rows), "--max_samples", "2",
            "--max_new_tokens", "4", "--device", "cpu"]  # fmt: skip
    result = evaluate(argv)[rec_rows.stem]
    assert {k: result["generation"][k] for k in recorded} == recorded  # not the family's default template
    with caplog.at_level("WARNING", logger="vlm_r1"):
        result = evaluate(argv + ["--question_template", "{question}"])[rec_rows.stem]
    assert result["generation"]["question_template"] == "{question}"  # the one given wins, with a warning
    assert "--question_template '{question}' differs from the 'Box it: {question}'" in caplog.text

    from vlm_r1.checkpoints import CheckpointError

    broken = out / "checkpoint-2" / PROMPT_FILE
    broken.write_text('{"question_template": "no slot", "system_prompt": null}')
    argv[1] = str(out / "checkpoint-2")
    with pytest.raises(CheckpointError, match=f"{broken}: question_template must contain"):
        evaluate(argv)
    given = evaluate(argv + ["--question_template", "{question}", "--system_prompt", "Hi."])[rec_rows.stem]
    assert given["generation"]["question_template"] == "{question}"  # both given: the broken record is not needed
    unrecorded = evaluate(argv + ["--use_recorded_prompt", "false"])[rec_rows.stem]["generation"]
    from vlm_r1.modules.base import THINK_ANSWER_TEMPLATE

    assert (unrecorded["question_template"], unrecorded["system_prompt"]) == (THINK_ANSWER_TEMPLATE, None)


def test_output_dir_may_not_be_the_starting_model(tiny_model_dir, parse_only_argv):
    from vlm_r1.sft import parse_args as sft_args
    from vlm_r1.train import parse_args

    model = str(tiny_model_dir("qwen2_vl"))
    argv = [*parse_only_argv, "--bf16", "false", "--model_name_or_path", model, "--output_dir", model + "/."]
    for parse in (parse_args, sft_args):
        with pytest.raises(ValueError, match="is the folder of the model the run starts from"):
            parse(argv)


def test_load_best_model_at_end_loads_the_best_checkpoints_weights(tiny_model_dir, rec_rows, grpo_run, tmp_path):
    """Qwen2-VL checkpoints hold legacy key names that transformers' own best-model loading matched to no weight,
    so the run ended on its last step's weights, with a warning. The best checkpoint must not be the last one, so
    "best" here is the lowest eval reward (greater_is_better false), which the run reaches at step 2."""
    from safetensors.torch import load_file

    from varying_rewards import VARYING_GRPO_FIELDS

    summary = grpo_run(
        tiny_model_dir("qwen2_vl"), rec_rows, **VARYING_GRPO_FIELDS, eval_data=[str(rec_rows)], eval_strategy="steps",
        eval_steps=1, save_strategy="steps", save_steps=1, max_steps=3, load_best_model_at_end=True,
        metric_for_best_model="eval_reward", greater_is_better=False, per_device_eval_batch_size=8, num_generations_eval=4,
    )  # fmt: skip
    out = tmp_path / "out"
    rewards = {e["step"]: e["eval_reward"] for e in summary["log_history"] if "eval_reward" in e}
    best = min(rewards, key=rewards.get)
    assert best != 3, rewards  # otherwise the last step's weights would pass for the best's
    final = load_file(str(out / "model.safetensors"))
    for step in rewards:
        saved = load_file(str(out / f"checkpoint-{step}" / "model.safetensors"))
        same = all(torch.equal(final[k], saved[k]) for k in final)
        assert same == (step == best), (step, best, rewards)


def test_rows_without_images_are_refused_under_zero3_and_other_processes_log_warnings_only(monkeypatch):
    """Under ZeRO-3 a step where one process's batch has no image ran the vision tower on the others only: a
    2-process run aborted at its first step. INFO lines are printed by the main process only."""
    import logging
    from types import SimpleNamespace

    from vlm_r1.recipe import OptionError
    from vlm_r1.train import log_level, refuse_zero3_with_text_rows

    rows = SimpleNamespace(train=[SimpleNamespace(source="a.jsonl:1", images=("x.png",)),
                                  SimpleNamespace(source="a.jsonl:2", images=())], eval=[])  # fmt: skip
    zero = lambda stage: SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=stage))  # noqa: E731
    with pytest.raises(OptionError, match=r"1 rows have no image \(the first: a.jsonl:2\), and under DeepSpeed ZeRO-3"):
        refuse_zero3_with_text_rows(zero(3), rows)
    refuse_zero3_with_text_rows(zero(2), rows)
    refuse_zero3_with_text_rows(SimpleNamespace(deepspeed_plugin=None), rows)
    monkeypatch.setenv("RANK", "1")
    assert log_level() == logging.WARNING
    monkeypatch.setenv("RANK", "0")
    assert log_level() == logging.INFO
