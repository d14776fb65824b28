"""Synthetic shapes: determinism, exact boxes, task consistency, the domain split, JSONL round trip."""

import dataclasses
import json

import numpy as np
import pytest

from vlm_r1 import synthetic as syn
from vlm_r1.data import load_rows


def _examples(task, split, n, seed=0, image_size=112):
    return [syn.make_example(task, split, i, seed, image_size) for i in range(n)]


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    a = syn.write_split(tmp_path / "a", "detection", "train", 12, seed=3)
    b = syn.write_split(tmp_path / "b", "detection", "train", 12, seed=3)
    c = syn.write_split(tmp_path / "c", "detection", "train", 12, seed=4)
    assert a.read_bytes() == b.read_bytes()
    for i in range(12):
        name = f"images/detection_train_{i:06d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_train_and_test_differ_but_share_rules():
    train = _examples("rec", "train", 5)
    test = _examples("rec", "test", 5)
    assert [e.answer for e in train] != [e.answer for e in test]
    assert syn.DOMAINS["test"] == dataclasses.replace(syn.DOMAINS["train"], name="test")


@pytest.mark.parametrize("split", ["train", "ood"])
@pytest.mark.parametrize("task", syn.TASKS)
def test_boxes_are_tight_and_objects_disjoint(task, split):
    for ex in _examples(task, split, 15):
        arr = np.asarray(ex.image)
        assert ex.image.mode == "RGB" and ex.image.size == (112, 112)
        for obj in ex.objects:
            x1, y1, x2, y2 = obj.box
            # the gap between objects is >= 2 px, so a 1-px margin sees only this object
            X1, Y1 = max(0, x1 - 1), max(0, y1 - 1)
            win = arr[Y1 : y2 + 1, X1 : x2 + 1]
            ys, xs = np.nonzero(np.all(win == obj.rgb, axis=-1))
            assert (xs.min() + X1, ys.min() + Y1, xs.max() + X1 + 1, ys.max() + Y1 + 1) == obj.box
        for i, a in enumerate(ex.objects):
            for b in ex.objects[i + 1 :]:
                ax1, ay1, ax2, ay2 = a.box
                bx1, by1, bx2, by2 = b.box
                assert ax2 <= bx1 or bx2 <= ax1 or ay2 <= by1 or by2 <= ay1


def test_background_never_equals_an_object_colour():
    for ex in _examples("counting", "ood", 10) + _examples("counting", "train", 10):
        arr = np.asarray(ex.image).reshape(-1, 3)
        # object fills have a channel <= 72; backgrounds never go below 180
        dark = arr.min(axis=1) < 150
        assert dark.sum() == sum(
            int(np.all(np.asarray(ex.image)[o.box[1] : o.box[3], o.box[0] : o.box[2]] == o.rgb, axis=-1).sum())
            for o in ex.objects
        )


@pytest.mark.parametrize("split", ["train", "ood"])
def test_rec_referent_is_unique_and_answer_is_its_box(split):
    for ex in _examples("rec", split, 40):
        words = ex.question.rstrip(".?").split()
        colour = next(w for w in words if w in syn.COLOURS)
        shape = next(w for w in words if w in syn.SHAPES)
        hits = [o for o in ex.objects if (o.colour, o.shape) == (colour, shape)]
        assert len(hits) == 1 and ex.answer == list(hits[0].box)


def test_detection_answers_match_objects_and_include_empty_cases():
    empty = 0
    for ex in _examples("detection", "train", 80):
        boxes = {tuple(o.box): o.label for o in ex.objects}
        for det in ex.answer:
            assert boxes[tuple(det["bbox_2d"])] == det["label"]
        empty += ex.answer == []
        if "every object" in ex.question or "all objects" in ex.question:
            assert len(ex.answer) == len(ex.objects)
    assert 0 < empty < 40


def test_counting_answer_counts_the_matching_objects():
    for ex in _examples("counting", "train", 40) + _examples("counting", "ood", 20):
        q = ex.question
        colour = next((c for c in syn.COLOURS if f" {c} " in q), None)
        shape = next((s for s, p in syn.PLURALS.items() if p in q), None)
        want = sum((colour is None or o.colour == colour) and (shape is None or o.shape == shape) for o in ex.objects)
        assert ex.answer == want and isinstance(ex.answer, int)


def test_classification_is_one_object():
    for ex in _examples("classification", "train", 20):
        assert len(ex.objects) == 1 and ex.answer == ex.objects[0].shape


def test_ood_pairs_never_appear_in_train_or_test():
    held = set(syn.HELD_OUT_PAIRS)
    assert held and held.isdisjoint(syn.SEEN_PAIRS) and held | set(syn.SEEN_PAIRS) == set(syn.ALL_PAIRS)
    for task in syn.TASKS:
        for split in ("train", "test"):
            for ex in _examples(task, split, 30):
                assert not held & {(o.colour, o.shape) for o in ex.objects}
                assert not any(f"{c} {s}" in ex.question or f"{c} {syn.PLURALS[s]}" in ex.question for c, s in held)


def test_ood_targets_are_held_out_and_sizes_unseen():
    for ex in _examples("rec", "ood", 30):
        words = ex.question.rstrip(".?").split()
        pair = (next(w for w in words if w in syn.COLOURS), next(w for w in words if w in syn.SHAPES))
        assert pair in syn.HELD_OUT_PAIRS
        assert len(ex.objects) >= 4  # 3..6 distractors
    for ex in _examples("classification", "ood", 30):
        assert (ex.objects[0].colour, ex.objects[0].shape) in syn.HELD_OUT_PAIRS
    side = lambda o: max(o.box[2] - o.box[0], o.box[3] - o.box[1])  # noqa: E731
    ood = [side(o) for t in syn.TASKS for ex in _examples(t, "ood", 10) for o in ex.objects]
    train = [side(o) for t in syn.TASKS for ex in _examples(t, "train", 10) for o in ex.objects]
    assert max(ood) < min(train)


@pytest.mark.parametrize("task", syn.TASKS)
def test_written_jsonl_round_trips_through_load_rows(tmp_path, task):
    path = syn.write_split(tmp_path, task, "test", 10, seed=1, image_size=64)
    assert path == tmp_path / f"{task}_test.jsonl"
    rows = load_rows(path, decode_images=True)
    assert len(rows) == 10
    for i, (line, sample) in enumerate(zip(path.read_text().splitlines(), rows)):
        row = json.loads(line)
        assert row["image"] == f"images/{task}_test_{i:06d}.png"
        assert sample.reward == task
        assert sample.image_sizes == ((64, 64),)
        assert sample.problem == row["conversations"][0]["value"] and sample.problem.startswith("<image>")
        ex = syn.make_example(task, "test", i, seed=1, image_size=64)
        assert sample.solution == json.dumps(ex.answer)


def test_make_scene_in_memory_and_errors():
    spec = syn.SceneSpec((("red", "star"), ("blue", "cross")), image_size=80, background="noise")
    image, objs = syn.make_scene(np.random.default_rng(0), spec)
    assert image.size == (80, 80) and [o.label for o in objs] == ["red star", "blue cross"]
    image2, objs2 = syn.make_scene(0, spec)
    assert objs2 == objs and image2.tobytes() == image.tobytes()
    with pytest.raises(ValueError, match="cannot place"):
        syn.make_scene(0, syn.SceneSpec((("red", "square"),) * 30, image_size=64, size_range=(0.3, 0.4)))
    with pytest.raises(ValueError, match="unknown object"):
        syn.make_scene(0, syn.SceneSpec((("pink", "square"),)))
    with pytest.raises(ValueError, match="unknown task"):
        syn.write_split("/nonexistent", "vqa", "train", 1)
    with pytest.raises(ValueError, match="unknown split"):
        syn.make_example("rec", "val", 0)


def test_sizes_and_seeds_that_cannot_work_are_refused_before_anything_is_written(tmp_path):
    for kwargs, message in (({"image_size": 28}, "image_size must be a whole number >= 32"),
                            ({"seed": -1}, "seed must be a whole number >= 0")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            syn.write_split(tmp_path, "rec", "ood", 5, **kwargs)
    assert not list(tmp_path.glob("*.jsonl*"))
    syn.write_split(tmp_path, "rec", "ood", 20, image_size=syn.MIN_IMAGE_SIZE)  # the smallest size works


def test_a_failed_split_leaves_no_partial_jsonl(tmp_path, monkeypatch):
    calls = []

    def failing(*args):
        calls.append(args)
        if len(calls) == 3:
            raise ValueError("cannot place the objects")
        return real(*args)

    real = syn.make_example
    monkeypatch.setattr(syn, "make_example", failing)
    with pytest.raises(ValueError, match="cannot place"):
        syn.write_split(tmp_path, "rec", "test", 5)
    assert not list(tmp_path.glob("*.jsonl*"))


def test_ood_pairs_shift_only_the_referent_pairs():
    """`ood_pairs` asks only about held-out pairs; sizes, backgrounds and distractor counts are the training ones."""
    examples = [syn.make_example("rec", "ood_pairs", i) for i in range(60)]
    lo, hi = syn.TRAIN.size_range
    for ex in examples:
        referent = next(obj for obj in ex.objects if list(obj.box) == list(ex.answer))
        assert (referent.colour, referent.shape) in syn.HELD_OUT_PAIRS
        assert f"{referent.colour} {referent.shape}" in ex.question
        assert 1 <= len(ex.objects) <= 1 + syn.TRAIN.rec_distractors[1]
        for obj in ex.objects:
            side = max(obj.box[2] - obj.box[0], obj.box[3] - obj.box[1]) / 112
            assert lo - 0.02 <= side <= hi + 0.02
