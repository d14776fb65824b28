"""GRQO on the tiny offline Grounding DINO: checkpoint round trip, training steps, entry point, COCO mAP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vlm_r1.grqo.coco_eval import class_scores, ground_truth
from vlm_r1.grqo.config import GRQOConfig, check_config
from vlm_r1.grqo.data import DetectionExample, class_names, load_detection_examples, make_batch

REPO = Path(__file__).resolve().parents[1]


def _load(path):
    from vlm_r1.grqo.loading import load_detector

    return load_detector(str(path))


def _trainer(tiny_dino, **overrides):
    from vlm_r1.grqo.trainer import GRQOTrainer

    torch.manual_seed(0)
    model, processor = _load(tiny_dino)
    cfg = GRQOConfig(model_name_or_path=str(tiny_dino), train_data="unused", learning_rate=1e-3, **overrides)
    return GRQOTrainer(model, cfg), processor


def _batch(shapes, processor):
    examples = load_detection_examples(shapes[0])[:4]
    return make_batch(examples, processor, class_names(examples))


def test_tiny_checkpoint_round_trip(tiny_dino, shapes, tmp_path):
    model, processor = _load(tiny_dino)
    ids = processor.tokenizer("red circle. blue star?")["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and ids[3] == 1012 and ids[-2] == 1029  # ids the model hard-codes
    model.eval()
    batch = _batch(shapes, processor)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        before = model(**inputs)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, processor2 = _load(tmp_path)
    again.eval()
    with torch.no_grad():
        after = again(**{k: v for k, v in _batch(shapes, processor2).items() if k != "labels"})
    assert torch.equal(before.pred_boxes, after.pred_boxes)
    assert torch.equal(before.logits, after.logits)


def test_make_batch_labels(shapes, tiny_dino):
    _, processor = _load(tiny_dino)
    examples = load_detection_examples(shapes[0])[:2]
    classes = class_names(examples)
    batch = make_batch(examples, processor, classes)
    e, target = examples[0], batch["labels"][0]
    assert target["class_labels"].tolist() == [classes.index(lab) for lab in e.labels]
    x1, y1, x2, y2 = e.boxes[0]
    cx, cy, w, h = target["boxes"][0].tolist()
    assert (cx, cy, w, h) == pytest.approx(((x1 + x2) / 2 / e.width, (y1 + y2) / 2 / e.height,
                                            (x2 - x1) / e.width, (y2 - y1) / e.height))  # fmt: skip
    with pytest.raises(ValueError, match="not among"):
        make_batch(examples, processor, classes[:0] + ["nothing"])
    # a name the tokenizer reduces to nothing would shift every later class id: refused (a lone combining accent:
    # normalize_label keeps it, BERT's tokenizer strips accents)
    with pytest.raises(ValueError, match="give no tokens"):
        make_batch(examples, processor, classes[:1] + ["\u0301"] + classes[1:])


def test_kl_top_k_beyond_the_models_queries_is_refused(tiny_dino):
    with pytest.raises(ValueError, match="kl_top_k .100000. is more than the model's num_queries"):
        _trainer(tiny_dino, kl_top_k=100000)


def test_non_finite_model_output_stops_the_step_before_the_supervised_loss(tiny_dino, shapes):
    """Diverged weights give NaN boxes; transformers' matcher used to fail on them with its own box-format error."""
    trainer, processor = _trainer(tiny_dino)
    batch = _batch(shapes, processor)
    trainer.training_step(batch)
    with torch.no_grad():
        trainer.model.bbox_embed[-1].layers[-1].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite model output at step 2"):
        trainer.training_step(batch)


def test_k3_penalty_logs_the_exact_kl_beside_it(tiny_dino, shapes):
    trainer, processor = _trainer(tiny_dino, kl_outcomes="both", ref_refresh_steps=0)
    batch = _batch(shapes, processor)
    logs = [trainer.training_step(batch) for _ in range(3)]
    assert logs[-1]["kl_objectness"] > 0 and 0 <= logs[-1]["kl_exact"] != logs[-1]["kl_objectness"]
    assert "kl_exact" not in _trainer(tiny_dino)[0].training_step(batch)  # the default is the exact KL itself


def test_grqo_steps_train_policy_not_reference(tiny_dino, shapes):
    trainer, processor = _trainer(tiny_dino, ref_refresh_steps=0)
    batch = _batch(shapes, processor)
    policy0 = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    ref0 = {k: v.clone() for k, v in trainer.ref_model.state_dict().items()}
    logs = [trainer.training_step(batch) for _ in range(3)]
    for entry in logs:
        assert all(torch.isfinite(torch.tensor(entry[k])) for k in ("loss", "loss_grqo", "kl_objectness"))
    assert logs[0]["kl_objectness"] == 0.0  # policy == reference before the first update (dropout is off)
    assert logs[-1]["kl_objectness"] > 0.0
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    changed = [n for n in trainable if not torch.equal(policy0[n], trainer.model.state_dict()[n])]
    assert len(changed) / len(trainable) > 0.9, sorted(set(trainable) - set(changed))
    assert any("class_embed" in n or "text_backbone" in n for n in changed)
    for name, value in trainer.ref_model.state_dict().items():
        assert torch.equal(value, ref0[name]), name
    assert not any(p.requires_grad for p in trainer.ref_model.parameters())


def test_reference_refresh(tiny_dino, shapes):
    trainer, processor = _trainer(tiny_dino, ref_refresh_steps=2)
    batch = _batch(shapes, processor)
    trainer.training_step(batch)
    assert not all(torch.equal(a, b) for a, b in zip(trainer.model.parameters(), trainer.ref_model.parameters()))
    trainer.training_step(batch)
    assert all(torch.equal(a, b) for a, b in zip(trainer.model.parameters(), trainer.ref_model.parameters()))


def test_grqo_term_changes_the_update(tiny_dino, shapes):
    """Same start, same batch: the GRQO-only difference must move the parameters differently."""
    a, processor = _trainer(tiny_dino, use_kl=False, use_grqo=False)
    b, _ = _trainer(tiny_dino, use_kl=False, grqo_alpha=1.0)
    batch = _batch(shapes, processor)
    a.training_step(batch)
    logs = b.training_step(batch)
    assert logs["loss_grqo"] != 0.0 and "kl_objectness" not in logs
    differs = [n for (n, p), q in zip(a.model.named_parameters(), b.model.parameters()) if not torch.equal(p, q)]
    assert differs


def test_check_config_refuses():
    with pytest.raises(ValueError) as err:
        check_config(GRQOConfig(model_name_or_path="m", train_data="t", grqo_layers="first", kl_beta=-1,
                                auxiliary_loss=False))  # fmt: skip
    assert "grqo_layers" in str(err.value) and "kl_beta" in str(err.value)
    check_config(GRQOConfig(model_name_or_path="m", train_data="t", grqo_layers="last", auxiliary_loss=False))
    with pytest.raises(ValueError, match="auxiliary_loss"):
        check_config(GRQOConfig(model_name_or_path="m", train_data="t", auxiliary_loss=False))
    with pytest.raises(ValueError, match="eval_every"):  # would be parsed and silently ignored
        check_config(GRQOConfig(model_name_or_path="m", train_data="t", eval_every=5))
    # the options of a switched-off term would be ignored
    with pytest.raises(ValueError, match=r"grqo_alpha, cost_giou only apply with use_grqo=true"):
        check_config(GRQOConfig(model_name_or_path="m", train_data="t", use_grqo=False, grqo_alpha=0.1, cost_giou=1.0))
    with pytest.raises(ValueError, match=r"kl_beta only applies with use_kl=true"):
        check_config(GRQOConfig(model_name_or_path="m", train_data="t", use_kl=False, kl_beta=0.1))
    check_config(GRQOConfig(model_name_or_path="m", train_data="t", use_grqo=False, use_kl=False))
    with pytest.raises(ValueError) as err:  # NaN / inf slip past a plain `< 0`; eps 0 divides equal rewards by 0
        check_config(GRQOConfig(model_name_or_path="m", train_data="t", grqo_alpha=float("nan"),
                                kl_beta=float("inf"), advantage_eps=0.0))  # fmt: skip
    assert all(s in str(err.value) for s in ("grqo_alpha must be a finite", "kl_beta must be a finite",
                                             "advantage_eps must be > 0"))  # fmt: skip
    with pytest.raises(ValueError, match=r"eval_every \(50\) is more than max_steps \(10\)"):
        check_config(GRQOConfig(model_name_or_path="m", train_data="t", eval_data=["e"], eval_every=50, max_steps=10))
    # options that a run would not use (each was accepted and did nothing)
    for overrides, message in (({"eval_batch_size": 4}, "eval_batch_size needs eval_data"),
                               ({"save_steps": 20, "max_steps": 10}, r"save_steps \(20\) is more than max_steps"),
                               ({"ref_refresh_steps": 10, "max_steps": 10}, r"ref_refresh_steps \(10\) is not below"),
                               ({"model_name_or_path": str(REPO), "model_revision": "v2"},
                                "model_revision 'v2' only applies to a hub id")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            check_config(GRQOConfig(**{"model_name_or_path": "m", "train_data": "t", **overrides}))


def test_load_detector_refuses_other_model_types(tmp_path):
    from transformers import BertConfig

    from vlm_r1.grqo.loading import load_detector

    BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a Grounding DINO"):
        load_detector(str(tmp_path))


def test_recipe_parses_and_unknown_keys_are_refused(tmp_path):
    from vlm_r1.grqo.train import parse_config

    check_config(parse_config(["--config", str(REPO / "recipes/tiny/grqo_dino.yaml")]))  # the recipe as shipped
    with pytest.raises(ValueError, match=r"save_steps \(100\) is more than max_steps \(7\)"):  # a shorter run says
        check_config(parse_config(["--config", str(REPO / "recipes/tiny/grqo_dino.yaml"), "--max_steps", "7"]))
    cfg = parse_config(["--config", str(REPO / "recipes/tiny/grqo_dino.yaml"), "--max_steps", "7", "--save_steps", "0"])
    check_config(cfg)
    assert cfg.max_steps == 7 and cfg.use_grqo and cfg.grqo_alpha == pytest.approx(1e-2) and cfg.kl_beta == 0.04
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_name_or_path: x\ngrqo_alhpa: 0.1\n")
    with pytest.raises(ValueError):
        parse_config(["--config", str(bad)])


def test_main_trains_evaluates_and_saves(tiny_dino, shapes, tmp_path):
    from vlm_r1.grqo.train import main

    out = tmp_path / "run"
    argv = ["--model_name_or_path", str(tiny_dino), "--train_data", str(shapes[0]), "--eval_data", str(shapes[1]),
            "--output_dir", str(out), "--max_steps", "2", "--batch_size", "2", "--log_every", "1",
            "--ref_refresh_steps", "1"]  # fmt: skip
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["metrics"]["grqo_detection_test"]) >= {"mAP", "AP50", "AP75"}
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in lines] == [1, 2] and "loss_grqo" in lines[0]
    assert _load(out)[0].config.auxiliary_loss


def test_ground_truth_through_shared_evaluator():
    from vlm_r1.evaluation.detection import ScoredBoxes, coco_metrics

    e = DetectionExample("a.png", 100, 80, ((10.0, 10.0, 30.0, 40.0), (50.0, 20.0, 90.0, 60.0)), ("red circle", "blue star"))
    perfect = ScoredBoxes(e.boxes, e.labels, (0.9, 0.8))
    assert coco_metrics(ground_truth([e]), [perfect])["mAP"] == pytest.approx(1.0, abs=1e-12)
    swapped = ScoredBoxes(e.boxes, e.labels[::-1], (0.9, 0.8))
    assert coco_metrics(ground_truth([e]), [swapped])["mAP"] == pytest.approx(0.0, abs=1e-12)


def test_class_scores_mean_token_probability():
    logits = torch.tensor([[0.0, 2.0, -2.0, float("-inf")]])
    maps = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 0]])
    s = torch.sigmoid(torch.tensor([0.0, 2.0, -2.0]))
    expected = torch.tensor([[(s[0] + s[1]) / 2, s[2]]])
    torch.testing.assert_close(class_scores(logits, maps), expected, rtol=0, atol=1e-7)


# ---- the `vlm-r1 grqo` command: refusals, output_dir, checkpoints and resume ----------------------------------


def _argv(tiny_dino, shapes, out, *extra):
    return ["--model_name_or_path", str(tiny_dino), "--train_data", str(shapes[0]), "--output_dir", str(out),
            "--max_steps", "1", "--batch_size", "2", "--log_every", "1", *extra]  # fmt: skip


def _cli(argv, capsys):
    from vlm_r1.cli import main

    code = main(["grqo", *argv])
    return code, capsys.readouterr().err


def test_user_mistakes_print_one_line_and_exit_2(tiny_dino, shapes, tmp_path, capsys):
    """Option problems are OptionErrors (they used to be bare ValueErrors: a traceback and exit 1)."""
    out = tmp_path / "out"
    cases = {("--classes", "red circle"): "are not among classes",
             ("--classes", "red circle", "Red  Circle"): "duplicate class names",
             ("--kl_top_k", "31"): "kl_top_k (31) is more than the model's num_queries (30)"}  # fmt: skip
    for extra, message in cases.items():
        code, err = _cli(_argv(tiny_dino, shapes, out, *extra), capsys)
        assert code == 2 and message in err and err.count("\n") == 1, (extra, err)
    code, err = _cli(_argv(tiny_dino, shapes, out, "--image_root", "no_such_root"), capsys)  # in the config's list
    assert code == 2 and "image_root no_such_root: no such folder" in err
    assert not out.exists()  # nothing was written


def test_rows_without_labels_and_no_classes_are_refused(shapes, tiny_dino, tmp_path, capsys):
    rows = [json.loads(line) for line in shapes[0].read_text().splitlines()][:4]
    empty = shapes[0].parent / "no_labels.jsonl"
    empty.write_text("".join(json.dumps({**row, "conversations": [row["conversations"][0], {"from": "gpt", "value": []}]})
                             + "\n" for row in rows))
    code, err = _cli(_argv(tiny_dino, (empty, shapes[1]), tmp_path / "out"), capsys)
    assert code == 2 and "no row holds a labelled object and classes is empty" in err and "--classes" in err


def test_absolute_image_paths_need_allow_images_outside_root(shapes, tiny_dino, tmp_path, capsys):
    rows = [json.loads(line) for line in shapes[0].read_text().splitlines()][:4]
    absolute = tmp_path / "absolute.jsonl"
    absolute.write_text("".join(json.dumps({**row, "image": str(shapes[0].parent / row["image"])}) + "\n" for row in rows))
    code, err = _cli(_argv(tiny_dino, (absolute, shapes[1]), tmp_path / "refused"), capsys)
    assert code == 2 and "resolves outside the image root" in err and "--allow_images_outside_root true" in err
    assert _cli(_argv(tiny_dino, (absolute, shapes[1]), tmp_path / "allowed", "--allow_images_outside_root", "true"),
                capsys)[0] == 0


def test_the_last_step_is_evaluated_once(tiny_dino, shapes, tmp_path, monkeypatch):
    import vlm_r1.grqo.train as train

    calls = []
    real = train.evaluate
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    result = train.run(train.GRQOConfig(model_name_or_path=str(tiny_dino), train_data=str(shapes[0]),
                                        eval_data=[str(shapes[1])], output_dir=str(tmp_path / "run"), max_steps=2,
                                        batch_size=2, eval_every=1, save_model=False))  # fmt: skip
    assert len(calls) == 2 and result["metrics"] == result["history"][2]  # steps 1 and 2; the end reuses step 2's


def test_the_console_shows_steps_evaluations_and_a_summary(tiny_dino, shapes, tmp_path, capsys):
    """One line per logged step and evaluation, numbers as log.jsonl has them, and a summary naming metrics.json
    (it used to print each log as a JSON dict and end with one)."""
    out = tmp_path / "out"
    argv = _argv(tiny_dino, shapes, out, "--max_steps", "2", "--eval_data", str(shapes[1]), "--eval_every", "2",
                 "--save_model", "false", "--disable_tqdm", "true")  # fmt: skip
    from vlm_r1.cli import main

    assert main(["grqo", *argv]) == 0
    printed = capsys.readouterr()
    logs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]["grqo_detection_test"]
    lines = printed.out.splitlines()
    assert lines[0] == f"step     1/2 | loss {logs[0]['loss']:.4f} | sup {logs[0]['loss_supervised']:.4f} | " \
                       f"grqo {logs[0]['loss_grqo']:.4f} | reward {logs[0]['reward_mean']:.3f} | " \
                       f"kl {logs[0]['kl_objectness']:.4f} | grad {logs[0]['grad_norm']:.2f} | " \
                       f"{logs[0]['step_time_s']:.2f} s/step"
    assert lines[1].startswith("step     2/2 | loss ")
    assert lines[2] == f"eval at step 2 | grqo_detection_test mAP {metrics['mAP']:.3f} AP50 {metrics['AP50']:.3f} " \
                       f"AP75 {metrics['AP75']:.3f}"
    assert lines[3].startswith("GRQO: 2 steps, ") and lines[4] == f"  grqo_detection_test: {lines[2].split('test ')[1]}"
    assert lines[5] == f"metrics (every COCO number, per file): {out}/metrics.json; step logs: {out}/log.jsonl"
    assert "GRQO:" not in printed.err  # no bar under disable_tqdm


def test_model_type_and_device_are_refused_before_the_data_is_read(tiny_dino, shapes, tmp_path, capsys):
    from transformers import BertConfig

    BertConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, intermediate_size=64).save_pretrained(
        tmp_path / "bert")
    missing = tmp_path / "missing.jsonl"  # read first, this would be the error
    argv = _argv(tiny_dino, shapes, tmp_path / "out", "--train_data", str(missing))
    code, err = _cli([*argv, "--model_name_or_path", str(tmp_path / "bert")], capsys)
    assert code == 2 and "model_type 'bert' is not a Grounding DINO checkpoint" in err
    if not torch.cuda.is_available():
        code, err = _cli([*argv, "--device", "cuda"], capsys)
        assert code == 2 and "--device cuda: no CUDA device is available here" in err
    code, err = _cli([*argv, "--kl_top_k", "31"], capsys)  # from config.json, before the data too
    assert code == 2 and "kl_top_k (31)" in err


def _eval_file_with_many_labels(shapes):
    """One eval row whose 60 unseen colour-shape labels make the prompt longer than the model's 128 tokens."""
    from vlm_r1.grqo.tiny import COLOURS, SHAPES

    row = json.loads(Path(shapes[1]).read_text().splitlines()[0])
    labels = [f"{c} {s}" for c in COLOURS for s in SHAPES][:60]
    row["conversations"][1]["value"] = [{"bbox_2d": [i, i, i + 10, i + 10], "label": lab}
                                        for i, lab in enumerate(labels)]  # fmt: skip
    path = Path(shapes[1]).with_name("long.jsonl")  # beside the test rows: their images resolve
    path.write_text(json.dumps(row) + "\n")
    return path


def test_eval_prompt_is_checked_before_training(tiny_dino, shapes, tmp_path):
    from vlm_r1.grqo.train import main
    from vlm_r1.recipe import OptionError

    long = _eval_file_with_many_labels(shapes)
    out = tmp_path / "run"
    with pytest.raises(OptionError, match=r"eval_data .*long.jsonl .*tokens, more than the model's max_text_len 128"):
        main(_argv(tiny_dino, shapes, out, "--eval_data", str(long), "--max_steps", "3"))
    assert not (out / "log.jsonl").exists()  # refused before the first step


def test_model_is_saved_before_the_final_evaluation(tiny_dino, shapes, tmp_path, monkeypatch):
    import vlm_r1.grqo.train as train

    def failing(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(train, "evaluate", failing)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="evaluation failed"):
        train.main(_argv(tiny_dino, shapes, out, "--eval_data", str(shapes[1])))
    assert (out / "model.safetensors").is_file() and not (out / "metrics.json").exists()


def test_output_dir_that_is_the_model_folder_or_holds_a_run_is_refused(tiny_dino, shapes, tmp_path):
    import shutil

    from vlm_r1.grqo.train import main
    from vlm_r1.recipe import OptionError

    start = shutil.copytree(tiny_dino, tmp_path / "start")
    before = (start / "model.safetensors").read_bytes()
    with pytest.raises(OptionError, match="is the folder of the model the run starts from"):
        main(_argv(start, shapes, Path(str(start) + "/"), "--save_model", "true"))
    assert (start / "model.safetensors").read_bytes() == before
    out = tmp_path / "run"
    assert main(_argv(tiny_dino, shapes, out)) == 0
    log = (out / "log.jsonl").read_text()
    with pytest.raises(OptionError, match=r"already holds another GRQO run's outputs .*new output_dir, or delete"):
        main(_argv(tiny_dino, shapes, out, "--max_steps", "2"))
    with pytest.raises(OptionError, match="found no complete checkpoint"):  # nothing to resume: refused the same
        main(_argv(tiny_dino, shapes, out, "--resume_from_checkpoint", "auto"))
    assert (out / "log.jsonl").read_text() == log


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


def test_resumed_run_matches_an_uninterrupted_one(tiny_dino, shapes, tmp_path):
    """Checkpoint at step 3 (reference refreshed at 2, so it differs from the start; batch order mid-epoch), the run
    killed after step 4, then resumed with `auto`: the same final weights as 5 steps in one go, and one log."""
    from vlm_r1.grqo.train import main

    options = ["--batch_size", "3", "--ref_refresh_steps", "2", "--save_steps", "3"]
    whole = tmp_path / "whole"
    assert main(_argv(tiny_dino, shapes, whole, *options, "--max_steps", "5", "--resume_from_checkpoint", "auto")) == 0
    cut = tmp_path / "cut"
    assert main(_argv(tiny_dino, shapes, cut, *options, "--max_steps", "4")) == 0
    checkpoint = cut / "checkpoint-3"
    assert {"model.safetensors", "grqo_state.pt", "reference.safetensors", "trainer_state.json"} <= {
        p.name for p in checkpoint.iterdir()}
    (cut / "checkpoint-6").mkdir()  # a save cut short (no trainer_state.json): passed over by auto
    (cut / "model.safetensors").unlink()  # killed before its final save
    with (cut / "log.jsonl").open("a") as log:
        log.write('{"loss": 1.0, "st')  # a line cut short by the kill
    assert main(_argv(tiny_dino, shapes, cut, *options, "--max_steps", "5", "--resume_from_checkpoint", "auto")) == 0
    resumed, uninterrupted = _weights(cut), _weights(whole)
    assert resumed.keys() == uninterrupted.keys()
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-5, atol=1e-6, msg=name)
    cut_log = [json.loads(line) for line in (cut / "log.jsonl").read_text().splitlines()]
    whole_log = [json.loads(line) for line in (whole / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in cut_log] == [1, 2, 3, 4, 5]
    assert [e["loss"] for e in cut_log] == pytest.approx([e["loss"] for e in whole_log], rel=1e-5)
    assert json.loads((cut / "metrics.json").read_text())["resumed_from"] == str(checkpoint)


def test_resume_refuses_a_checkpoint_of_other_settings_and_prints_a_recovery_change(tiny_dino, shapes, tmp_path,
                                                                                      capsys):
    """The checkpoint's run record (every option but where things lie, the length, logging, saving and the device)
    must match; learning_rate may change on a resume (the way out of a diverged run), and the change is printed."""
    from vlm_r1.checkpoints import CheckpointError
    from vlm_r1.grqo.train import main

    out = tmp_path / "run"
    assert main(_argv(tiny_dino, shapes, out, "--max_steps", "2", "--save_steps", "2")) == 0
    record = json.loads((out / "checkpoint-2" / "vlm_r1_run.json").read_text())
    assert record["weight_decay"] == 1e-4 and len(record["train_data_sha256"]) == 64 and record["start_model"]
    assert "max_steps" not in record and "output_dir" not in record
    again = ["--max_steps", "3", "--resume_from_checkpoint", "auto", "--save_steps", "3", "--log_every", "2"]
    with pytest.raises(CheckpointError, match=r"other settings \(weight_decay: 0.0001 -> 0.001\).*delete .*vlm_r1_run"):
        main(_argv(tiny_dino, shapes, out, *again, "--weight_decay", "1e-3"))
    changed_rows = tmp_path / "train.jsonl"  # the same number of rows, one label changed
    lines = Path(shapes[0]).read_text().splitlines()
    changed_rows.write_text("\n".join([lines[0].replace('"label": "', '"label": "x', 1), *lines[1:]]) + "\n")
    with pytest.raises(CheckpointError, match="train_data_sha256"):
        main([*_argv(tiny_dino, shapes, out, *again), "--train_data", str(changed_rows)])
    capsys.readouterr()
    assert main(_argv(tiny_dino, shapes, out, *again, "--learning_rate", "5e-5")) == 0
    assert "with learning_rate: 0.0001 -> 5e-05 (this run's value applies)" in capsys.readouterr().out


def test_save_total_limit_keeps_the_latest_checkpoints(tiny_dino, shapes, tmp_path):
    from vlm_r1.grqo.train import main
    from vlm_r1.recipe import OptionError

    out = tmp_path / "run"
    assert main(_argv(tiny_dino, shapes, out, "--max_steps", "4", "--save_steps", "1", "--save_total_limit", "2")) == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    with pytest.raises(OptionError, match="save_total_limit needs save_steps"):
        main(_argv(tiny_dino, shapes, tmp_path / "other", "--save_total_limit", "2"))


def test_tiny_vocabulary_is_the_same_in_every_process():
    """It came from `tokenizers`' WordPiece trainer, whose ties fall in a per-process order: each launch of the GRQO
    benchmark built another vocabulary, so another model, and its numbers moved from launch to launch."""
    import subprocess
    import sys

    from vlm_r1.grqo.tiny import build_processor

    code = "import json; from vlm_r1.grqo.tiny import build_vocab; print(json.dumps(build_vocab()))"
    vocabularies = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
                    for _ in range(2)]  # fmt: skip
    assert vocabularies[0] == vocabularies[1]
    tokens = build_processor().tokenizer.tokenize("detect the purple hexagon . zebra")
    assert tokens == ["detect", "the", "purple", "hexagon", ".", "z", "##e", "##b", "##r", "##a"]


def test_image_backbone_and_text_encoder_train_at_the_backbone_rate(tiny_dino):
    """Grounding DINO's recipes train BERT at the backbone's 0.1x rate; at the full rate the tiny detector's
    supervised start collapsed for one initialisation (docs/results.md)."""
    from vlm_r1.grqo.config import GRQOConfig
    from vlm_r1.grqo.loading import load_detector
    from vlm_r1.grqo.trainer import build_optimizer

    model, _ = load_detector(str(tiny_dino), "main")
    optimizer = build_optimizer(model, GRQOConfig(learning_rate=1e-3, backbone_lr_scale=0.1))
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    by_name = {name: rate[id(p)] for name, p in model.named_parameters()}
    for module in (".text_backbone.", ".backbone."):
        rates = [rate for name, rate in by_name.items() if module in f".{name}"]
        assert rates and rates == pytest.approx([1e-4] * len(rates)), module
    assert any(rate == 1e-3 for rate in by_name.values())  # the rest: transformer and heads
