"""The training report: boxes drawn at the right pixels, the HTML gallery, curves, TensorBoard images, the CLI."""

from __future__ import annotations

import json
import logging
import math
from types import SimpleNamespace

import pytest
from PIL import Image

from vlm_r1.report import Gallery, draw_answer, ground_truth_boxes, main, pick_groups, write_curves
from vlm_r1.report.draw import PREDICTION, TRUTH, display_scale
from vlm_r1.rewards.parsing import Detection, parse_answer
from vlm_r1.trainer.grpo import ScoredBatch
from vlm_r1.trainer.report_callback import ReportCallback

GREY = (128, 128, 128)


def _batch(tmp_path, step=3, g=3) -> ScoredBatch:
    """Three prompt groups of g completions: REC (one HTML-hostile completion), detection, a text-only row."""
    image = tmp_path / "img.png"
    Image.new("RGB", (100, 80), GREY).save(image)
    groups = [
        ({"image_paths": [str(image)], "image_sizes": [[100, 80]], "problem": "<image>Find the red circle.",
          "solution": "[10, 10, 50, 40]", "reward": "iou", "source": "rec.jsonl:1"},
         ["<answer>[20, 20, 60, 60]</answer>", "<script>alert(1)</script> <answer>none</answer>", "no answer"]),
        ({"image_paths": [str(image)], "image_sizes": [[100, 80]], "problem": "<image>Find all shapes.",
          "solution": json.dumps([{"bbox_2d": [5, 5, 30, 30], "label": "a"}, {"bbox_2d": [60, 40, 90, 70], "label": "b"}]),
          "reward": "map", "source": "det.jsonl:7"},
         ['<answer>[{"bbox_2d": [5, 5, 30, 30], "label": "a", "score": 0.9}]</answer>', "<answer>[]</answer>",
          "<answer>[9, 9, 1, 1]</answer>"]),
        ({"image_paths": [], "image_sizes": [], "problem": "What is 2+2?", "solution": '"4"', "reward": "accuracy",
          "source": "qa.jsonl:2"}, ["<answer>4</answer>", "<answer>5</answer>", "<answer>4</answer>"]),
    ]
    rows, completions = [], []
    for row, texts in groups:
        for text in texts[:g]:
            rows.append(dict(row))
            completions.append(text)
    n = len(rows)
    return ScoredBatch(
        step=step, rows=rows, completions=completions, answers=[parse_answer(c) for c in completions],
        rewards={"iou_reward": [0.5] * 3 + [math.nan] * (n - 3), "format_reward": [1.0] * n},
    )


def test_ground_truth_boxes_by_task():
    assert ground_truth_boxes("[1, 2, 3, 4]") == [((1.0, 2.0, 3.0, 4.0), None)]
    det = json.dumps([{"bbox_2d": [0, 0, 5, 5], "label": "cat"}, {"label": "no box"}])
    assert ground_truth_boxes(det) == [((0.0, 0.0, 5.0, 5.0), "cat")]
    for other in ('"cat"', "3", '"yes"', "[1, 2, 3]", "not json", '{"label": "cat", "aliases": []}', "[1, 2, NaN, 4]"):
        assert ground_truth_boxes(other) == [], other


def test_boxes_drawn_at_the_right_pixels():
    image = Image.new("RGB", (100, 80), GREY)
    assert display_scale(image.size) == 4  # 100 px -> 400 px, a whole factor
    pred = Detection(box=(20.0, 20.0, 60.0, 60.0), label=None, score=None)
    canvas = draw_answer(image, [((10.0, 10.0, 50.0, 40.0), None)], [pred])
    assert canvas.size == (400, 320)
    px = canvas.getpixel
    # truth [10,10,50,40] -> [40,40,200,160]: a 2-px green line just outside the box
    assert px((38, 100)) == px((39, 100)) == TRUTH
    assert px((200, 100)) == px((201, 100)) == TRUTH
    assert px((120, 38)) == px((120, 161)) == TRUTH
    assert px((40, 100)) == GREY and px((37, 100)) == GREY
    # prediction [20,20,60,60] -> [80,80,240,240]: a 2-px red line just inside
    assert px((80, 160)) == px((81, 160)) == PREDICTION
    assert px((239, 160)) == px((238, 160)) == PREDICTION
    assert px((160, 80)) == px((160, 239)) == PREDICTION
    assert px((79, 200)) == GREY and px((82, 200)) == GREY and px((240, 200)) == GREY


def test_boxes_at_or_beyond_the_border_keep_every_side_visible():
    image = Image.new("RGB", (100, 80), GREY)
    for truth, pred in ([(0.0, 30.0, 50.0, 80.0), (-50.0, -50.0, 500.0, 500.0)], [(0.0, 0.0, 100.0, 80.0), None]):
        dets = [] if pred is None else [Detection(box=pred, label=None, score=None)]
        canvas = draw_answer(image, [] if pred else [(truth, None)], dets)
        colour = PREDICTION if pred else TRUTH
        w, h = canvas.size
        sides = {"left": (0, h // 2), "right": (w - 1, h // 2), "top": (w // 2, 0), "bottom": (w // 2, h - 1)}
        assert {side: canvas.getpixel(xy) for side, xy in sides.items()} == dict.fromkeys(sides, colour)
    canvas = draw_answer(image, [((0.0, 30.0, 50.0, 80.0), None)], [])  # touching the left and bottom borders
    assert canvas.getpixel((0, 200)) == TRUTH and canvas.getpixel((100, 319)) == TRUTH


def test_perfect_prediction_keeps_both_colours_and_labels_and_large_images_shrink():
    image = Image.new("RGB", (1280, 640), GREY)
    assert display_scale(image.size) == 0.5
    box = (100.0, 100.0, 300.0, 300.0)
    canvas = draw_answer(image, [(box, None)], [Detection(box=box, label="dog", score=0.87)])
    assert canvas.size == (640, 320)
    assert canvas.getpixel((49, 100)) == TRUTH and canvas.getpixel((50, 100)) == PREDICTION
    label_area = [canvas.getpixel((x, y)) for x in range(50, 90) for y in range(30, 50)]
    assert (255, 255, 255) in label_area and PREDICTION in label_area  # white text on a red tag above the box
    # absurd or malformed boxes do not break drawing
    draw_answer(image, [], [Detection(box=(-1e7, 0, 1e7, 5), label="x" * 500), Detection(box=None)])


def _text_lines(canvas, xs, ys):
    """How many separate lines of white tag text the region holds (runs of rows with a whitish pixel)."""
    rows = [y for y in ys if any(min(canvas.getpixel((x, y))) > 150 for x in xs)]
    return sum(1 for i, y in enumerate(rows) if i == 0 or y != rows[i - 1] + 1)


def test_every_label_stays_readable_and_ground_truth_is_labelled():
    """Two predictions with the same corner get two tags, one beside the other, not one over the other; a labelled
    ground-truth box gets a green tag under it (a right box with the wrong class must look wrong)."""
    image = Image.new("RGB", (100, 80), GREY)
    box = (20.0, 30.0, 60.0, 60.0)  # [80, 120, 240, 240] on the canvas (scale 4)
    duplicates = [Detection(box=box, label="cat", score=0.9), Detection(box=box, label="cat", score=0.8)]
    canvas = draw_answer(image, [(box, "dog")], duplicates)
    assert _text_lines(canvas, range(80, 140), range(90, 150)) == 2  # both red tags readable (one used to cover the other)
    assert _text_lines(canvas, range(78, 120), range(242, 270)) == 1  # the truth's label, under its box
    assert TRUTH in {canvas.getpixel((x, y)) for x in range(78, 120) for y in range(242, 270)}
    near_bottom = draw_answer(image, [((20.0, 10.0, 60.0, 75.0), "cat"), ((20.0, 40.0, 60.0, 80.0), "dog")], [])
    assert _text_lines(near_bottom, range(78, 120), range(200, 320)) == 2  # no room below: one moves up, not over
    single = draw_answer(image, [(box, None)], duplicates[:1])
    assert _text_lines(single, range(80, 140), range(90, 150)) == 1
    assert _text_lines(single, range(78, 120), range(242, 270)) == 0  # an unlabelled truth (REC) has no tag


def test_pick_groups_takes_whole_groups_in_order(tmp_path):
    assert pick_groups(_batch(tmp_path), 2) == [[0, 1, 2], [3, 4, 5]]
    assert pick_groups(_batch(tmp_path), 5) == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_gallery_files_html_escaping_and_bound(tmp_path):
    gallery = Gallery(tmp_path / "report", keep=2)
    sheets = gallery.add(_batch(tmp_path), step=3, groups=3, weights={"iou_reward": 2.0})
    assert [tag for tag, _ in sheets] == ["gallery/prompt_0", "gallery/prompt_1"]  # the text-only group has no sheet
    page = (tmp_path / "report" / "gallery.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "&lt;image&gt;Find the red circle." in page
    assert "What is 2+2?" in page and "n/a" in page  # NaN rewards read "does not apply"
    assert "2.000" in page  # total = 2 * 0.5 + 1.0
    assert "1 malformed" in page  # the reversed box [9, 9, 1, 1]
    images = sorted((tmp_path / "report" / "images").iterdir())
    assert len(images) == 6 and all(p.stat().st_size > 0 for p in images)
    for _, sheet in sheets:
        assert sheet.width > 3 * 300  # three completions side by side
    for step in (5, 7):
        gallery.add(_batch(tmp_path), step=step, groups=1)
    index = json.loads((tmp_path / "report" / "gallery.json").read_text())
    assert [s["step"] for s in index["snapshots"]] == [5, 7]
    assert sorted(p.name for p in (tmp_path / "report" / "images").iterdir()) == [
        f"step000000{s}_p0_c{j}.png" for s in (5, 7) for j in range(3)
    ]
    page = Gallery(tmp_path / "report").write_html().read_text()  # rebuilt from gallery.json
    assert page.index('id="step7"') < page.index('id="step5"')  # newest first


def _history(n=30):
    history = []
    for step in range(1, n + 1):
        history.append({
            "step": step, "loss": 0.1 / step, "reward": step / n, "reward_std": 0.1, "kl": 0.01 * step,
            "rewards/iou_reward/mean": step / n, "rewards/format_reward/mean": 1.0,
            "completions/mean_length": 20.0, "completions/min_length": 10.0, "completions/max_length": 30.0,
        })
    history.append({"step": n, "eval_reward": 0.7})
    history.append({"step": n, "train_runtime": 12.0})
    return history


def test_curves_png(tmp_path):
    path = write_curves(_history(), tmp_path)
    assert path == tmp_path / "curves.png" and path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.width >= 1000 and image.height >= 600  # 2 columns x 3 rows of panels
    assert write_curves([{"step": 1, "train_runtime": 3.0}], tmp_path / "none") is None
    sft = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}, {"step": 2, "eval_loss": 0.7}]
    with Image.open(write_curves(sft, tmp_path / "sft")) as image:  # eval loss: dots on the loss panel, once
        assert image.width == 600  # one panel (it was drawn again in a panel of its own)


def test_cli_redraws_from_trainer_state(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoint-10").mkdir(parents=True)
    (run / "checkpoint-10" / "trainer_state.json").write_text(json.dumps({"log_history": _history(10)}))
    (run / "checkpoint-2").mkdir()
    (run / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"log_history": _history(2)}))
    assert main([str(run)]) == 0
    assert (run / "report" / "curves.png").stat().st_size > 0
    assert "checkpoint-10" in capsys.readouterr().out
    for folder, message in ((tmp_path / "missing", "no such folder or file"),
                            (tmp_path / "grqo_run", "is a GRQO run: its losses and evaluations are in"),
                            (tmp_path / "work", "is a pipeline work dir: its GRPO run is")):
        if folder.name == "grqo_run":
            folder.mkdir()
            (folder / "log.jsonl").write_text('{"step": 1, "loss": 2.0}\n')
        elif folder.name == "work":
            (folder / "grpo").mkdir(parents=True)
        with pytest.raises(SystemExit) as refused:
            main([str(folder)])
        assert refused.value.code == 2 and message in capsys.readouterr().err
    (run / "checkpoint-12").mkdir()
    (run / "checkpoint-12" / "trainer_state.json").write_text('{"log_history": [{"step": 1, "lo')  # save cut short
    assert main([str(run)]) == 0 and "checkpoint-10" in capsys.readouterr().out  # the readable history is used
    # a fresh run in the same folder: its report/log_history.json is newer than the earlier run's longer history
    import os

    (run / "trainer_state.json").write_text(json.dumps({"log_history": _history(10)}))
    (run / "report" / "log_history.json").write_text(json.dumps({"log_history": _history(1)}))
    for older in (run / "trainer_state.json", *run.glob("checkpoint-*/trainer_state.json")):
        os.utime(older, (1_000_000_000, 1_000_000_000))
    assert main([str(run)]) == 0 and "report/log_history.json (3 entries)" in capsys.readouterr().out
    # a copied folder, its files timed by the copy in any order: the newest is a checkpoint's, and the longer
    # history that begins with it is the same run further on
    (run / "report" / "log_history.json").unlink()
    os.utime(run / "trainer_state.json", (2_000_000_000, 2_000_000_000))
    os.utime(run / "checkpoint-10" / "trainer_state.json", (2_000_000_100, 2_000_000_100))
    ten_steps = json.loads((run / "checkpoint-10" / "trainer_state.json").read_text())["log_history"]
    (run / "trainer_state.json").write_text(json.dumps({"log_history": ten_steps + [{"step": 11, "loss": 0.01}]}))
    os.utime(run / "trainer_state.json", (2_000_000_000, 2_000_000_000))
    assert main([str(run)]) == 0 and f"{run / 'trainer_state.json'} ({len(ten_steps) + 1} entries)" in capsys.readouterr().out
    # a run trained with report_dir keeps its log history there: --out finds it
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "log_history.json").write_text(json.dumps({"log_history": _history(5)}))
    (tmp_path / "bare_run").mkdir()
    assert main([str(tmp_path / "bare_run")]) == 1
    assert "pass --out REPORT_DIR" in capsys.readouterr().err
    assert main([str(tmp_path / "bare_run"), "--out", str(moved)]) == 0
    assert (moved / "curves.png").stat().st_size > 0

    # a gallery index cut short or edited by hand: one line naming the file (it was a traceback)
    Gallery(run / "report").add(_batch(tmp_path), step=1, groups=1)
    index = run / "report" / "gallery.json"
    whole = index.read_text()
    for text, problem in ((whole[:100], "JSONDecodeError"), ('{"snapshots": [{"step": 1}]}', "KeyError: 'groups'"),
                          (whole.replace('"total": ', '"total": "x", "was": ', 1), "a field of the wrong type")):
        index.write_text(text)
        assert main([str(run)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"vlm-r1 report: {index}: not a gallery index vlm-r1 can read") and problem in err, err


def _fake_trainer(tmp_path, batch, writer=None, gallery_every=2):
    from transformers.integrations import TensorBoardCallback

    args = SimpleNamespace(output_dir=str(tmp_path / "out"), report_dir=None, gallery_every=gallery_every)
    callbacks = [TensorBoardCallback(tb_writer=writer)] if writer is not None else []
    return SimpleNamespace(args=args, last_scored_batch=batch, callback_handler=SimpleNamespace(callbacks=callbacks),
                           reward_func_names=["iou_reward", "format_reward"], reward_weights=[1.0, 1.0])


def test_callback_writes_report_and_tensorboard_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    trainer = _fake_trainer(tmp_path, _batch(tmp_path), writer)
    callback = ReportCallback(trainer)
    assert callback.dir == tmp_path / "out" / "report" and callback.every == 2
    state = SimpleNamespace(is_world_process_zero=True, global_step=1, max_steps=10, log_history=_history(4))
    callback.on_step_end(None, state, None)  # not a gallery step
    assert not (callback.dir / "gallery.html").exists()
    state.global_step = 2
    callback.on_step_end(None, state, None)
    state.global_step = 4
    callback.on_step_end(None, state, None)  # same batch object: not drawn twice
    trainer.last_scored_batch = _batch(tmp_path, step=5)
    state.global_step = 5
    callback.on_train_end(None, state, None)  # the end always snapshots a new batch
    writer.close()
    assert [s["step"] for s in json.loads((callback.dir / "gallery.json").read_text())["snapshots"]] == [2, 5]
    assert (callback.dir / "curves.png").stat().st_size > 0
    assert json.loads((callback.dir / "log_history.json").read_text())["log_history"] == state.log_history
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    assert {"gallery/prompt_0", "gallery/prompt_1"} <= set(events.Tags()["images"])
    shots = events.Images("gallery/prompt_0")
    assert [s.step for s in shots] == [2, 5] and shots[0].width > 900
    assert shots[0].encoded_image_string[:4] == b"\x89PNG"
    assert callback.failures == 0
    assert main([str(tmp_path / "out")]) == 0  # the CLI reads report/log_history.json


def test_a_new_run_starts_its_own_gallery_and_never_deletes_outside_it(tmp_path):
    trainer = _fake_trainer(tmp_path, _batch(tmp_path, step=3))
    first = ReportCallback(trainer)
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=10, log_history=[])
    first.on_train_begin(None, state, None)
    state.global_step = 4
    first.on_step_end(None, state, None)
    index = first.dir / "gallery.json"
    old_image = first.dir / "images" / "step0000004_p0_c1.png"
    assert old_image.exists()
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    snapshots = json.loads(index.read_text())["snapshots"]
    snapshots[0]["groups"][0]["cards"][0]["image"] = str(outside)  # an edited index names a file outside
    index.write_text(json.dumps({"snapshots": snapshots}))

    resumed = ReportCallback(_fake_trainer(tmp_path, _batch(tmp_path, step=7)))
    state.global_step = 4  # resumed at step 4: the snapshot of step 4 is this run's history
    resumed.on_train_begin(None, state, None)
    state.global_step = 6
    resumed.on_step_end(None, state, None)
    assert [s["step"] for s in json.loads(index.read_text())["snapshots"]] == [4, 6]

    fresh = ReportCallback(_fake_trainer(tmp_path, _batch(tmp_path, step=9)))
    state.global_step = 0  # a new run in the same output_dir
    (first.dir / "curves.png").write_bytes(b"an earlier run's curves")
    fresh.on_train_begin(None, state, None)
    # from the start, not at its first snapshot or save: nothing of the earlier run is shown as this run's
    assert json.loads(index.read_text())["snapshots"] == [] and not (first.dir / "curves.png").exists()
    assert "No snapshot yet" in (first.dir / "gallery.html").read_text()
    state.global_step = 2
    fresh.on_step_end(None, state, None)
    assert [s["step"] for s in json.loads(index.read_text())["snapshots"]] == [2]
    assert outside.read_text() == "keep me" and not old_image.exists()


def test_callback_never_raises_but_reports(tmp_path, caplog):
    broken = SimpleNamespace(step=0, rows=[{"image_paths": [str(tmp_path / "gone.png")], "problem": "p"}],
                             completions=["x"], answers=[parse_answer("x")], rewards={})
    callback = ReportCallback(_fake_trainer(tmp_path, broken), report_dir=str(tmp_path / "r"), gallery_every=1)
    state = SimpleNamespace(is_world_process_zero=True, global_step=1, max_steps=3, log_history=[])
    with caplog.at_level(logging.WARNING, logger="vlm_r1"):
        callback.on_step_end(None, state, None)
        callback.trainer.last_scored_batch = SimpleNamespace(**vars(broken))
        callback.on_step_end(None, state, None)
        callback.on_train_end(None, state, None)
    assert callback.failures == 2
    warnings = [r for r in caplog.records if "gallery failed" in r.getMessage()]
    assert len(warnings) == 1  # once, with the traceback
    assert "2 report step(s) failed" in caplog.text
    assert (tmp_path / "r" / "errors.log").read_text().count("--- gallery") == 2


def test_callback_silent_off_main_process(tmp_path):
    callback = ReportCallback(_fake_trainer(tmp_path, _batch(tmp_path)), gallery_every=1)
    state = SimpleNamespace(is_world_process_zero=False, global_step=1, max_steps=1, log_history=_history(2))
    callback.on_step_end(None, state, None)
    callback.on_save(None, state, None)
    callback.on_train_end(None, state, None)
    assert not callback.dir.exists()


def test_rolling_mean_skips_non_finite_values():
    """A skipped step logs a non-finite grad_norm: the smoothed line goes on after it."""
    import math

    from vlm_r1.report.curves import _rolling

    out = _rolling([1.0, 3.0, math.nan, 5.0, 7.0, 9.0], 2)
    assert out[:2] == [1.0, 2.0] and out[2] == 3.0 and out[3:] == [5.0, 6.0, 8.0]
    assert math.isnan(_rolling([math.inf, math.nan], 2)[1])


def test_a_long_title_is_cut_to_the_longest_prefix_that_fits():
    from PIL import Image, ImageDraw

    from vlm_r1.report.draw import _fit, font

    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    text = "Detect every object of these classes: " + ", ".join(f"class {i}" for i in range(2000))
    cut = _fit(draw, text, 300)
    assert cut.endswith("…") and text.startswith(cut[:-1])
    assert draw.textlength(cut, font=font()) <= 300 < draw.textlength(text[: len(cut)] + "…", font=font())
    assert _fit(draw, "short", 300) == "short"


def test_hundreds_of_labelled_boxes_are_drawn_with_the_first_labels_only():
    """Every box is drawn, but only the first MAX_TAGS labels (the truth's first) are placed, and one grey tag says
    how many were left out: placing 1,000 labels that avoid each other took ~21 s per picture."""
    from vlm_r1.report.draw import MAX_TAGS, MORE

    image = Image.new("RGB", (400, 300), "white")
    detections = [Detection((4.0 * i % 380, 7.0 * i % 280, 4.0 * i % 380 + 12, 7.0 * i % 280 + 12), f"o{i}", 0.5)
                  for i in range(200)]  # fmt: skip
    out = draw_answer(image, [((10, 10, 60, 60), "truth")], detections, scale=1.0)
    assert any(out.getpixel((x, 299)) == MORE for x in range(40)), "no 'labels not drawn' tag at the bottom left"
    below_truth = [(x, y) for x in range(0, 80) for y in range(63, 80)]  # under the box's outline (y 60-61)
    assert TRUTH in {out.getpixel(p) for p in below_truth}  # the truth's label kept, first
    unlabelled = draw_answer(image, [((10, 10, 60, 60), None)], detections, scale=1.0)
    assert TRUTH not in {unlabelled.getpixel(p) for p in below_truth}  # (what that region holds without it)
    few = draw_answer(image, [], detections[:MAX_TAGS], scale=1.0)
    assert MORE not in {few.getpixel((x, 299)) for x in range(40)}


def test_a_question_on_several_lines_is_drawn_on_one(tmp_path):
    """A multiple-choice question holds line breaks: PIL refused to measure the title, and no gallery was written."""
    batch = _batch(tmp_path, g=1)
    batch.rows[0]["problem"] = "<image>Look at the image.\nFind the red circle.\r\nA. left\nB. right"
    sheets = Gallery(tmp_path / "report").add(batch, step=1, groups=1)
    assert [tag for tag, _ in sheets] == ["gallery/prompt_0"]
    assert "Find the red circle." in (tmp_path / "report" / "gallery.html").read_text()
