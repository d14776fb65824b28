"""The JSONL data layer: row validation (file:line: field), image paths, image modes, prompts."""

import io
import json
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vlm_r1.data import (
    DataError,
    DataWarning,
    ImageError,
    check_rows,
    load_image,
    load_rows,
    probe_image,
    to_conversation,
    to_rgb,
)


def _png(path, size=(40, 30), colour=(10, 20, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _row(value="<image>Find the cat.", answer="[1, 2, 10, 20]", image="a.png", **extra):
    row = {"image": image, "conversations": [{"from": "human", "value": value}, {"from": "gpt", "value": answer}]}
    row.update(extra)
    return row


def _write(path, rows):
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def root(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", size=(20, 20))
    return tmp_path


def test_valid_row_becomes_sample(root):
    path = _write(root / "d.jsonl", [_row(reward="iou")])
    (s,) = load_rows(path)
    assert s.images == (str(root / "a.png"),) and s.image_sizes == ((40, 30),)
    assert s.problem == "<image>Find the cat." and s.solution == "[1, 2, 10, 20]"
    assert s.reward == "iou" and s.source == f"{path}:1"


BAD_ROWS = [  # (line, field, message fragment)
    ("{not json", "json", "invalid JSON"),
    ("[1, 2]", "row", "expected a JSON object, got list"),
    ('{"image": "a.png", "conversations": [{"from": "human", "value": "<image>x"}, {"from": "gpt", "value": NaN}]}', "json", "NaN"),
    ({"image": "a.png"}, "conversations", "missing"),
    ({"image": "a.png", "conversations": "hi"}, "conversations", "expected a non-empty list"),
    ({"image": "a.png", "conversations": [{"from": "human", "value": "<image>x"}]}, "conversations", "no gpt turn"),
    ({"conversations": [{"from": "gpt", "value": "1"}]}, "conversations", "no human turn"),
    ({"conversations": [{"from": "human"}, {"from": "gpt", "value": "1"}]}, "conversations[0]", "expected"),
    ({"conversations": [{"from": "bot", "value": "x"}, {"from": "gpt", "value": "1"}]}, "conversations[0].from", "unknown role"),
    (_row(value=""), "conversations[0].value", "empty question"),
    (_row(value="<image>  "), "conversations[0].value", "empty question"),
    (_row(value=3), "conversations[0].value", "expected text"),
    (_row(image=5), "image", "expected a path or a list"),
    (_row(value="<image><image>Compare."), "conversations[0].value", "2 <image> placeholder(s) but 1 image(s)"),
    (_row(image=None, value="<image>x"), "conversations[0].value", "1 <image> placeholder(s) but 0 image(s)"),
    (_row(reward=3), "reward", "expected a non-empty string"),
    (_row(answer=None), "conversations[1].value", "null"),
    (_row(answer="  "), "conversations[1].value", "empty ground truth"),
    (_row(answer="[1, 2, 3"), "conversations[1].value", "looks like JSON"),
    (_row(answer="[0, 0, 1e999, 5]"), "conversations[1].value", "non-finite"),
    (_row(answer=[10, 2, 5, 20]), "solution", "reversed"),
    (_row(answer="[0, 0, 41, 30]"), "solution", "outside the 40x30 image"),
    (_row(answer=[0.1, 0.2, 0.5, 0.9]), "solution", "lies within the first pixel of the 40x30 image: boxes are pixels "
     "of the original image; if these are fractions of it (0-1), multiply x by 40 and y by 30"),
    (_row(answer=[{"bbox_2d": [0, 0, 1, 0.5], "label": "x"}]), "solution[0].bbox_2d", "fractions of it"),
    (_row(answer="<answer>a</answer> <answer>b</answer>"), "conversations[1].value", "holds <answer> / <think> tags"),
    (json.dumps(_row(value="<image>Find the \ud800 cat.")), "json", "lone surrogate"),
    (_row(answer=[{"bbox_2d": [1, 2, 3], "label": "x"}]), "solution[0].bbox_2d", "expected 4 numbers"),
    (_row(answer=[{"bbox_2d": [0, 0, 5, 5]}, {"bbox_2d": [0, -1, 5, 5]}]), "solution[1].bbox_2d", "outside"),
    (_row(image="missing.png"), "image", "not found"),
    (_row(image=["a.png", 7], value="<image><image>x"), "image[1]", "non-empty path"),
    (_row(image=["b.png", "a.png"], value="<image><image>x", answer="[0, 0, 30, 25]"), "solution",
     "outside the 20x20 image"),  # a box refers to the first image
    (_row(image="im\u0000g.png"), "image", "NUL"),
    (_row(image="a" * 5000 + ".png"), "image", "not a usable path"),
    (json.dumps(_row())[:-1] + ', "conversations": []}', "json", "duplicate key(s) 'conversations'"),
    (_row(answer='[{"bbox_2d": [0, 0, 5, 5], "bbox_2d": [1, 1, 5, 5], "label": "x"}]'), "conversations[1].value",
     "duplicate key(s) 'bbox_2d'"),
    # the image under another dataset's key: it was read as nothing, and the row trained on as text
    ({"images": ["a.png"], "conversations": [{"from": "human", "value": "Find the cat."},
                                             {"from": "gpt", "value": "3"}]}, "images", "is not read: a row's image is"),
    ({"image": None, "images": ["a.png"], "conversations": [{"from": "human", "value": "Which colour?"},
                                                            {"from": "gpt", "value": "red"}]}, "images", "is not read"),
    ({"Image": "a.png", "conversations": [{"from": "human", "value": "Which colour?"}, {"from": "gpt", "value": "red"}]},
     "Image", "is not read"),  # (an empty `image`, or one spelt otherwise, hid the lookalike key)
    ({"image": [], "file_name": "a.PNG", "conversations": [{"from": "human", "value": "Which colour?"},
                                                           {"from": "gpt", "value": "red"}]}, "file_name", "is not read"),
    # a box with no image: no pixels for it to be in (it was scored unconverted, in the model's frame)
    (_row(value="Find the cat.", image=None), "solution", "a box ground truth needs an image"),
    (_row(image=None, value="Which?", answer=[{"bbox_2d": [1, 2, 3, 4], "label": "x"}]), "solution", "needs an image"),
    ({"image": "a.png", "problem": "How many?", "solution": "<answer> 3 </answer>"}, "conversations",
     "missing. This row has R1-V / Visual-RFT keys (problem, solution)"),
    ("[" * 5000 + "]" * 5000, "json", "nested too deep to read"),
    ('{"conversations": [{"from": "human", "value": "q?"}, {"from": "gpt", "value": ' + "[" * 900 + "]" * 900 + "}]}",
     "solution", "nested too deep to read"),
]


def test_metadata_keys_of_text_only_rows_are_not_taken_for_images(root):
    row = {"file_name": "notes.txt", "image_url": None, "conversations": [{"from": "human", "value": "Which colour?"},
                                                                          {"from": "gpt", "value": "red"}]}
    (sample,) = load_rows(_write(root / "text_only.jsonl", [row]))
    assert sample.images == ()


def test_a_tiny_box_in_pixels_is_kept(root):
    (sample,) = load_rows(_write(root / "tiny_box.jsonl", [_row(answer="[20.2, 10.1, 20.9, 10.8]")]))
    assert json.loads(sample.solution) == [20.2, 10.1, 20.9, 10.8]  # a distant object, not fractions


@pytest.mark.parametrize("wrapped,value", [
    ("<answer>cat</answer>", "cat"), ("<think>It has fur.</think> <answer> cat </answer>", "cat"),
    ("<answer>[1, 2, 10, 20]</answer>", [1, 2, 10, 20]), ("<answer>3</answer>", 3),
    ('```json\n[{"bbox_2d": [1, 2, 10, 20], "label": "cat"}]\n```', [{"bbox_2d": [1, 2, 10, 20], "label": "cat"}]),
])
def test_vlm_r1_answer_wrappers_are_taken_off_ground_truths(root, wrapped, value):
    """VLM-R1 writes ground truths as completions; they are read as the value inside, not as a class named "<answer>…"."""
    (sample,) = load_rows(_write(root / "wrapped.jsonl", [_row(answer=wrapped)]))
    assert json.loads(sample.solution) == value


@pytest.mark.parametrize("line,field,fragment", BAD_ROWS)
def test_each_schema_error_names_file_line_field(root, line, field, fragment):
    path = _write(root / "d.jsonl", [_row(), line])
    with pytest.raises(DataError) as err:
        load_rows(path)
    msg = str(err.value)
    assert re.search(re.escape(f"{path}:2: {field}: ") + ".*" + re.escape(fragment), msg), msg
    assert f"{path}:1:" not in msg


def test_a_huge_value_is_quoted_in_part(root):
    """A 100,000-number box, a 100 KB role or reward name: the message quotes 200 characters of it (the box's whole
    1.5 MB went into the log and skipped_rows.jsonl)."""
    from vlm_r1.rewards import validate_solution

    rows = [_row(answer=[{"bbox_2d": list(range(100_000)), "label": "x"}]),
            {"conversations": [{"from": "h" * 100_000, "value": "q"}, {"from": "gpt", "value": "3"}]},
            _row(answer="cat") | {"reward": "r" * 100_000}]  # fmt: skip
    with pytest.raises(DataError) as err:
        load_rows(_write(root / "huge.jsonl", rows), validate_solution=validate_solution)
    assert len(err.value.problems) == 3 and all(len(p.message) < 800 for p in err.value.problems), err.value.problems


def test_all_problems_listed_at_once(root):
    lines = [_row()] + [b[0] for b in BAD_ROWS] + [_row()]
    path = _write(root / "d.jsonl", lines)
    with pytest.raises(DataError) as err:
        load_rows(path)
    bad_lines = {int(p.source.rsplit(":", 1)[1]) for p in err.value.problems}
    assert bad_lines == set(range(2, 2 + len(BAD_ROWS)))
    assert f"{len(BAD_ROWS)} of {len(BAD_ROWS) + 2} rows are invalid" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_listing_is_capped_with_a_count(root):
    path = _write(root / "d.jsonl", ["{bad"] * 120)
    with pytest.raises(DataError) as err:
        load_rows(path)
    assert len(err.value.problems) == 120
    assert str(err.value).count(": json: ") == 50 and "... and 70 more problems" in str(err.value)


def test_blank_lines_skipped_and_empty_file_refused(root):
    path = _write(root / "d.jsonl", ["", _row(), "   "])
    assert [s.source for s in load_rows(path)] == [f"{path}:2"]
    (root / "e.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="no rows"):
        load_rows(root / "e.jsonl")
    with pytest.raises(FileNotFoundError):
        load_rows(root / "nope.jsonl")


def test_skip_invalid_warns_with_count_and_keeps_report(root):
    path = _write(root / "d.jsonl", [_row(), "{bad", _row(image="missing.png"), _row(), _row(reward=1)])
    with pytest.warns(DataWarning, match="skipped 3 of 5"):
        rows = load_rows(path, skip_invalid=True)
    assert [s.source for s in rows] == [f"{path}:1", f"{path}:4"]
    assert [r.source for r in rows.skipped] == [f"{path}:2", f"{path}:3", f"{path}:5"]
    assert rows.skipped[1].reasons[0].startswith("image: ") and "not found" in rows.skipped[1].reasons[0]
    out = rows.report.write_skipped(root / "skipped.jsonl")
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["source"] == f"{path}:2" and len(lines[0]["reasons"]) == 1
    assert lines[0]["reasons"][0].startswith("json: invalid JSON")
    report = check_rows(path)  # the non-raising form
    assert len(report.samples) == 2 and report.n_rows == 5


def test_bad_image_files(root):
    (root / "junk.png").write_bytes(b"this is not a png")
    data = (root / "a.png").read_bytes()
    (root / "cut.png").write_bytes(data[: len(data) // 2])
    (root / "dir.png").mkdir()
    path = _write(root / "d.jsonl", [_row(image="junk.png"), _row(image="cut.png"), _row(image="dir.png")])
    with pytest.raises(DataError) as err:
        load_rows(path)
    msg = str(err.value)
    assert f"{path}:1: image: {root / 'junk.png'}: not a readable image" in msg
    assert f"{path}:2: image: {root / 'cut.png'}:" in msg
    assert f"{path}:3: image: {root / 'dir.png'}: not a file" in msg


def test_max_pixels_refuses_large_images(root):
    path = _write(root / "d.jsonl", [_row()])
    with pytest.raises(DataError, match="exceeds max_pixels=1000"):
        load_rows(path, max_pixels=1000)
    with pytest.raises(ImageError, match="a.png.*exceeds max_pixels"):
        load_image(root / "a.png", max_pixels=1000)
    assert len(load_rows(path, max_pixels=None)) == 1


def test_paths_escaping_the_root_are_refused(tmp_path):
    root = tmp_path / "root"
    _png(root / "in.png")
    outside = _png(tmp_path / "out.png")
    os.symlink(outside, root / "link_out.png")
    os.symlink(root / "in.png", root / "link_in.png")
    rows = [_row(image=x) for x in ("../out.png", str(outside), "link_out.png", "link_in.png", str(root / "in.png"))]
    path = _write(root / "d.jsonl", rows)
    with pytest.raises(DataError) as err:
        load_rows(path)
    assert sorted(p.source for p in err.value.problems) == [f"{path}:{i}" for i in (1, 2, 3)]
    assert all("outside the image root" in p.message and p.field == "image" for p in err.value.problems)
    assert len(load_rows(path, allow_outside_root=True)) == 5


def test_image_root_argument(tmp_path):
    _png(tmp_path / "imgs" / "x" / "a.png")
    path = _write(tmp_path / "d.jsonl", [_row(image="x/a.png")])
    (s,) = load_rows(path, image_root=tmp_path / "imgs")
    assert s.images == (str(tmp_path / "imgs" / "x" / "a.png"),)


def test_placeholders_prepended_or_kept_in_place(root):
    rows = [
        _row(value="Find the cat."),
        _row(value="Compare these.", image=["a.png", "b.png"]),
        _row(value="First <image> then <image>?", image=["a.png", "b.png"]),
        _row(value="What is 2+2?", image=None, answer="4"),
        _row(value="Count.", image=[], answer=3),
    ]
    got = load_rows(_write(root / "d.jsonl", rows))
    assert got[0].problem == "<image>Find the cat."
    assert got[1].problem == "<image><image>Compare these." and got[1].image_sizes == ((40, 30), (20, 20))
    assert got[2].problem == "First <image> then <image>?"
    assert got[3].images == () and got[3].image_sizes == () and got[3].solution == "4"
    assert got[4].problem == "Count."


@pytest.mark.parametrize(
    "answer,solution",
    [
        ("[10, 20, 30, 25]", "[10, 20, 30, 25]"),
        ([10, 20, 30, 25], "[10, 20, 30, 25]"),
        (" cat ", '"cat"'),
        ("yes", '"yes"'),
        ("3", "3"),
        (3, "3"),
        ('"B"', '"B"'),
        ('[{"bbox_2d": [1, 2, 3, 4], "label": "dog"}]', '[{"bbox_2d": [1, 2, 3, 4], "label": "dog"}]'),
        ([], "[]"),
        ({"label": "cat", "aliases": ["kitty"]}, '{"label": "cat", "aliases": ["kitty"]}'),
    ],
)
def test_ground_truth_normalised_to_json(root, answer, solution):
    (s,) = load_rows(_write(root / "d.jsonl", [_row(answer=answer)]))
    assert s.solution == solution and json.loads(s.solution) is not None


def test_reward_default_and_validate_solution(root):
    calls = []

    def check(reward, value):
        calls.append((reward, value))
        if value == "bad":
            raise ValueError("not a known class")

    rows = [_row(answer="cat"), _row(answer="bad", reward="acc"), _row(answer="dog", reward="acc")]
    path = _write(root / "d.jsonl", rows)
    with pytest.raises(DataError, match=re.escape(f"{path}:2: solution: not a known class")):
        load_rows(path, default_reward="cls", validate_solution=check)
    assert calls == [("cls", "cat"), ("acc", "bad"), ("acc", "dog")]
    rows = load_rows(path, default_reward="cls", skip_invalid=False, validate_solution=None)
    assert [s.reward for s in rows] == ["cls", "acc", "acc"]


# ----------------------------------------------------------------------------- image modes


def _roundtrip(im, fmt, tmp_path, **kw):
    p = tmp_path / f"img.{fmt.lower()}"
    im.save(p, format=fmt, **kw)
    out = load_image(p)
    assert out.mode == "RGB" and out.size == im.size
    return np.asarray(out)


def test_grayscale_and_bilevel(tmp_path):
    arr = _roundtrip(Image.fromarray(np.array([[0, 77], [200, 255]], np.uint8), "L"), "PNG", tmp_path)
    assert arr[:, :, 0].tolist() == [[0, 77], [200, 255]] and (arr == arr[:, :, :1]).all()
    bits = Image.fromarray(np.array([[0, 1], [1, 0]], bool))
    assert _roundtrip(bits, "PNG", tmp_path)[:, :, 1].tolist() == [[0, 255], [255, 0]]


def test_palette_with_and_without_transparency(tmp_path):
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putdata([0, 1])
    assert _roundtrip(im, "PNG", tmp_path).tolist() == [[[255, 0, 0], [0, 0, 255]]]
    im.info["transparency"] = 1  # index 1 (blue) is transparent -> white
    assert _roundtrip(im, "PNG", tmp_path, transparency=1).tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_alpha_modes_composite_on_white(tmp_path):
    rgba = Image.fromarray(np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 128]]], np.uint8), "RGBA")
    arr = _roundtrip(rgba, "PNG", tmp_path).astype(int)
    assert arr[0, 0].tolist() == [255, 0, 0] and arr[0, 1].tolist() == [255, 255, 255]
    assert np.abs(arr[0, 2] - [127, 127, 255]).max() <= 1
    la = Image.fromarray(np.array([[[0, 255], [0, 0], [100, 128]]], np.uint8), "LA")
    arr = _roundtrip(la, "PNG", tmp_path).astype(int)
    assert arr[0, 0].tolist() == [0, 0, 0] and arr[0, 1].tolist() == [255, 255, 255]
    assert np.abs(arr[0, 2] - 178).max() <= 1  # 100*128/255 + 255*127/255
    pa = rgba.convert("PA")
    assert np.asarray(to_rgb(pa))[0, 1].tolist() == [255, 255, 255]
    rgba_pm = rgba.convert("RGBa")
    assert np.asarray(to_rgb(rgba_pm))[0, 0].tolist() == [255, 0, 0]
    rgb_t = Image.new("RGB", (1, 1), (1, 2, 3))
    rgb_t.info["transparency"] = (1, 2, 3)
    assert np.asarray(to_rgb(rgb_t)).tolist() == [[[255, 255, 255]]]


def test_cmyk(tmp_path):
    im = Image.new("CMYK", (2, 1))
    im.putdata([(0, 255, 255, 0), (0, 0, 0, 255)])
    assert _roundtrip(im, "TIFF", tmp_path).tolist() == [[[255, 0, 0], [0, 0, 0]]]


def test_sixteen_bit_scaled_not_clipped(tmp_path):
    vals = np.array([[0, 257 * 100, 65535, 300]], np.uint16)
    im = Image.fromarray(vals)
    assert im.mode == "I;16"
    arr = _roundtrip(im, "PNG", tmp_path)
    assert arr[:, :, 0].tolist() == [[0, 100, 255, 1]] and (arr == arr[:, :, :1]).all()
    i32 = Image.fromarray(np.array([[0, 257 * 50, 70000, -5]], np.int32), "I")
    assert np.asarray(to_rgb(i32))[:, :, 2].tolist() == [[0, 50, 255, 0]]
    big = Image.frombytes("I;16B", (4, 1), vals.astype(">u2").tobytes())
    assert np.asarray(to_rgb(big))[:, :, 0].tolist() == [[0, 100, 255, 1]]


def test_other_modes(tmp_path):
    ycc = Image.new("RGB", (1, 1), (200, 30, 40)).convert("YCbCr")
    assert np.abs(np.asarray(to_rgb(ycc)).astype(int) - [200, 30, 40]).max() <= 3
    with pytest.raises(ImageError, match=r"img\.tiff: cannot convert mode F"):
        _roundtrip(Image.new("F", (2, 2), 0.5), "TIFF", tmp_path)
    with pytest.raises(ImageError, match=r"img\.tiff: image mode F has no unambiguous 8-bit RGB reading"):
        probe_image(tmp_path / "img.tiff")  # refused when the rows are checked, not at the row's first step


def test_truncated_and_corrupt_files_refused_with_name(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(buf, "JPEG")
    (tmp_path / "t.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"t\.jpg: truncated JPEG"):  # the header is fine, the end is missing
        probe_image(tmp_path / "t.jpg")
    with pytest.raises(ImageError, match=r"t\.jpg: cannot decode image, truncated"):
        load_image(tmp_path / "t.jpg")
    path = _write(tmp_path / "d.jsonl", [_row(image="t.jpg", answer="x")])
    with pytest.raises(DataError, match="d.jsonl:1: image: .*t.jpg: truncated JPEG"):
        load_rows(path)
    with pytest.raises(DataError, match="d.jsonl:1: image: .*t.jpg: cannot decode"):
        load_rows(path, decode_images=True)
    with pytest.raises(ImageError, match="nope.png: image file not found"):
        load_image(tmp_path / "nope.png")


# ----------------------------------------------------------------------------- prompts


def test_conversation_single_image_and_template():
    tpl = '{question} Answer as <answer>{"bbox_2d": [x1, y1, x2, y2]}</answer>.'
    msgs = to_conversation("<image>Find the red circle.", tpl, system_prompt="Be brief.")
    assert msgs == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": 'Find the red circle. Answer as <answer>{"bbox_2d": [x1, y1, x2, y2]}</answer>.'},
            ],
        },
    ]


def test_conversation_multi_image_in_place():
    (msg,) = to_conversation("Compare <image> and <image>.\n<image>")
    assert msg["content"] == [
        {"type": "text", "text": "Compare "},
        {"type": "image"},
        {"type": "text", "text": " and "},
        {"type": "image"},
        {"type": "text", "text": ".\n"},
        {"type": "image"},
    ]
    assert to_conversation("What is 2+2?") == [{"role": "user", "content": [{"type": "text", "text": "What is 2+2?"}]}]


def test_conversation_template_errors():
    with pytest.raises(ValueError, match="exactly once"):
        to_conversation("x", "no slot")
    with pytest.raises(ValueError, match="may not contain <image>"):
        to_conversation("x", "<image>{question}")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["<image>", "a", " ", "b c", "\n", "{x}"]), max_size=8))
def test_conversation_keeps_every_image_and_all_text(pieces):
    text = "".join(pieces)
    (msg,) = to_conversation(text)
    assert sum(item["type"] == "image" for item in msg["content"]) == text.count("<image>")
    joined = "".join(item.get("text", "<image>") for item in msg["content"])
    assert joined.replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


def test_an_unknown_reward_name_is_the_reward_fields_problem(root):
    """A misspelt row `reward` points at the `reward` field (or at default_reward), not at the ground truth."""
    from vlm_r1.rewards import validate_solution

    path = _write(root / "d.jsonl", [_row(reward="iou"), _row(reward="bogus"), _row()])
    with pytest.raises(DataError) as err:
        load_rows(path, default_reward="bogus_default", validate_solution=validate_solution)
    assert f"{path}:2: reward: unknown accuracy reward 'bogus'" in str(err.value)
    assert f"{path}:3: default_reward: unknown accuracy reward 'bogus_default'" in str(err.value)
    assert f"{path}:1:" not in str(err.value)


def test_exif_rotated_images_are_named_in_one_warning_per_file(root):
    from vlm_r1.data import DataWarning

    exif = Image.new("RGB", (40, 30)).getexif()
    exif[0x0112] = 6  # "rotate 90° to display": the stored grid stays 40x30, which is what boxes refer to
    Image.new("RGB", (40, 30), (200, 10, 10)).save(root / "rotated.jpg", exif=exif)
    path = _write(root / "exif.jsonl", [_row(image="rotated.jpg"), _row(image="rotated.jpg"), _row()])
    with pytest.warns(DataWarning, match=r"1 image\(s\) carry an EXIF rotation, which is not applied") as caught:
        rows = load_rows(path)
    assert len(rows) == 3 and len(caught) == 1 and rows[0].image_sizes == ((40, 30),)


def test_a_prompt_other_than_the_starting_checkpoints_is_named(tmp_path):
    """train and sft warn with this sentence when they start from a checkpoint trained with another prompt."""
    from vlm_r1.data import PROMPT_FILE, prompt_change_from, save_prompt

    save_prompt(tmp_path, "{question}", None)
    assert prompt_change_from(str(tmp_path), "{question}", None) is None
    change = prompt_change_from(str(tmp_path), "Q: {question}", "Be brief.")
    assert change.startswith("this run trains with question_template 'Q: {question}' (it was trained with "
                             "'{question}') and system_prompt 'Be brief.' (it was trained with None)")
    assert change.endswith("give --question_template '{question}' and no --system_prompt")
    assert prompt_change_from("Qwen/Qwen2.5-VL-3B-Instruct", "Q: {question}", None) is None  # a hub id records none
    assert prompt_change_from(str(tmp_path / "missing"), "Q: {question}", None) is None
    (tmp_path / PROMPT_FILE).write_text("{broken")
    assert "the prompt " in prompt_change_from(str(tmp_path), "{question}", None)  # said, not raised
