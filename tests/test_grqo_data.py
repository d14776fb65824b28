"""GRQO's detection data: ground truth validated at load time, shared label normalisation and image loading."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from vlm_r1.data import DataError, ImageError
from vlm_r1.grqo.data import DetectionExample, check_classes, class_names, load_detection_examples, make_batch


def _write(tmp_path, *solutions, reward=None):
    Image.new("RGB", (64, 48), (0, 0, 0)).save(tmp_path / "a.png")
    rows = []
    for sol in solutions:
        row = {"image": "a.png", "conversations": [{"from": "human", "value": "<image>Detect every shape."},
                                                    {"from": "gpt", "value": json.dumps(sol)}]}  # fmt: skip
        if reward:
            row["reward"] = reward
        rows.append(json.dumps(row))
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


GOOD = [{"bbox_2d": [1, 2, 30, 40], "label": "  Red\u00a0 CIRCLE "}]


@pytest.mark.parametrize("bad", [[{"label": "red circle"}],  # no bbox_2d (was a bare KeyError)
                                 [10, 10, 20, 20],  # REC-shaped ground truth (was a TypeError)
                                 [{"bbox_2d": [1, 2, 30, 40], "label": ""}]])  # fmt: skip
def test_bad_ground_truth_is_refused_at_load_time_with_file_and_line(tmp_path, bad):
    path = _write(tmp_path, GOOD, bad, reward="rec")
    with pytest.raises(DataError) as err:
        load_detection_examples(path)
    assert f"{path}:2: solution:" in str(err.value) and f"{path}:1:" not in str(err.value)


def test_labels_and_classes_use_normalize_label(tmp_path):
    (example,) = load_detection_examples(_write(tmp_path, GOOD))
    assert example.labels == ("red circle",) and example.boxes == ((1.0, 2.0, 30.0, 40.0),)
    assert class_names([example], ["Blue  SQUARE"]) == ["blue square", "red circle"]
    assert check_classes(["ＲＥＤ Circle"]) == ["red circle"]  # NFKC folds full-width letters
    for bad in (["red circle", "Red Circle"], ["st. louis"], [" "]):
        with pytest.raises(ValueError):
            check_classes(bad)


def test_make_batch_loads_images_through_the_data_layer(tmp_path):
    Image.new("RGB", (64, 48)).save(tmp_path / "b.png")
    data = (tmp_path / "b.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    example = DetectionExample(str(tmp_path / "cut.png"), 64, 48, ((1.0, 2.0, 30.0, 40.0),), ("red circle",))
    with pytest.raises(ImageError, match="cut.png"):  # truncated: refused, naming the file
        make_batch([example], processor=None, classes=["red circle"])


def test_synthetic_grqo_rows_leave_a_make_data_split_alone(tmp_path):
    """The rows GRQO filters from are written in their own folder: a `detection_train.jsonl` beside is untouched."""
    from vlm_r1.grqo.data import write_synthetic_detection
    from vlm_r1.synthetic import write_split

    mine = write_split(tmp_path, "detection", "train", 5, seed=1, image_size=64)
    before = mine.read_text(), sorted(p.name for p in (tmp_path / "images").iterdir())
    images_before = {p.name: p.read_bytes() for p in (tmp_path / "images").iterdir()}
    path = write_synthetic_detection(tmp_path, "train", 2, seed=0, image_size=64)
    assert (mine.read_text(), sorted(p.name for p in (tmp_path / "images").iterdir())) == before
    assert {p.name: p.read_bytes() for p in (tmp_path / "images").iterdir()} == images_before
    examples = load_detection_examples(path)  # its rows point at their own images
    assert len(examples) == 2 and all("grqo_source_train" in e.image for e in examples)


@pytest.mark.parametrize("label", ["red circle?", "st. louis"])
def test_row_label_with_a_phrase_break_is_a_data_error_with_file_line_and_field(tmp_path, label):
    """'.' and '?' split Grounding DINO's prompt into phrases: a row label holding one is refused at load time,
    naming the row and the object like every other row problem (it was a bare ValueError listing names only)."""
    bad = [GOOD[0], {"bbox_2d": [2, 3, 20, 30], "label": label}]
    path = _write(tmp_path, GOOD, bad)
    with pytest.raises(DataError) as err:
        load_detection_examples(path)
    assert f"{path}:2: solution[1].label:" in str(err.value) and f"{path}:1:" not in str(err.value)


def test_two_image_row_is_a_data_error(tmp_path):
    path = _write(tmp_path, GOOD)
    row = json.loads(path.read_text())
    row["image"] = ["a.png", "a.png"]
    row["conversations"][0]["value"] = "<image><image>Detect every shape."
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=f"{path}:1: image: a detection row needs exactly one image, got 2"):
        load_detection_examples(path)
