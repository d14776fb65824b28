"""Parsing of completions: answer extraction, box forms, adversarial input, the `answers` column."""
import json
import time

import pytest

from vlm_r1.rewards import get_reward
from vlm_r1.rewards.parsing import (
    Detection,
    ParsedAnswer,
    answers_from,
    completion_text,
    is_empty_answer,
    parse_answer,
    strip_fence,
)


def boxes(text):
    return [d.box for d in parse_answer(text).detections]


def test_completion_text_forms():
    assert completion_text("hi") == "hi"
    assert completion_text([{"role": "assistant", "content": "a"}]) == "a"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"}]}]) == "a"
    assert completion_text([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]) == "y"
    assert completion_text(None) == "" and completion_text(42) == "" and completion_text([{"content": None}]) == ""


def test_answer_is_the_last_complete_one():
    assert parse_answer("<answer>1</answer> then <answer>2</answer>").answer == "2"
    assert parse_answer("<answer>1</answer><answer>open").answer == "1"
    assert parse_answer("no tags").answer is None
    assert parse_answer("</answer><answer>").answer is None


@pytest.mark.parametrize("text,expected", [
    ("<answer>[1, 2, 3, 4]</answer>", [(1.0, 2.0, 3.0, 4.0)]),
    ("<answer>[1.5,2,3e1,4.25]</answer>", [(1.5, 2.0, 30.0, 4.25)]),
    ('<answer>{"bbox_2d": [1, 2, 3, 4], "label": "cat"}</answer>', [(1.0, 2.0, 3.0, 4.0)]),
    ('<answer>[[1,2,3,4],[5,6,7,8]]</answer>', [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)]),
    ('<answer>```json\n[{"bbox_2d": [1, 2, 3, 4]}]\n```</answer>', [(1.0, 2.0, 3.0, 4.0)]),
    ('<answer>{"objects": [{"bbox": [1, 2, 3, 4]}]}</answer>', [(1.0, 2.0, 3.0, 4.0)]),
    ("<answer>The box is [1, 2, 3, 4].</answer>", [(1.0, 2.0, 3.0, 4.0)]),
    ('<answer>[{"bbox_2d": [1,2,3,4], "label": "a"}, {"bbox_2d": [5,6,7</answer>', [(1.0, 2.0, 3.0, 4.0)]),
    ("<answer>[3, 4, 1, 2]</answer>", [None]),  # reversed: rejected, still counted
    ("<answer>[NaN, 1, 2, 3]</answer>", [None]),
    ("<answer>[1, 2, Infinity, 3]</answer>", [None]),
    ("<answer>[0, 0, 1e308, 1e308]</answer>", [None]),  # beyond MAX_COORD
    ("<answer>[1, 2, 3]</answer>", []),
    ('<answer>["1", "2", "3", "4"]</answer>', []),
    ("[1, 2, 3, 4]", []),  # outside <answer>: not looked at
    # Qwen2-VL's own format, its <|box_start|> / <|box_end|> decoded away: the text GRPO and evaluation see
    ("<answer>the dog(125,300),(500,820)</answer>", [(125.0, 300.0, 500.0, 820.0)]),
    ("<answer>(1, 2) (3.5, 4)</answer>", [(1.0, 2.0, 3.5, 4.0)]),
    ("<answer>(3,4),(1,2)</answer>", [None]),  # reversed: rejected, still counted
    ("<answer>[1, 2, 3, 4] and (5,6),(7,8)</answer>", [(1.0, 2.0, 3.0, 4.0)]),  # the first form found wins
    ("<answer>(1, 2)</answer>", []),
])
def test_box_forms(text, expected):
    assert boxes(text) == expected


def test_labels_and_scores():
    p = parse_answer('<answer>[{"bbox_2d": [1,2,3,4], "label": " Cat ", "score": 0.5},'
                     ' {"bbox_2d": [1,2,3,4], "label": 3, "confidence": 0.7}, {"bbox_2d": [1,2,3,4], "score": NaN}]</answer>')
    assert p.detections == (Detection((1.0, 2.0, 3.0, 4.0), "Cat", 0.5), Detection((1.0, 2.0, 3.0, 4.0), None, 0.7),
                            Detection((1.0, 2.0, 3.0, 4.0), None, None))


def test_map_boxes():
    p = parse_answer("<answer>[[0, 0, 500, 1000], [1, 1, 0, 0]]</answer>")
    q = p.map_boxes(lambda b: [v * 2 for v in b])
    assert [d.box for d in q.detections] == [(0.0, 0.0, 1000.0, 2000.0), None]
    assert q.map_boxes(lambda b: [float("nan")] * 4).detections[0].box is None
    assert p.detections[0].box == (0.0, 0.0, 500.0, 1000.0)  # frozen: the original is unchanged


def test_empty_answers():
    for text in ["", "[]", " none. ", "```json\n[]\n```", "NULL", "[ ]", "[\n]", "```json\n[ ]\n```", "{ }", '""']:
        assert is_empty_answer(text), text
    assert not is_empty_answer(None) and not is_empty_answer("a cat") and not is_empty_answer("[ 1 ]")


def test_answers_column_is_used_when_given():
    given = [ParsedAnswer("x", "y", (Detection((0.0, 0.0, 1.0, 1.0)),))]
    assert answers_from(["<answer>[5,5,6,6]</answer>"], {"answers": given}) == given
    assert answers_from(["<answer>[5,5,6,6]</answer>"], {"answers": None})[0].detections[0].box == (5.0, 5.0, 6.0, 6.0)
    assert answers_from(["a", "b"], {"answers": given})[0].text == "a"  # wrong length: parsed here


@pytest.mark.parametrize("body", [
    "[" * 150_000, "[" * 90_000 + "]" * 90_000, '{"a":' * 30_000, "{" * 190_000, "[1" + " " * 190_000,
    ("{" + "a" * 3000) * 60, "[" + "1" * 190_000, "1," * 90_000, "[1,2,3,4]" * 20_000, '{"bbox_2d":[1,2,3,4]}' * 9_000,
    "(1,2)," * 30_000, "(" * 190_000, "(1," + " " * 190_000, "(1,2),(3,4)" * 15_000, "(1,2)" + " " * 190_000,
    "(1,2)" + "\n" * 190_000,
])
def test_adversarial_answers_never_hang_and_are_safe(body):
    t = time.perf_counter()
    p = parse_answer("<answer>" + body + "</answer>")
    assert time.perf_counter() - t < 10.0  # a hang guard, not a speed claim: a backtracking regex took 35 s here
    assert len(p.detections) <= 1000


def test_megabyte_and_garbage_never_raise():
    for text in ["<answer>" * 200_000, "ü🙂\x00" * 300_000, "<answer>" + "[" * 1_000_000 + "</answer>", b"bytes", {"x": 1}]:
        p = parse_answer(text)
        assert isinstance(p, ParsedAnswer) and p.detections == ()


@pytest.mark.parametrize("text,body", [
    ("```json\n[1, 2]\n```", "[1, 2]"), ("```[1, 2]```", "[1, 2]"), ("```json [1, 2]```", "[1, 2]"),
    (" ```\n3\n``` ", "3"), ("```[1, 2, 3, 4]\n```", "[1, 2, 3, 4]"), ("```json\n[1, 2", "[1, 2"),
    ("x ```3```", "x ```3```"), ("```3``` and 4", "```3``` and 4"), ("```python\n3\n```", "```python\n3\n```"),
])
def test_a_fence_is_stripped_only_when_it_is_the_whole_answer(text, body):
    assert strip_fence(text) == body


def test_bare_boxes_beside_a_box_object_are_predictions_too():
    """A JSON box object hid every bare list beside it: 200 copies scored as one clean box (det_map 1.0, no
    repetition), and three boxes passed REC's "exactly one box"."""
    obj = '{"bbox_2d": [10, 10, 50, 50], "label": "cat"}'
    hedged = f"<answer>[{obj}] " + "[10, 10, 50, 50] " * 200 + "</answer>"
    assert len(boxes(hedged)) == 201
    gt = json.dumps([{"bbox_2d": [10, 10, 50, 50], "label": "cat"}])
    assert get_reward("det_map")([hedged], solution=[gt])[0] < 0.01
    assert get_reward("repetition_penalty")([hedged])[0] < -0.99
    three = '<answer>[0, 0, 5, 5] {"bbox_2d": [10, 20, 60, 80]} [90, 90, 99, 99]</answer>'
    assert boxes(three) == [(0, 0, 5, 5), (10, 20, 60, 80), (90, 90, 99, 99)]  # in the answer's order
    assert get_reward("iou")([three], solution=["[10, 20, 60, 80]"]) == [0.0]
    assert len(boxes(f"<answer>{obj} (1, 2), (3, 4)</answer>")) == 1  # Qwen2-VL's pairs only when nothing else


def test_boxes_outside_a_fence_are_seen():
    """A fenced box plus hedges outside the fence is a 3-box answer, not a clean 1-box one."""
    text = "<answer>```json\n[10, 10, 20, 20]\n``` or [0, 0, 5, 5] or [30, 30, 40, 40]</answer>"
    assert len(boxes(text)) == 3
