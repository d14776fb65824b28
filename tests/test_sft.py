"""SFT: targets in the model's frame, the prompt-completion dataset, and a warm start that learns to answer."""

from __future__ import annotations

import json

import pytest

from vlm_r1.modules import get_module
from vlm_r1.recipe import OptionError
from vlm_r1.trainer.sft import box_in_model_frame, render_answer, render_completion


class _FakeProcessor:
    class image_processor:  # noqa: N801
        size = {"shortest_edge": 56 * 56, "longest_edge": 224 * 224}
        patch_size = 14
        merge_size = 2


def test_targets_in_model_frame():
    qwen2, qwen25 = get_module("qwen2_vl"), get_module("qwen2_5_vl")
    # relative 0-1000 frame: [20, 30, 60, 70] of a 200x100 image
    assert box_in_model_frame([20, 30, 60, 70], qwen2, (200, 100), (196, 112)) == [100, 300, 300, 700]
    # resized pixels: 200x100 -> 196x112
    assert box_in_model_frame([100, 50, 200, 100], qwen25, (200, 100), (196, 112)) == [98, 56, 196, 112]
    # the round trip through the conversion evaluation and GRPO use lands on the ground truth (up to rounding)
    from vlm_r1.rewards.parsing import parse_answer

    target = render_completion(render_answer("[20, 30, 60, 70]", qwen2, (200, 100), (196, 112)), "ok")
    assert target == "<think>ok</think><answer>[100, 300, 300, 700]</answer>"
    back = qwen2.answer_to_original(parse_answer(target), [(200, 100)], _FakeProcessor())
    assert back.detections[0].box == pytest.approx((20, 30, 60, 70), abs=1e-9)


def test_sft_targets_use_the_module_input_size():
    from vlm_r1.data import Sample
    from vlm_r1.trainer.sft import sft_targets

    row = Sample(images=("x.png",), image_sizes=((200, 100),), problem="<image>the box", solution="[100, 50, 200, 100]",
                 reward=None, source="rows.jsonl:1")  # fmt: skip
    # Qwen2.5-VL writes resized-input pixels: 200x100 -> 196x112 (model_input_size of the fake processor)
    assert sft_targets([row], get_module("qwen2_5_vl"), _FakeProcessor(), think="t") == [
        "<think>t</think><answer>[98, 56, 196, 112]</answer>"
    ]
    # a text-only row: a number is fine, a box has no image whose pixels it could be in
    text_only = Sample(images=(), image_sizes=(), problem="How many?", solution="3", reward=None, source="r.jsonl:2")
    assert sft_targets([text_only], get_module("qwen2_vl"), _FakeProcessor(), think="t") == [
        "<think>t</think><answer>3</answer>"
    ]
    boxed = Sample(images=(), image_sizes=(), problem="Where?", solution="[1200, 5, 1300, 50]", reward=None,
                   source="r.jsonl:3")  # fmt: skip
    from vlm_r1.data import DataError

    with pytest.raises(DataError, match="r.jsonl:3: solution: a box ground truth needs an image") as err:
        sft_targets([boxed, text_only, boxed], get_module("qwen2_vl"), _FakeProcessor())
    assert len(err.value.problems) == 2  # every such row at once
    # --think writing the question into the think block: a question holding the tags would close the block early and
    # put another answer in the target ("...</think><answer>dog</answer></think><answer>cat</answer>")
    tagged = Sample(images=(), image_sizes=(), problem="What is it? </think><answer>dog</answer>", solution="3",
                    reward=None, source="r.jsonl:4")  # fmt: skip
    assert sft_targets([tagged], get_module("qwen2_vl"), _FakeProcessor(), think="t")  # not written into it: fine
    with pytest.raises(DataError, match=r"r.jsonl:4: question: holds </think>, <answer>, </answer>, and --think"):
        sft_targets([tagged], get_module("qwen2_vl"), _FakeProcessor(), think="Looking at: {question}")


def test_other_task_targets():
    qwen2 = get_module("qwen2_vl")
    dets = json.loads(render_answer('[{"bbox_2d": [0, 0, 56, 56], "label": "red star"}]', qwen2, (112, 112), (112, 112)))
    assert dets == [{"bbox_2d": [0, 0, 500, 500], "label": "red star"}]
    assert render_answer("3", qwen2, (112, 112), (112, 112)) == "3"
    assert render_answer('"circle"', qwen2, (112, 112), (112, 112)) == "circle"
    assert render_answer('{"label": "cat", "aliases": ["kitty"]}', qwen2, (112, 112), (112, 112)) == "cat"
    # a detection target keeps the box and label only, the label in its own characters (not \u escapes)
    det = '[{"bbox_2d": [0, 0, 56, 56], "label": "café 三角", "area": 3136}]'
    assert render_answer(det, qwen2, (112, 112), (112, 112)) == '[{"bbox_2d": [0, 0, 500, 500], "label": "café 三角"}]'
    # boxes in a shape SFT does not convert (possible with a custom reward that has no validator) are refused, not
    # written in original pixels that the rewards would read in the model's frame
    for unconverted in ("[[1, 2, 30, 40]]", '{"bbox_2d": [1, 2, 30, 40]}', '"<box>[1, 2, 30, 40]</box>"'):
        with pytest.raises(ValueError, match="holds boxes in a shape SFT does not write in the model's frame"):
            render_answer(unconverted, qwen2, (112, 112), (112, 112))


def test_sft_refuses_ignored_options(parse_only_argv):
    from vlm_r1.sft import parse_args

    base = parse_only_argv
    with pytest.raises(ValueError, match="reward_funcs"):
        parse_args(base + ["--reward_funcs", "iou"])
    with pytest.raises(ValueError, match="assistant_only_loss"):
        parse_args(base + ["--assistant_only_loss", "true"])
    with pytest.raises(ValueError, match="remove_unused_columns would drop the columns"):
        parse_args(base + ["--remove_unused_columns", "true"])  # it used to be set back to false without a word
    assert parse_args(base)[2].remove_unused_columns is False
    # model options are checked by vlm_r1.config.check_model_args, as for GRPO
    with pytest.raises(ValueError, match="dtype"):
        parse_args(base + ["--dtype", "fp8"])
    with pytest.raises(ValueError, match="use_peft"):
        parse_args(base + ["--use_peft", "true", "--freeze_vision", "true"])
    with pytest.raises(ValueError, match="group_by_length needs each row's length"):  # it failed after the model loaded
        parse_args(base + ["--train_sampling_strategy", "group_by_length"])
    with pytest.raises(ValueError, match="fp16 does nothing on the CPU"):  # bit-identical to float32 training
        parse_args(base + ["--fp16", "true"])
    for length in ("-5", "0"):  # -5 cut five tokens off every batch's end; 0 failed at the first step
        with pytest.raises(ValueError, match=f"max_length must be >= 1 .*got {length}"):
            parse_args(base + ["--max_length", length])


def test_sft_help_lists_no_option_it_refuses(capsys):
    from vlm_r1.sft import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    assert "--reward_funcs" not in text and "--packing" not in text and "--dataset_num_proc" not in text
    assert "--default_reward" in text and "validated against it when loading" in " ".join(text.split())


@pytest.mark.parametrize("command", ["sft", "train"])
def test_warmup_that_the_schedule_drops_is_refused(parse_only_argv, command):
    """transformers' constant schedule ignores warmup_steps silently; both trainers refuse the pair."""
    import importlib

    parse_args = importlib.import_module(f"vlm_r1.{command}").parse_args
    base = parse_only_argv
    with pytest.raises(ValueError, match="warmup_steps = 50 has no effect with lr_scheduler_type 'constant': use "
                                         "lr_scheduler_type constant_with_warmup"):  # fmt: skip
        parse_args(base + ["--lr_scheduler_type", "constant", "--warmup_steps", "50"])
    with pytest.raises(ValueError, match="warmup_steps = 5 has no effect with lr_scheduler_type 'greedy'"):
        parse_args(base + ["--lr_scheduler_type", "greedy", "--warmup_steps", "5", "--eval_data", "b.jsonl",
                           "--eval_strategy", "steps", "--eval_steps", "10"])  # greedy steps on the eval loss
    with pytest.raises(ValueError, match="lr_scheduler_kwargs .* have no effect with lr_scheduler_type 'constant'"):
        parse_args(base + ["--lr_scheduler_type", "constant", "--lr_scheduler_kwargs", '{"min_lr": 0.1}'])
    for allowed in (["--lr_scheduler_type", "constant_with_warmup", "--warmup_steps", "50"],
                    ["--lr_scheduler_type", "constant", "--warmup_steps", "0"],
                    ["--lr_scheduler_type", "cosine_with_min_lr", "--lr_scheduler_kwargs", '{"min_lr": 0.1}']):  # fmt: skip
        parse_args(base + allowed)


def test_options_sft_would_ignore_are_refused(parse_only_argv):
    from vlm_r1.sft import parse_args

    base = parse_only_argv
    with pytest.raises(ValueError, match="eval_data is set but eval_strategy is 'no'"):
        parse_args(base + ["--eval_data", "b.jsonl"])
    parse_args(base + ["--eval_data", "b.jsonl", "--eval_strategy", "steps", "--eval_steps", "10"])
    with pytest.raises(ValueError, match="dataset_num_proc, shuffle_dataset only apply to TRL's text dataset"):
        parse_args(base + ["--dataset_num_proc", "4", "--shuffle_dataset", "true"])
    for extra, message in ((["--think", "a</think><answer>[1,2,3,4]</answer><think>"], "holds <think>, </think>, <answer>, </answer>: it is the text inside"),
                           (["--think", "Find {Question}"], r"holds \{Question\}: the only placeholder"),
                           (["--max_steps", "0"], "max_steps 0 would still train one step"),
                           (["--max_steps", "3", "--warmup_steps", "50", "--lr_scheduler_type", "cosine"],
                            r"warmup_steps \(50\) is not below max_steps \(3\)"),
                           # each of these was parsed, then failed after the model loaded or was ignored
                           (["--pad_to_multiple_of", "8"], "pad_to_multiple_of is not implemented by TRL for vision"),
                           (["--truncation_mode", "keep_end"], "truncation_mode keep_end is not supported for vision"),
                           (["--loss_type", "dft", "--label_smoothing_factor", "0.1"],
                            "label_smoothing_factor applies to loss_type nll only"),
                           (["--use_peft", "true", "--lora_target_modules", "q_proj", "lm_head"],
                            "lora_target_modules may not include lm_head"),
                           (["--activation_offloading", "true"], "this run has no GPU"),
                           (["--chat_template_path", "no_such.jinja"], "chat_template_path no_such.jinja: give an existing"),
                           (["--eval_data", "b.jsonl", "--eval_strategy", "steps", "--eval_steps", "1",
                             "--metric_for_best_model", "eval_reward"], "metric_for_best_model eval_reward: SFT logs no"),
                           (["--train_sampling_strategy", "batch_rebalance"], "batch_rebalance needs each row's length"),
                           (["--bf16_full_eval", "true"], "bf16_full_eval has no effect in vlm-r1"),
                           (["--length_column_name", "n"], "length_column_name has no effect in vlm-r1"),
                           (["--do_predict", "true"], "do_predict has no effect in vlm-r1"),
                           (["--eos_token", "<|im_end|>"], "eos_token would replace the checkpoint's end-of-sequence")):
        with pytest.raises(ValueError, match=message):
            parse_args(base + extra)
    assert parse_args(base + ["--think", "Look for {question}.", "--max_steps", "3", "--warmup_steps", "0.5",
                              "--lr_scheduler_type", "cosine"])[2].think == "Look for {question}."  # fmt: skip



@pytest.fixture(scope="module")
def rec_rows(tmp_path_factory):
    from vlm_r1.synthetic import write_split

    out = tmp_path_factory.mktemp("rec")
    return write_split(out, "rec", "train", 16, seed=0)


def test_what_the_checkpoint_cannot_take_is_refused_in_one_line(tiny_model_dir, rec_rows, tmp_path, monkeypatch):
    """router_aux_loss_coef on a model that is no Mixture of Experts (from config.json, before anything loads), and a
    pad_token the tokenizer lacks (once it has loaded): each failed in TRL's trainer with a traceback."""
    import vlm_r1.loading
    from vlm_r1.recipe import OptionError
    from vlm_r1.sft import main

    base = ["--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--train_data", str(rec_rows), "--max_steps", "1",
            "--use_cpu", "true", "--bf16", "false"]  # fmt: skip
    real_load = vlm_r1.loading.load_policy
    monkeypatch.setattr(vlm_r1.loading, "load_policy", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(OptionError, match="router_aux_loss_coef applies to Mixture-of-Experts models"):
        main(base + ["--output_dir", str(tmp_path / "a"), "--router_aux_loss_coef", "0.01"])
    monkeypatch.setattr(vlm_r1.loading, "load_policy", real_load)
    with pytest.raises(OptionError, match="pad_token 'NOPE' is not a token of"):
        main(base + ["--output_dir", str(tmp_path / "b"), "--pad_token", "NOPE"])


def test_sft_warm_start_answers(tiny_model_dir, rec_rows, tmp_path):
    """60 SFT steps on a tiny model: > 80% of greedy completions parse to an <answer> holding one 4-number box.

    (Whether that box is also well-ordered and lands on the object takes minutes, not seconds: see
    docs/default_job.md. The strict rate is the evaluation's ``answered``.)"""
    from vlm_r1.config import ModelArguments
    from vlm_r1.data import load_rows
    from vlm_r1.evaluation.runner import GenerationSettings, evaluate_samples
    from vlm_r1.loading import load_policy
    from vlm_r1.sft import main

    out = tmp_path / "sft"
    summary = main([
        "--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--train_data", str(rec_rows),
        "--output_dir", str(out), "--max_steps", "60", "--per_device_train_batch_size", "8",
        "--learning_rate", "2e-3", "--lr_scheduler_type", "constant", "--use_cpu", "true", "--bf16", "false",
        "--gradient_checkpointing", "false", "--save_strategy", "no", "--report_to", "none",
        "--logging_steps", "10", "--disable_tqdm", "true", "--resume_from_checkpoint", "auto",  # none yet: fresh start
    ])  # fmt: skip
    assert summary["steps"] == 60 and summary["loss_end"] < summary["loss_start"]
    from vlm_r1.data import read_prompt
    from vlm_r1.modules import THINK_ANSWER_TEMPLATE

    assert read_prompt(out) == {"question_template": THINK_ANSWER_TEMPLATE, "system_prompt": None}  # the default's
    # the report: loss curves, and a log history `vlm-r1 report` redraws from (with save_strategy no there is no
    # trainer_state.json for it to read)
    from vlm_r1.report import main as report

    history = json.loads((out / "report" / "log_history.json").read_text())["log_history"]
    assert [e["loss"] for e in history if "loss" in e] == pytest.approx([e["loss"] for e in summary["log_history"]
                                                                         if "loss" in e])  # fmt: skip
    assert (out / "report" / "curves.png").stat().st_size > 1000
    (out / "report" / "curves.png").unlink()
    assert report([str(out)]) == 0 and (out / "report" / "curves.png").exists()
    model, processor, module = load_policy(ModelArguments(model_name_or_path=str(out)))
    result = evaluate_samples(
        model, processor, module, list(load_rows(rec_rows)), settings=GenerationSettings(batch_size=16, max_new_tokens=40)
    )
    parsed = [len(p["boxes"][0]) == 1 for p in result["predictions"]]
    assert sum(parsed) / len(parsed) > 0.8, result["predictions"][0]["completions"]


def test_stop_at_step_keeps_the_schedule(tiny_model_dir, rec_rows, tmp_path):
    """--stop_at_step ends the run early while the learning rate follows the max_steps schedule (how the shipped
    warm start's interrupted first stage is reproduced)."""
    from vlm_r1.sft import main

    common = [
        "--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--train_data", str(rec_rows),
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--lr_scheduler_type", "linear",
        "--use_cpu", "true", "--bf16", "false", "--gradient_checkpointing", "false", "--save_strategy", "no",
        "--report_to", "none", "--logging_steps", "1", "--disable_tqdm", "true",
    ]  # fmt: skip
    summary = main(common + ["--output_dir", str(tmp_path / "a"), "--max_steps", "8", "--stop_at_step", "3"])
    assert summary["steps"] == 3
    rates = [entry["learning_rate"] for entry in summary["log_history"] if "learning_rate" in entry]
    assert rates == pytest.approx([1e-3 * (8 - step) / 8 for step in range(3)], abs=1e-12)
    with pytest.raises(ValueError, match=r"stop_at_step must be in 1..max_steps \(8\), got 9"):
        main(common + ["--output_dir", str(tmp_path / "b"), "--max_steps", "8", "--stop_at_step", "9"])
    with pytest.raises(ValueError, match="stop_at_step stops a run of max_steps steps early, and max_steps is -1"):
        main(common + ["--output_dir", str(tmp_path / "c"), "--num_train_epochs", "2", "--stop_at_step", "3"])


def test_sft_resumes_exactly_and_refuses_a_batch_cut_to_nothing(tiny_model_dir, rec_rows, tmp_path):
    """Stopped at step 2 and resumed (auto), SFT logs the losses of the uninterrupted run: the checkpoint's weights
    are loaded (transformers alone would load none of them, silently). And a max_length that cuts every completion
    token is refused instead of training on nothing."""
    from vlm_r1.sft import main

    common = [
        "--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--train_data", str(rec_rows),
        "--per_device_train_batch_size", "4", "--learning_rate", "1e-3", "--lr_scheduler_type", "linear",
        "--use_cpu", "true", "--bf16", "false", "--gradient_checkpointing", "false", "--report_to", "none",
        "--logging_steps", "1", "--disable_tqdm", "true", "--max_steps", "4", "--seed", "0",
    ]  # fmt: skip
    whole = main(common + ["--output_dir", str(tmp_path / "whole"), "--save_strategy", "no"])
    resumed_dir = str(tmp_path / "resumed")
    main(common + ["--output_dir", resumed_dir, "--save_strategy", "steps", "--save_steps", "2", "--stop_at_step", "2"])
    resumed = main(common + ["--output_dir", resumed_dir, "--save_strategy", "steps", "--save_steps", "2",
                             "--resume_from_checkpoint", "auto"])  # fmt: skip
    losses = lambda summary: [e["loss"] for e in summary["log_history"] if "loss" in e]  # noqa: E731
    assert len(losses(whole)) == 4
    assert losses(resumed)[-2:] == pytest.approx(losses(whole)[-2:], rel=1e-5, abs=1e-6)
    tokens = lambda summary: [e["num_tokens"] for e in summary["log_history"] if "num_tokens" in e]  # noqa: E731
    assert tokens(resumed) == tokens(whole) and tokens(whole)[0] > 0  # TRL's own count restarted at 0
    with pytest.raises(OptionError, match="no completion token is left in this batch"):
        main(common + ["--output_dir", str(tmp_path / "cut"), "--save_strategy", "no", "--max_length", "20"])


def test_the_time_limit_stops_every_process_when_one_is_out_of_time():
    """Each process reads its own clock; the stop is decided by all of them (an all-reduce), or ranks that stopped at
    different steps would wait on each other. Here the other process is out of time and this one is not."""
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from vlm_r1.sft import _stop_callback

    args = TrainingArguments(output_dir="unused", save_strategy="no", report_to="none")
    asked = []
    callback = _stop_callback(3600, None, any_rank=lambda flag: asked.append(flag) or True)
    callback.on_train_begin(args, TrainerState(), TrainerControl())
    control = TrainerControl()
    callback.on_step_end(args, TrainerState(global_step=1), control)
    assert asked == [False] and control.should_training_stop
    alone = _stop_callback(3600, None)  # one process: its own clock decides
    alone.on_train_begin(args, TrainerState(), TrainerControl())
    control = TrainerControl()
    alone.on_step_end(args, TrainerState(global_step=1), control)
    assert not control.should_training_stop
