"""Hostile data: refused at load time with every problem listed (file:line: field), or skipped with a count and a
written list; odd image files converted correctly or refused; paths escaping image_root refused unless allowed.

Checked through the loader (vlm_r1.data) and through the training entry point (vlm_r1.train.main), where the run must
stop before its first step.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from vlm_r1.data import DataError, ImageError, load_image, load_rows


def _row(image, box=(4, 4, 30, 30), question="<image>Find the square."):
    conversations = [{"from": "human", "value": question}, {"from": "gpt", "value": list(box)}]
    return {"image": image, "conversations": conversations, "reward": "iou"}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A data folder with odd but valid images, broken ones, and files outside it."""
    base = tmp_path_factory.mktemp("hostile")
    root = base / "data"
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "img/rgb.png")
    cmyk = Image.new("CMYK", (64, 48), (0, 0, 0, 0))
    cmyk.putpixel((0, 0), (0, 255, 0, 0))  # magenta in PIL's naive conversion
    cmyk.save(root / "img/cmyk.tiff")  # lossless, so pixel values are exact
    sixteen = np.zeros((48, 64), dtype=np.uint16)
    sixteen[0, :3] = (0, 32896, 65535)
    Image.fromarray(sixteen).save(root / "img/gray16.png")
    palette = Image.new("P", (64, 48))
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * (3 * 254))
    palette.putpixel((0, 0), 1)
    palette.save(root / "img/palette.png")
    Image.new("L", (64, 48), 77).save(root / "img/gray.png")
    Image.new("LA", (64, 48), (0, 0)).save(root / "img/transparent.png")  # fully transparent -> white
    photo = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(photo, "JPEG", quality=95)
    (root / "img/cut_half.jpg").write_bytes(photo.getvalue()[: len(photo.getvalue()) // 2])
    (root / "img/cut_tail.jpg").write_bytes(photo.getvalue()[:-200])  # header fine, last scans missing
    png = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(png, "PNG")
    (root / "img/cut.png").write_bytes(png.getvalue()[:-100])
    Image.new("1", (9000, 9000)).save(root / "img/bomb.png")  # 81M pixels > max_pixels (67M), below PIL's own limit
    (root / "img/not_an_image.png").write_text("hello")
    Image.new("RGB", (64, 48)).save(base / "outside.png")
    os.symlink(base / "outside.png", root / "img/link_out.png")
    return root


GOOD = ["img/rgb.png", "img/cmyk.tiff", "img/gray16.png", "img/palette.png", "img/gray.png", "img/transparent.png"]


def test_odd_image_modes_convert_correctly(images):
    for name in GOOD:
        image = load_image(images / name)
        assert image.mode == "RGB" and image.size == (64, 48), name
    assert load_image(images / "img/cmyk.tiff").getpixel((0, 0)) == (255, 0, 255)
    assert load_image(images / "img/cmyk.tiff").getpixel((1, 0)) == (255, 255, 255)
    gray16 = load_image(images / "img/gray16.png")  # scaled by 255/65535, not clipped at 255
    assert [gray16.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]
    assert load_image(images / "img/palette.png").getpixel((0, 0)) == (10, 200, 30)
    assert load_image(images / "img/palette.png").getpixel((1, 0)) == (0, 0, 0)
    assert load_image(images / "img/gray.png").getpixel((5, 5)) == (77, 77, 77)
    assert load_image(images / "img/transparent.png").getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize(
    "name, message",
    [
        ("img/cut_half.jpg", "truncated|not a readable"),
        ("img/cut_tail.jpg", "truncated"),
        ("img/cut.png", "truncated|corrupt|not a readable"),
        ("img/bomb.png", "max_pixels|decompression bomb"),
        ("img/not_an_image.png", "not a readable image"),
        ("img/missing.png", "not found"),
    ],
)
def test_broken_images_are_refused_naming_the_file(images, name, message):
    with pytest.raises(ImageError, match=message) as err:
        load_image(images / name)
    assert os.path.basename(name) in str(err.value)


def write_jsonl(path, rows):
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


HOSTILE = [  # (row, expected "line: field")
    ("{not json", "2: json"),
    ({"image": "img/rgb.png", "conversations": "hi"}, "3: conversations"),
    ({"image": 7, "conversations": _row("img/rgb.png")["conversations"]}, "4: image"),
    (_row("img/rgb.png", box=(50, 40, 10, 5)), "5: solution"),  # reversed
    (_row("img/rgb.png", box=(0, 0, 100, 100)), "6: solution"),  # outside the 64x48 image
    ({"image": "img/rgb.png", "conversations": []}, "7: conversations"),
    (_row("img/rgb.png", box=("a", 1, 2, 3)), "8: solution"),  # wrong types
    (_row("img/rgb.png", question="<image>"), "9: conversations[0].value"),  # no question text
    (_row("img/cut.png"), "10: image"),  # truncated PNG
    (_row("img/bomb.png"), "11: image"),
    (_row("../outside.png"), "12: image"),
    (_row(None), "13: image"),  # absolute path outside the root (filled in below)
    (_row("img/link_out.png"), "14: image"),  # a symlink pointing out of the root
    (["not", "an", "object"], "15: row"),
    (_row("img/not_an_image.png"), "16: image"),
    ({"image": "img/rgb.png", "reward": "counting", "conversations": [  # an exponent beyond Python's Decimal
        {"from": "human", "value": "<image>How many?"}, {"from": "gpt", "value": '"1e9999999999999999999"'}]},
     "17: solution"),
    ({**{k: v for k, v in _row("img/rgb.png").items() if k != "reward"}, "accu_reward_method": "mcq"},
     "18: accu_reward_method"),  # VLM-R1's key, not read
]


@pytest.fixture()
def hostile_jsonl(images, tmp_path):
    rows = [_row("img/rgb.png"), *[row for row, _ in HOSTILE], _row("img/gray16.png"), _row("img/cmyk.tiff")]
    rows[12]["image"] = str(images.parent / "outside.png")
    return write_jsonl(images / f"hostile_{tmp_path.name}.jsonl", rows)


def test_loader_lists_every_problem(hostile_jsonl):
    from vlm_r1.rewards import validate_solution  # as train.py passes it: row 8's box is checked by the iou reward

    with pytest.raises(DataError) as err:
        load_rows(hostile_jsonl, validate_solution=validate_solution)
    found = {f"{p.source.rsplit(':', 1)[1]}: {p.field}" for p in err.value.problems}
    for _, expected in HOSTILE:
        assert any(f.startswith(expected) for f in found), (expected, sorted(found))
    assert all(p.source.startswith(str(hostile_jsonl) + ":") for p in err.value.problems)
    assert f"{hostile_jsonl}:12: image:" in str(err.value)  # the message itself says file:line: field
    rows = load_rows(hostile_jsonl, skip_invalid=True, validate_solution=validate_solution)
    assert len(rows) == 3 and len(rows.skipped) == len(HOSTILE)
    rows = load_rows(hostile_jsonl, skip_invalid=True, allow_outside_root=True, validate_solution=validate_solution)
    assert len(rows) == 6  # ../, absolute and symlinked-out images are fine when allowed


# ---------------------------------------------------------------------- through the training entry point
def run_main(grpo_run, model_dir, data, *cli_args, **fields):
    return grpo_run(
        model_dir,
        data,
        *cli_args,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=4,
        max_steps=1,
        **{"reward_funcs": ["think_format"], **fields},
    )


def assert_no_training(tmp_path):
    out = tmp_path / "out"
    assert not (out / "model.safetensors").exists() and not list(out.glob("checkpoint-*"))


def test_fewer_rows_than_one_generation_batch_are_refused(images, tmp_path, grpo_run, tiny_model_dir, monkeypatch):
    """TRL's sampler keeps only whole batches of distinct prompts: with fewer rows it made none, and the run
    "trained" 0 steps, saved the starting weights and exited 0."""
    import vlm_r1.loading

    monkeypatch.setattr(vlm_r1.loading, "load_policy", lambda *a, **k: pytest.fail("refused after the model loaded"))
    data = write_jsonl(images / f"one_{tmp_path.name}.jsonl", [_row("img/rgb.png")])
    with pytest.raises(DataError, match=r"1 training rows in .*each generation batch takes 2 distinct prompts .*"
                                        "would train 0 steps"):
        run_main(grpo_run, tiny_model_dir("qwen2_vl"), data)  # 4 completions per step, 2 per prompt
    assert_no_training(tmp_path)


def test_training_stops_before_the_first_step_listing_every_problem(
    hostile_jsonl, tmp_path, grpo_run, tiny_model_dir
):
    with pytest.raises(DataError) as err:
        run_main(grpo_run, tiny_model_dir("qwen2_vl"), hostile_jsonl)
    assert len({p.source for p in err.value.problems}) == len(HOSTILE)
    assert f"{hostile_jsonl}:5: solution: box [50, 40, 10, 5] is reversed" in str(err.value)
    assert_no_training(tmp_path)


def test_skip_invalid_rows_trains_on_the_rest_and_writes_the_list(
    hostile_jsonl, tmp_path, grpo_run, tiny_model_dir, caplog
):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_main(grpo_run, tiny_model_dir("qwen2_vl"), hostile_jsonl, "--skip_invalid_rows")
    said = f"skipped {len(HOSTILE)} of {len(HOSTILE) + 3} invalid rows, listed in {tmp_path / 'out' / 'skipped_rows.jsonl'}"
    assert said in caplog.text  # once, with the file that lists them (the library's own warning said it again)
    assert not [w for w in caught if "invalid rows" in str(w.message)]
    assert any("loss" in entry for entry in summary["log_history"])  # RGB, 16-bit and CMYK rows trained
    listed = tmp_path / "out" / "skipped_rows.jsonl"
    lines = listed.read_text().splitlines()
    assert len(lines) == len(HOSTILE)
    assert all(str(hostile_jsonl) in line for line in lines)
    entries = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) for e in entries)
    assert all(e["source"].startswith(str(hostile_jsonl)) for e in entries)
    assert any(e["reasons"][0].startswith("solution: box [50, 40, 10, 5]") for e in entries)


def test_images_outside_root_need_the_flag(images, tmp_path, grpo_run, tiny_model_dir):
    data = write_jsonl(images / f"outside_{tmp_path.name}.jsonl", [_row("../outside.png"), _row("img/link_out.png")])
    with pytest.raises(DataError, match="outside the image root"):
        run_main(grpo_run, tiny_model_dir("qwen2_vl"), data)
    assert_no_training(tmp_path)
    summary = run_main(grpo_run, tiny_model_dir("qwen2_vl"), data, "--allow_images_outside_root")
    assert any("loss" in entry for entry in summary["log_history"])


@pytest.mark.parametrize("name", ["img/cut_half.jpg", "img/cut_tail.jpg"])
def test_truncated_jpeg_is_refused_before_training(images, tmp_path, grpo_run, tiny_model_dir, name):
    """A JPEG cut after its header (half of it, or only its last 200 bytes) passes PIL's verify()."""
    data = write_jsonl(images / f"cut_{tmp_path.name}.jsonl", [_row("img/rgb.png"), _row(name)])
    with pytest.raises(DataError, match=os.path.basename(name)) as err:
        run_main(grpo_run, tiny_model_dir("qwen2_vl"), data)
    assert ":2: image" in str(err.value)  # refused by the loader (file:line), not by a crash in a training step
    assert_no_training(tmp_path)


# ---------------------------------------------------------------------- rows no listed reward can score
def test_row_check_needs_a_reward_that_scores_the_row():
    from vlm_r1.rewards import make_row_check

    box, label = [4, 4, 30, 30], "cat"
    rec_only = make_row_check(["iou_acc", "think_format"])
    rec_only(None, box)
    with pytest.raises(ValueError, match="`iou_acc`: REC ground truth"):
        rec_only(None, label)  # a classification row would train on the format reward alone
    mixed = make_row_check(["iou_acc", "cls_match"])  # each task reward scores its own rows
    mixed(None, box), mixed(None, label)
    mixed("rec", box), mixed("classification", label)
    with pytest.raises(ValueError, match="`cls_match`: the row's reward 'yes_no' is another task.*list a reward of "
                                         "its task in reward_funcs"):  # (not: add the reward field it already has)
        mixed("yes_no", "yes")  # cls_match would take "yes" as a class name, but the row is a yes/no question
    make_row_check(["iou_acc", "cls_match", "yes_no_match"])("yes_no", "yes")
    with pytest.raises(ValueError, match=r"rewards of different tasks \(`cls_match`, `yes_no_match`\) can each score"):
        make_row_check(["iou_acc", "cls_match", "yes_no_match"])(None, "yes")  # no reward field: it would earn both
    make_row_check(["iou", "iou_acc"])(None, box)  # two rewards of one task: both meant to score it
    dispatcher = make_row_check(["accuracy", "think_format"])
    dispatcher("rec", box)
    with pytest.raises(ValueError, match="no `reward` field and default_reward is not set"):
        dispatcher(None, box)
    with pytest.raises(ValueError, match="REC ground truth"):
        dispatcher("rec", label)  # the row's own reward still checks its ground truth
    make_row_check(["think_format"])(None, label)  # no ground-truth reward listed: nothing to check against
    make_row_check(["my_pkg.rewards:score", "iou_acc"])(None, label)  # a user's reward may score anything
    with pytest.raises(ValueError, match="`cosine_length` judges correctness with the row's own `reward` field"):
        make_row_check(["iou_acc", "cosine_length"])(None, box)  # it scored every such row None, unnoticed
    make_row_check(["iou_acc", "cosine_length"])("rec", box)


def test_a_row_cannot_choose_code_to_import(tmp_path, monkeypatch):
    """A `reward` column naming 'module:function' would import and run that module: only the run's own
    configuration may name one."""
    from vlm_r1.rewards import make_row_check

    (tmp_path / "planted_by_data.py").write_text("import pathlib\npathlib.Path(__file__).with_suffix('.ran').touch()\n"
                                                  "def score(completions, **kw):\n    return [1.0] * len(completions)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="names code to import, and data may not choose code to run"):
        make_row_check(["accuracy"])("planted_by_data:score", "cat")
    assert not (tmp_path / "planted_by_data.ran").exists()  # refused before any import
    from vlm_r1.rewards import get_reward  # rows that bypassed the loader (a Dataset built in code): not imported

    for planted in ("planted_by_data:score", "shutil:which"):  # imported or not, code no configuration named
        with pytest.warns(RuntimeWarning, match="names code the run's configuration did not, and data may not"):
            assert get_reward("accuracy")(["x"], reward=[planted], solution=['"cat"']) == [None]
    assert not (tmp_path / "planted_by_data.ran").exists()
    make_row_check(["accuracy"], default_reward="planted_by_data:score")("planted_by_data:score", "cat")  # configured
    assert (tmp_path / "planted_by_data.ran").exists()


def test_training_refuses_rows_that_no_listed_reward_scores(images, tmp_path, grpo_run, tiny_model_dir):
    rows = [_row("img/rgb.png"), _row("img/rgb.png")]
    rows[1]["conversations"][1]["value"] = "square"  # a label, not a box
    for row in rows:
        del row["reward"]
    data = write_jsonl(images / f"unscored_{tmp_path.name}.jsonl", rows)
    with pytest.raises(DataError, match=r":2: solution: no reward in reward_funcs \['iou_acc'\] can score"):
        run_main(grpo_run, tiny_model_dir("qwen2_vl"), data, reward_funcs=["iou_acc"])
    assert_no_training(tmp_path)


def test_an_image_the_processor_refuses_stops_the_run_before_its_first_step(images, tmp_path, grpo_run, tiny_model_dir):
    """Qwen's processor refuses an aspect ratio above 200: training and evaluation name the row before they start."""
    from vlm_r1.evaluate import main as evaluate

    Image.new("RGB", (2010, 8)).save(images / "img/strip.png")
    good = [_row(name) for name in GOOD[:3]]
    data = write_jsonl(images / f"strip_{tmp_path.name}.jsonl", [*good, _row("img/strip.png", box=(4, 1, 30, 6))])
    refusal = rf"{data}:4: image: 2010x8 px: .*200"
    with pytest.raises(DataError, match=refusal):
        run_main(grpo_run, tiny_model_dir("qwen2_vl"), data)
    assert_no_training(tmp_path)
    with pytest.raises(DataError, match=refusal):  # nothing generated, nothing written
        evaluate(["--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--data", str(data), "--device", "cpu",
                  "--output_dir", str(tmp_path / "eval")])  # fmt: skip
    assert not (tmp_path / "eval").exists()
    summary = run_main(grpo_run, tiny_model_dir("qwen2_vl"), data, "--skip_invalid_rows")
    assert any("loss" in entry for entry in summary["log_history"])
    listed = [json.loads(line) for line in (tmp_path / "out" / "skipped_rows.jsonl").read_text().splitlines()]
    assert [e["source"] for e in listed] == [f"{data}:4"]  # dropped rows are listed, whichever check dropped them
    assert listed[0]["reasons"][0].startswith("image: 2010x8 px:")


def test_a_run_that_skips_nothing_removes_an_earlier_runs_list(images, tmp_path):
    from vlm_r1.config import DataArguments
    from vlm_r1.train import SKIPPED_ROWS_FILE, RunRows

    out = tmp_path / "out"
    out.mkdir()
    (out / SKIPPED_ROWS_FILE).write_text('{"source": "old.jsonl:1", "reasons": []}\n')
    data = write_jsonl(images / f"clean_{tmp_path.name}.jsonl", [_row(name) for name in GOOD[:2]])
    rows = RunRows(DataArguments(train_data=[str(data)], skip_invalid_rows=True, reward_funcs=["iou"]), str(out))
    assert len(rows.train) == 2 and not rows.skipped
    assert not (out / SKIPPED_ROWS_FILE).exists()  # it would read as this run's


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "GIF", "PPM"])
def test_a_file_cut_short_is_refused_at_validation_in_every_format(tmp_path, fmt):
    """verify() checks nothing for these formats: a file cut short used to pass and stop the run at its step."""
    from vlm_r1.data import probe_image

    whole = tmp_path / f"whole.{fmt.lower()}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(whole, fmt)
    assert probe_image(whole) == (128, 128)
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.6)])
    with pytest.raises(ImageError, match="cut|truncated|corrupt"):
        probe_image(cut)


def test_an_image_that_breaks_after_validation_names_its_row(images, tmp_path):
    from vlm_r1.data import load_row_images

    broken = tmp_path / "later.png"
    broken.write_bytes((images / "img/cut.png").read_bytes())
    with pytest.raises(ImageError, match=rf"^rows.jsonl:7: image: {broken}: "):
        load_row_images([images / "img/rgb.png", broken], "rows.jsonl:7")


def test_a_question_holding_the_prompts_control_tokens_is_refused_before_training(images, tmp_path, grpo_run,
                                                                                 tiny_model_dir):
    """`<|image_pad|>` in a question crashed GRPO and SFT at that row's step; `<|im_end|>` silently ended the turn.
    Grounding tokens a question may use on purpose pass."""
    from vlm_r1.evaluate import main as evaluate

    rows = [_row("img/rgb.png"), _row("img/gray.png", question="<image>What does <|image_pad|> mean?"),
            _row("img/gray.png", question="<image>Find <|object_ref_start|>the square<|object_ref_end|>."),
            _row("img/rgb.png", question="<image>Stop here<|im_end|> and go on.")]
    data = write_jsonl(images / f"special_{tmp_path.name}.jsonl", rows)
    with pytest.raises(DataError) as err:
        run_main(grpo_run, tiny_model_dir("qwen2_vl"), data)
    assert {(p.source, p.field) for p in err.value.problems} == {(f"{data}:2", "question"), (f"{data}:4", "question")}
    assert "<|image_pad|>" in str(err.value) and "<|im_end|>" in str(err.value)
    assert_no_training(tmp_path)
    with pytest.raises(DataError, match=rf"{data}:2: question: holds <\|image_pad\|>"):
        evaluate(["--model_name_or_path", str(tiny_model_dir("qwen2_vl")), "--data", str(data), "--device", "cpu"])
    summary = run_main(grpo_run, tiny_model_dir("qwen2_vl"), data, "--skip_invalid_rows")
    assert any("loss" in entry for entry in summary["log_history"])
    listed = [json.loads(line)["source"] for line in (tmp_path / "out" / "skipped_rows.jsonl").read_text().splitlines()]
    assert listed == [f"{data}:2", f"{data}:4"]


def test_a_ground_truth_holding_the_prompts_control_tokens_is_refused(tiny_model_dir):
    """A class name "dog<|image_pad|>" crashed SFT with transformers' own error and no row named; "cat<|im_end|>" was
    trained on as an SFT target, and was an answer no decoded completion can match."""
    from transformers import AutoProcessor

    from vlm_r1.data import Sample
    from vlm_r1.modules import get_module

    processor = AutoProcessor.from_pretrained(tiny_model_dir("qwen2_vl"))
    rows = [Sample((), (), "What is it?", json.dumps(answer), "classification", f"rows.jsonl:{n}")
            for n, answer in enumerate(["dog", "dog<|image_pad|>", {"label": "cat", "aliases": ["cat<|im_end|>"]}], 1)]
    problems = get_module("qwen2_vl").text_problems(processor, rows)
    assert [(p.source, p.field) for p in problems] == [("rows.jsonl:2", "solution"), ("rows.jsonl:3", "solution")]
    assert "holds <|im_end|>, which this model's tokenizer reads as a control token" in problems[1].message


def test_a_prompt_option_holding_control_tokens_is_refused(images, tmp_path, grpo_run, tiny_model_dir):
    """The check rows get also covers --question_template and --system_prompt, in train, sft and eval."""
    from vlm_r1.evaluate import main as evaluate
    from vlm_r1.recipe import OptionError
    from vlm_r1.sft import main as sft

    data = write_jsonl(images / f"plain_{tmp_path.name}.jsonl", [_row("img/rgb.png")] * 2)
    model = str(tiny_model_dir("qwen2_vl"))
    with pytest.raises(OptionError, match=r"^--system_prompt holds <\|im_end\|>, which this model's tokenizer"):
        run_main(grpo_run, model, data, system_prompt="Be brief.<|im_end|>")
    assert_no_training(tmp_path)
    with pytest.raises(OptionError, match=r"^--question_template holds <\|image_pad\|>"):
        sft(["--model_name_or_path", model, "--train_data", str(data), "--output_dir", str(tmp_path / "sft"),
             "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--max_steps", "1",
             "--question_template", "{question} <|image_pad|>"])  # fmt: skip
    assert not list((tmp_path / "sft").glob("checkpoint-*"))
    with pytest.raises(OptionError, match=r"^--system_prompt holds <\|vision_start\|>"):
        evaluate(["--model_name_or_path", model, "--data", str(data), "--device", "cpu",
                  "--system_prompt", "Look at <|vision_start|>."])  # fmt: skip
    run_main(grpo_run, model, data, system_prompt="Find <|object_ref_start|>it<|object_ref_end|>.")  # grounding tokens


def test_a_run_left_without_rows_is_refused(images, tmp_path, grpo_run, tiny_model_dir):
    """With skip_invalid_rows, a file whose every row is bad used to train 0 steps and exit 0 with a checkpoint."""
    bad = write_jsonl(images / f"all_bad_{tmp_path.name}.jsonl", [_row("img/rgb.png", box=(0, 0, 100, 100))] * 2)
    good = write_jsonl(images / f"good_{tmp_path.name}.jsonl", [_row("img/rgb.png")])
    with pytest.raises(DataError, match=rf"no training rows are left in {bad}: all 2 were skipped, listed in"):
        run_main(grpo_run, tiny_model_dir("qwen2_vl"), bad, "--skip_invalid_rows")
    assert_no_training(tmp_path)
    with pytest.raises(DataError, match=rf"no eval rows are left in {bad}: all 2 were skipped"):
        run_main(grpo_run, tiny_model_dir("qwen2_vl"), good, "--skip_invalid_rows", "--eval_data", str(bad),
                 "--eval_strategy", "steps", "--eval_steps", "1")  # fmt: skip
    assert_no_training(tmp_path)
