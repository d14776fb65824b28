"""Hand-worked values of every reward formula, and the anti-gaming rules."""
import json
import re
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlm_r1.rewards import get_reward
from vlm_r1.rewards.parsing import Detection, ParsedAnswer
from vlm_r1.rewards.rec import make_iou_threshold_reward
from vlm_r1.rewards.shaping import make_cosine_length_reward


def r(name, completions, **kw):
    return get_reward(name)(completions, **kw)


# ---------------------------------------------------------------- format
@pytest.mark.parametrize("text,think,think_json,answer_only", [
    ("<think>a</think><answer>b</answer>", 1, 0, 0),
    ("  <think>\na\n</think>\n\n<answer> [1,2,3,4] </answer>\n", 1, 1, 0),
    ("<think></think><answer>```json\n{\"a\": 1}\n```</answer>", 1, 1, 0),
    ("<think></think><answer>{\"a\": 1e999}</answer>", 1, 0, 0),
    ("<think></think><answer>[]</answer>", 1, 1, 0),  # nothing detected: an empty list
    ("<think></think><answer>0</answer>", 1, 0, 0),  # JSON, but no list or object: no answer's format
    ("<think></think><answer>null</answer>", 1, 0, 0),
    ("<think></think><answer>\"\"</answer>", 1, 0, 0),
    ("<think></think><answer>Here: ```python\n{\"a\": 1}\n```</answer>", 1, 0, 0),
    ("<answer>b</answer>", 0, 0, 1),
    ("<think>a</think>x<answer>b</answer>", 0, 0, 0),  # text between the blocks
    ("<think>a</think><answer>b</answer>tail", 0, 0, 0),
    ("<think>a</think><answer>b</answer><answer>c</answer>", 0, 0, 0),
    ("<think>a<think>b</think><answer>c</answer>", 0, 0, 0),
    ("<answer>b</answer><think>a</think>", 0, 0, 0),
    ("<think>a</think><answer>  </answer>", 0, 0, 0),  # blank answer
    ("<answer><think>a</think>b</answer>", 0, 0, 0),
    ("", 0, 0, 0),
])
def test_format_rewards(text, think, think_json, answer_only):
    assert r("think_format", [text]) == [float(think)]
    assert r("think_json_format", [text]) == [float(think_json)]
    assert r("answer_format", [text]) == [float(answer_only)]


def test_format_accepts_chat_messages():
    msg = [{"role": "assistant", "content": [{"type": "text", "text": "<think>a</think><answer>b</answer>"}]}]
    assert r("think_format", [msg]) == [1.0]


# ---------------------------------------------------------------- REC
REC_GT = json.dumps([0, 0, 10, 10])


def ans(body):
    return f"<think>.</think><answer>{body}</answer>"


def test_rec_rewards_hand_worked():
    comps = [ans("[0, 0, 10, 10]"), ans("[0, 0, 10, 5]"), ans("[0, 0, 10, 4]"), ans("[20, 0, 30, 10]"), "no answer"]
    assert r("iou", comps, solution=[REC_GT] * 5) == pytest.approx([1.0, 0.5, 0.4, 0.0, 0.0])
    assert r("iou_acc", comps, solution=[REC_GT] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]
    # GIoU of the disjoint box: enclosing 30x10 = 300, union 200 -> -1/3 -> (1 - 1/3) / 2
    assert r("giou", comps, solution=[REC_GT] * 5) == pytest.approx([1.0, 0.75, 0.7, 1 / 3, 0.0])


def test_rec_needs_exactly_one_box():
    hedge = ans("[0, 0, 10, 10], [0, 0, 5, 5]")
    dict_box = ans('{"bbox_2d": [0, 0, 10, 10], "label": "x"}')
    assert r("iou", [hedge, dict_box], solution=[REC_GT] * 2) == [0.0, 1.0]
    assert r("iou", [ans("[10, 10, 0, 0]")], solution=[REC_GT]) == [0.0]  # reversed: rejected


def test_iou_threshold_factory():
    fn = make_iou_threshold_reward(0.75)
    assert fn.__name__ == "iou_acc_075"
    assert fn([ans("[0, 0, 10, 8]"), ans("[0, 0, 10, 7]")], solution=[REC_GT] * 2) == [1.0, 0.0]
    with pytest.raises(ValueError):
        make_iou_threshold_reward(0.0)


def test_rec_uses_the_answers_column():
    parsed = ParsedAnswer("t", "a", (Detection((0.0, 0.0, 10.0, 10.0)),))
    assert r("iou", ["<answer>[500, 500, 600, 600]</answer>"], solution=[REC_GT], answers=[parsed]) == [1.0]


# ---------------------------------------------------------------- detection (Visual-RFT)
DET_GT = json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "cat"}, {"bbox_2d": [20, 0, 30, 10], "label": "dog"}])


def dets(*items):
    return ans(json.dumps([{"bbox_2d": b, "label": l, **({"score": s} if s is not None else {})} for b, l, s in items]))


def test_det_iou_hand_worked():
    full = dets(([0, 0, 10, 10], "cat", 0.9), ([20, 0, 30, 10], "dog", 0.8))
    half = dets(([0, 0, 10, 5], "cat", 0.9), ([20, 0, 30, 10], "dog", 0.8))  # (0.5 + 1) / 2
    wrong_label = dets(([0, 0, 10, 10], "dog", 0.9), ([20, 0, 30, 10], "dog", 0.8))  # (0 + 1) / 2
    dup = dets(([0, 0, 10, 10], "cat", 0.9), ([0, 0, 10, 10], "cat", 0.9), ([20, 0, 30, 10], "dog", 0.8))  # 2 / 3
    out = r("det_iou", [full, half, wrong_label, dup], solution=[DET_GT] * 4)
    assert out == pytest.approx([1.0, 0.75, 0.5, 2 / 3])
    assert r("det_iou_hungarian", [full, dup], solution=[DET_GT] * 2) == pytest.approx([1.0, 2 / 3])


def test_det_iou_greedy_follows_confidence():
    # the low-IoU prediction has the higher confidence, so it takes the cat first
    gt = json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "cat"}])
    comp = dets(([0, 0, 10, 6], "cat", 0.9), ([0, 0, 10, 10], "cat", 0.1))
    assert r("det_iou", [comp], solution=[gt]) == pytest.approx([0.6 / 2])
    assert r("det_iou_hungarian", [comp], solution=[gt]) == pytest.approx([1.0 / 2])


def test_det_confidence_hand_worked():
    comp = dets(([0, 0, 10, 10], "cat", 0.9), ([50, 50, 60, 60], "dog", 0.2), ([20, 0, 30, 10], "dog", None))
    # matched 0.9 -> 0.9; unmatched 0.2 -> 0.8; no score -> 0
    assert r("det_confidence", [comp], solution=[DET_GT]) == pytest.approx([(0.9 + 0.8 + 0.0) / 3])
    single = dets(([0, 0, 10, 10], "cat", 0.9))
    dup = dets(([0, 0, 10, 10], "cat", 0.9), ([0, 0, 10, 10], "cat", 0.9))
    gt = json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "cat"}])
    a, b = r("det_confidence", [single, dup], solution=[gt] * 2)
    assert b < a


def test_duplicates_score_lower_in_every_detection_reward():
    gt = json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "cat"}])
    single, dup = dets(([0, 0, 10, 10], "cat", 0.9)), dets(([0, 0, 10, 10], "cat", 0.9), ([0, 0, 10, 10], "cat", 0.9))
    for name in ["det_iou", "det_iou_hungarian", "det_confidence", "det_map", "det_ap50"]:
        a, b = r(name, [single, dup], solution=[gt] * 2)
        assert b < a, name


# ---------------------------------------------------------------- classification
@pytest.mark.parametrize("answer,score", [
    ("cat", 1), ("The Cat.", 1), ("  CAT!  ", 1), ("kitty", 1), ("a Kitty", 1),
    ("dog", 0), ("cat or dog", 0), ("cat, dog", 0), ("cat and dog", 0), ("cat dog bird fish", 0),
    ("", 0), ("   ", 0), ("the", 0), ("a photo of a cat", 0), ("cats", 0),
])
def test_classification(answer, score):
    sol = json.dumps({"label": "cat", "aliases": ["kitty"]})
    assert r("cls_match", [ans(answer)], solution=[sol]) == [float(score)]


@pytest.mark.parametrize("label,answer,score", [
    ("C++", "C", 0), ("C", "C++", 0), ("C#", "C", 0), ("AB+", "AB-", 0), ("O-", "O", 0), ("O-", "O-.", 1),
    ("A", "A", 1), ("A", "a.", 1), ("A", "B", 0), ("U.S.A.", "USA", 0), ("U.S.A.", "u.s.a", 1),
    ("hot dog", "Hot-dog!", 1), ("t-shirt", "a T shirt", 1), ("cat", '"cat"', 1), ("cat", "(cat)", 1),
    ("C++", "(C++).", 1), ("AB+", "**AB+**", 1),
    # what the earlier rule matched keeps matching: spelling variants, markdown, bullets, CJK full stops
    ("jack-o'-lantern", "jack-o-lantern", 1), ("jack-o'-lantern", "Jack o' lantern", 1),
    ("will-o'-the-wisp", "will o the wisp", 1), ("cat", "**cat**", 1), ("cat", "_cat_", 1), ("cat", "- cat", 1),
    ("cat", "• cat", 1), ("猫", "猫。", 1), ("rock & roll", "rock&roll", 1), ("St. Bernard", "st bernard", 1),
])
def test_classification_keeps_marks_that_tell_classes_apart(label, answer, score):
    """Sentence punctuation and quotes go, a mark inside a word splits it, every other mark stays; a lone article is a
    class of its own."""
    assert r("cls_match", [ans(answer)], solution=[json.dumps(label)]) == [float(score)]


def test_classification_all_classes_or_no_answer_is_zero():
    assert r("cls_match", [ans("airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck"), "cat"],
             solution=['"cat"'] * 2) == [0.0, 0.0]


# ---------------------------------------------------------------- counting / multiple choice / yes-no
@pytest.mark.parametrize("answer,gt,score", [
    ("3", 3, 1), ("3.", 3, 1), (" 3.0 ", 3, 1), ("three", 3, 1), ("Three", 3, 1), ("+3", 3, 1),
    ("4", 3, 0), ("3 or 4", 3, 0), ("3 cats", 3, 0), ("3.0000001", 3, 0), ("", 3, 0), ("nan", 3, 0),
    ("2.5", 2.5, 1), ("2.5000001", 2.5, 1), ("2.51", 2.5, 0), ("1e3", 1000, 1), ("-2", -2, 1), ("1e999", 3, 0),
    ("\uff13", 3, 1), ("\u0663", 3, 0),  # NFKC reads fullwidth 3 as 3; Arabic-Indic digits are not read
    (str(10**17 + 1), 10**17 + 1, 1), (str(10**17), 10**17 + 1, 0), ("1e17", 10**17 + 1, 0),  # integers: exact
    ("1e23", 1e23, 1), (str(10**23), 1e23, 1), ("99999999999999991611392", 1e23, 0),  # a float row reads as written
    ("1e9999999999999999999", 3, 0), ("-1e-9999999999999999999", 0, 0),  # exponents beyond Decimal: 0, no raise
])
def test_number_match(answer, gt, score):
    assert r("number_match", [ans(answer)], solution=[json.dumps(gt)]) == [float(score)]


@pytest.mark.parametrize("answer,score", [
    ("B", 1), ("(B)", 1), ("B.", 1), ("b", 1), ("[B]", 1), ("B)", 1), ("B:", 1), (" ( B ) ", 1),
    ("A", 0), ("A or B", 0), ("AB", 0), ("B. Paris", 0), ("Option B", 0), ("", 0),
])
def test_choice_match(answer, score):
    assert r("choice_match", [ans(answer)], solution=['"B"']) == [float(score)]


@pytest.mark.parametrize("answer,gt,score", [
    ("yes", "yes", 1), ("Yes.", "yes", 1), ("YES!", "yes", 1), ("no", "No", 1),
    ("no", "yes", 0), ("yes and no", "yes", 0), ("yes, there is", "yes", 0), ("", "yes", 0), ("y", "yes", 0),
])
def test_yes_no(answer, gt, score):
    assert r("yes_no_match", [ans(answer)], solution=[json.dumps(gt)]) == [float(score)]


# ---------------------------------------------------------------- shaping
def test_repetition_penalty():
    plain = "<think>the cat sits on the mat today</think><answer>[0,0,1,1]</answer>"
    loop = "a b c " * 50
    boxes = ans(json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "a"}] * 3 + [{"bbox_2d": [50, 50, 60, 60], "label": "a"}]))
    out = r("repetition_penalty", [plain, loop, boxes])
    assert out[0] == 0.0
    assert out[1] == pytest.approx(-(1 - 3 / 148))  # 148 3-grams, 3 distinct
    assert out[2] == pytest.approx(-0.5)  # 2 of 4 boxes repeat an earlier one


@pytest.mark.parametrize("layout", [{}, {"separators": (",", ":")}, {"indent": 1}])
def test_repetition_penalty_leaves_a_correct_list_of_objects_alone(layout):
    """N distinct objects repeat the same JSON keys N times: that is no repetition (it cost -0.19 at N = 8)."""
    objects = [{"bbox_2d": [10 * i, 5 * i + 1, 10 * i + 9, 5 * i + 9], "label": "red circle"} for i in range(8)]
    correct = f"<think>Find it.</think><answer>{json.dumps(objects, **layout)}</answer>"
    assert r("repetition_penalty", [correct]) == [0.0]
    assert r("det_map", [correct], solution=[json.dumps(objects)]) == [1.0]
    padded = correct.replace("</answer>", " " + "and so on " * 20 + "</answer>")  # words in the answer still count
    assert r("repetition_penalty", [padded])[0] < -0.5
    stuffed = [{"bbox_2d": [1, 2, 30, 40], "label": "the cat sat " * 200}]  # a label is judged on its own
    assert r("repetition_penalty", [f"<answer>{json.dumps(stuffed)}</answer>"])[0] < -0.9
    boxless = [{"bbox_2d": [1, 2, 30, 40], "label": "a"}] + [{"note": "look here"}] * 300  # no box: stays text
    assert r("repetition_penalty", [f"<answer>{json.dumps(boxless)}</answer>"])[0] < -0.9
    wrapped = [{"object": o} for o in objects]  # the shells around the box objects go with them
    assert r("repetition_penalty", [f"<answer>{json.dumps(wrapped, **layout)}</answer>"]) == [0.0]
    deep = {"result": {"objects": [{"a": {"b": o}} for o in objects]}}
    assert r("repetition_penalty", [f"<answer>{json.dumps(deep, **layout)}</answer>"]) == [0.0]
    python_style = str(objects)  # [{'bbox_2d': [...], 'label': 'red circle'}, ...]: box objects too
    assert r("repetition_penalty", [f"<answer>{python_style}</answer>"]) == [0.0]
    one = json.dumps(objects[0])  # only a box object or a four-number list leaves the text, not any {...[...]...}
    assert r("repetition_penalty", [f"<answer>{one} {{[] {'go ' * 300}}}</answer>"])[0] < -0.9
    assert r("repetition_penalty", [f"<answer>{one} [{'1 ' * 300}]</answer>"])[0] < -0.9
    noted = [{"object": o, "note": "the same words"} for o in objects]  # a shell with words of its own stays
    assert r("repetition_penalty", [f"<answer>{json.dumps(noted, **layout)}</answer>"])[0] < -0.5


def test_cosine_length_formula():
    fn = make_cosine_length_reward(max_len=100)
    assert fn.value(True, 0) == pytest.approx(1.0) and fn.value(True, 100) == pytest.approx(0.5)
    assert fn.value(True, 50) == pytest.approx(0.75) and fn.value(True, 10_000) == pytest.approx(0.5)
    assert fn.value(False, 0) == pytest.approx(-1.0) and fn.value(False, 100) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        make_cosine_length_reward(correct=(1.0, 0.0), wrong=(-1.0, 0.0))
    with pytest.raises(ValueError, match="no_such_reward"):  # a misspelt accuracy fails when built, not silently
        make_cosine_length_reward(accuracy="no_such_reward")


def test_cosine_length_reports_a_failing_accuracy_reward(monkeypatch):
    import sys
    import types
    module = types.ModuleType("failing_accuracy_for_test")
    module.broken = lambda completions, **kw: 1 / 0
    monkeypatch.setitem(sys.modules, "failing_accuracy_for_test", module)
    fn = make_cosine_length_reward(accuracy="failing_accuracy_for_test:broken")
    with pytest.warns(RuntimeWarning, match="ZeroDivisionError"):
        assert fn([ans("3")]) == [None]


def test_cosine_length_uses_accuracy_and_token_count():
    comps = [ans("3"), ans("4"), ans("3")]
    out = r("cosine_length", comps, solution=["3"] * 3, reward=["counting"] * 2 + [None],
            completion_ids=[[1] * 1024, [1] * 1024, [1]])
    assert out[:2] == pytest.approx([0.5, 0.0]) and out[2] is None  # no task named, no default -> None
    short = r("cosine_length", [ans("3")], solution=["3"], reward=["counting"], completion_ids=[[1]])
    assert 0.99 < short[0] <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 5000))
def test_cosine_wrong_never_beats_right(len_right, len_wrong, max_len):
    fn = make_cosine_length_reward(max_len=max_len)
    right, wrong = fn.value(True, len_right), fn.value(False, len_wrong)
    assert right > wrong
    assert -1.0 <= wrong <= 0.0 < 0.5 <= right <= 1.0 and math.isfinite(right)
    assert fn.value(True, min(len_right, max_len)) >= fn.value(True, min(len_right, max_len) + 1) - 1e-12
    assert fn.value(False, min(len_wrong, max_len)) <= fn.value(False, min(len_wrong, max_len) + 1) + 1e-12


def test_a_class_name_read_as_json_says_how_to_write_it():
    from vlm_r1.rewards.classification import validate_classification

    for value, spelling in ((7, '{"label": "7"}'), (True, '{"label": "true"}')):
        with pytest.raises(ValueError, match=re.escape(f"is written {spelling}")):
            validate_classification(value)


def test_a_classification_ground_truth_with_keys_that_would_be_ignored_is_refused():
    from vlm_r1.rewards.classification import validate_classification

    with pytest.raises(ValueError, match="keys are label and aliases; 'synonyms' would be ignored"):
        validate_classification({"label": "cat", "synonyms": ["kitty"]})  # "kitty" scored 0


def test_invisible_characters_in_a_detection_label_do_not_keep_a_right_box_from_matching():
    """A zero-width space in a label matched no prediction (det_map 0); it counts as a space, as in cls_match."""
    from vlm_r1.rewards.ovd import det_map
    from vlm_r1.rewards.parsing import normalize_label

    assert normalize_label("ca\u0301t\u200b") == normalize_label("CÁT") == "cát"
    truth = json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "ca\u0301t\u200b"}])
    answer = '<answer>[{"bbox_2d": [0, 0, 10, 10], "label": "cát"}]</answer>'
    assert det_map([answer], solution=[truth]) == [pytest.approx(1.0, abs=1e-12)]
