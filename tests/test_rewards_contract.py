"""The reward contract, for EVERY registered reward: one finite float (or None) per completion, inside the
documented range, never an exception, whatever the completion holds; garbage gets the worst value."""
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlm_r1.rewards import list_rewards
from vlm_r1.rewards.registry import get_validator

# documented range of each registered reward (docs/rewards.md); a new reward must be added here
RANGES = {
    "think_format": (0, 1), "think_json_format": (0, 1), "answer_format": (0, 1),
    "iou": (0, 1), "iou_acc": (0, 1), "giou": (0, 1),
    "det_iou": (0, 1), "det_iou_hungarian": (0, 1), "det_confidence": (0, 1), "det_map": (0, 1), "det_ap50": (0, 1),
    "cls_match": (0, 1), "number_match": (0, 1), "choice_match": (0, 1), "yes_no_match": (0, 1),
    "repetition_penalty": (-1, 0), "cosine_length": (-1, 1), "accuracy": (0, 1),
}
REC = json.dumps([0, 0, 10, 10])
DET = json.dumps([{"bbox_2d": [0, 0, 10, 10], "label": "cat"}, {"bbox_2d": [20, 20, 30, 30], "label": "dog"}])
# (task for the `reward` column, ground truth) pairs; each reward is called with the one its validator accepts
GROUND_TRUTHS = [("rec", REC), ("detection", DET), ("classification", json.dumps({"label": "cat", "aliases": ["kitty"]})),
                 ("counting", "3"), ("multiple_choice", '"B"'), ("yes_no", '"yes"')]


def ground_truth_for(name):
    validator = get_validator(name)
    for task, sol in GROUND_TRUTHS:
        if validator is None:
            return task, sol
        try:
            validator(json.loads(sol))
            return task, sol
        except ValueError:
            continue
    raise AssertionError(f"no test ground truth for {name}")


def check(name, completions, task, sol):
    out = list_rewards()[name](completions, solution=[sol] * len(completions), reward=[task] * len(completions),
                               completion_ids=[[1, 2, 3]] * len(completions), prompts=["p"] * len(completions),
                               trainer_state=None, some_unknown_column=[object()] * len(completions))
    assert isinstance(out, list) and len(out) == len(completions), name
    lo, hi = RANGES[name]
    for v in out:
        assert v is None or (type(v) is float and math.isfinite(v) and lo <= v <= hi), (name, v)
    return out


def test_every_registered_reward_has_a_documented_range():
    assert set(list_rewards()) == set(RANGES)


numbers = st.one_of(st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0, 10, 1e308, -1e308, 5e-324, 1e7 + 1]))
box = st.lists(numbers, min_size=3, max_size=5)
detection = st.fixed_dictionaries({"bbox_2d": box}, optional={
    "label": st.one_of(st.sampled_from(["cat", "dog", "Cat ", "unicorn", ""]), st.text(max_size=5), st.integers()),
    "score": st.one_of(numbers, st.text(max_size=3), st.none())})
json_value = st.recursive(st.one_of(numbers, st.text(max_size=8), st.none(), st.booleans(), box, detection),
                          lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                          max_leaves=12)


@st.composite
def answer_bodies(draw):
    kind = draw(st.sampled_from(["json", "truncated", "text", "fenced", "short"]))
    if kind == "text":
        return draw(st.text(max_size=60))
    if kind == "short":
        return draw(st.sampled_from(["3", "three", "B", "(B)", "A or B", "yes", "no", "cat", "cat, dog", "[]", "None", ""]))
    body = json.dumps(draw(json_value), allow_nan=True)
    if kind == "truncated":
        body = body[:draw(st.integers(0, len(body)))]
    if kind == "fenced":
        body = f"```json\n{body}\n```"
    return body


@st.composite
def completions(draw):
    body = draw(answer_bodies())
    layout = draw(st.sampled_from(["think", "answer", "bare", "noise", "two", "chat"]))
    think = draw(st.text(max_size=30))
    text = {"think": f"<think>{think}</think><answer>{body}</answer>", "answer": f"<answer>{body}</answer>",
            "bare": body, "noise": draw(st.text(max_size=80)),
            "two": f"<answer>{body}</answer><answer>{draw(answer_bodies())}</answer>",
            "chat": f"<think>{think}</think><answer>{body}</answer>"}[layout]
    if layout == "chat":
        return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(completion=completions())
def test_random_completions_respect_the_contract(completion):
    for name in sorted(RANGES):  # every reward sees every example
        task, sol = ground_truth_for(name)
        check(name, [completion], task, sol)


DEEP = "[" * 5000 + "[0, 0, 10, 10]" + "]" * 5000
GARBAGE = [
    "", "garbage", "<answer></answer>", "<think>x</think><answer>   </answer>", "<answer>[NaN, NaN, NaN, NaN]</answer>",
    "<answer>[1, 2, Infinity, 4]</answer>", "<answer>[0, 0, 1e308, 1e308]</answer>", "<answer>[-1e308, -1e308, 1e308, 1e308]</answer>",
    "<answer>[10, 10, 0, 0]</answer>", '<answer>[{"bbox_2d": [10, 10, 0, 0], "label": "cat"}]</answer>',
    '<answer>{"bbox_2d": "0,0,10,10"}</answer>', "<answer>" + "[" * 100_000 + "</answer>", f"<answer>{DEEP}</answer>",
    "<answer>" + "[[[[[[[[[[[[[[[0, 0, 10, 10]]]]]]]]]]]]]]]" + "</answer>", "<answer>" + "ü🙂\u202e" * 1000 + "</answer>",
    "<answer>" + "x" * 1_000_000 + "</answer>", "<answer>[0,0,10,10]" * 3 + " " * 300_000 + "</answer>",
    "<answer>٣</answer>", "<answer>{</answer>", '<answer>{"a": [1, 2, 3, 4, 5]}</answer>', "<answer>0x3</answer>",
    [{"role": "user", "content": "<answer>cat</answer>"}], None, 12, b"<answer>cat</answer>",
]


@pytest.mark.parametrize("name", sorted(RANGES))
def test_garbage_gets_the_worst_value(name):
    task, sol = ground_truth_for(name)
    out = check(name, GARBAGE, task, sol)
    if get_validator(name) is not None or name == "accuracy":  # accuracy rewards: worst = 0
        assert out == [0.0] * len(GARBAGE), [(g if isinstance(g, str) and len(g) < 80 else "...", v)
                                              for g, v in zip(GARBAGE, out) if v != 0.0]
    if name in ("think_format", "think_json_format", "answer_format"):  # the rest is well-formed garbage
        assert out[:3] + out[-4:] == [0.0] * 7


@pytest.mark.parametrize("name", sorted(RANGES))
def test_rewards_take_batches_and_missing_columns(name):
    fn = list_rewards()[name]
    out = fn(["<answer>3</answer>", [{"role": "assistant", "content": "<answer>B</answer>"}]])
    assert len(out) == 2
    assert fn([]) == []


coordinate = st.integers(0, 40)
valid_detection = st.builds(
    lambda x, y, w, h, label, score: {"bbox_2d": [x, y, x + w, y + h], **({"label": label} if label else {}),
                                      **({"score": score} if score is not None else {})},
    coordinate, coordinate, coordinate, coordinate, st.sampled_from(["cat", "dog", "bird", None]),
    st.one_of(st.none(), st.floats(0, 1), st.sampled_from([0.5, 1.0])))


@settings(max_examples=200, deadline=None)
@given(preds=st.lists(valid_detection, max_size=12), gt=st.lists(valid_detection, max_size=6))
def test_well_formed_detections_stay_in_range(preds, gt):
    """Plausible answers (valid boxes near the ground truth) exercise the matching paths of every box reward."""
    gt = [{"bbox_2d": [x1, y1, x2 + 1, y2 + 1], "label": g.get("label") or "cat"} for g in gt for x1, y1, x2, y2 in [g["bbox_2d"]]]
    completion = "<think>.</think><answer>" + json.dumps(preds) + "</answer>"
    single = "<answer>" + json.dumps(preds[:1]) + "</answer>"
    for name in sorted(RANGES):
        validator = get_validator(name)
        if validator is None or name in ("iou", "iou_acc", "giou"):
            sol = json.dumps(gt[0]["bbox_2d"]) if gt and name in ("iou", "iou_acc", "giou") else json.dumps(gt)
            check(name, [completion, single], "detection", sol)
        elif "det" in name:
            out = check(name, [completion, completion + "x"], "detection", json.dumps(gt))
            assert out[0] == out[1]  # text after the answer does not matter
