"""Registry, ground-truth validation and the per-row `accuracy` dispatcher."""
import json
import math

import pytest

import vlm_r1.rewards as rewards
from vlm_r1.rewards import get_reward, list_rewards, make_accuracy_reward, register_reward, validate_solution
from vlm_r1.rewards.registry import _REWARDS


def test_every_reward_is_registered_under_its_own_name():
    names = list_rewards()
    assert {"think_format", "iou", "iou_acc", "giou", "det_iou", "det_confidence", "det_map", "det_ap50",
            "cls_match", "number_match", "choice_match", "yes_no_match", "repetition_penalty", "cosine_length",
            "accuracy"} <= set(names)
    for name, fn in names.items():
        assert fn.__name__ == name and get_reward(name) is fn


def test_register_duplicate_and_misnamed():
    with pytest.raises(ValueError, match="already registered"):
        register_reward("iou")(lambda completions, **kw: [])

    def helper(completions, **kwargs):
        return []
    with pytest.raises(ValueError, match="__name__"):
        register_reward("some_other_name")(helper)
    assert "some_other_name" not in list_rewards()


def test_register_and_get_a_new_reward():
    def my_test_reward(completions, **kwargs):
        return [1.0] * len(completions)
    try:
        register_reward("my_test_reward")(my_test_reward)
        assert get_reward("my_test_reward") is my_test_reward
    finally:
        _REWARDS.pop("my_test_reward", None)


def test_unknown_name_lists_valid_ones():
    with pytest.raises(KeyError) as info:
        get_reward("no_such_reward")
    assert "iou_acc" in str(info.value) and "det_map" in str(info.value)
    with pytest.raises(ValueError):
        get_reward("no_such_reward")


def test_import_path_specs():
    assert get_reward("vlm_r1.rewards.rec:iou") is rewards.rec.iou
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        get_reward("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="no callable 'nope'"):
        get_reward("vlm_r1.rewards.rec:nope")


@pytest.mark.parametrize("name,solution", [
    ("rec", [0, 0, 10, 10]), ("iou", [0.5, 1, 2.5, 3]), ("detection", []),
    ("det_map", [{"bbox_2d": [0, 0, 1, 1], "label": "a"}]), ("classification", "cat"),
    ("cls_match", {"label": "cat", "aliases": ["kitty"]}), ("counting", 3), ("number_match", "2.5"),
    ("multiple_choice", "B"), ("yes_no", "No"), ("vlm_r1.rewards.rec:iou", "anything"), (None, "anything"),
    ("map", []), ("count", 2), ("class", "square"),  # the aliases vlm_r1.synthetic writes
    ("counting", 3.0), ("count", "three"), ("counting", 0), ("numeric", -2.5), ("number_match", -1),
])
def test_validate_solution_accepts(name, solution):
    validate_solution(name, solution)


@pytest.mark.parametrize("name", ["think_format", "repetition_penalty", "accuracy", "no_such_reward"])
def test_a_row_must_name_an_accuracy_reward(name):
    """A row's `reward` that cannot score it (no ground truth, or unknown) is refused at load time, not None forever."""
    with pytest.raises(ValueError, match="unknown accuracy reward"):
        validate_solution(name, [0, 0, 1, 1])


@pytest.mark.parametrize("name,solution,message", [
    ("rec", [0, 0, 10], "x1, y1, x2, y2"), ("rec", [10, 0, 0, 10], "x2 > x1"), ("rec", [0, 0, math.nan, 1], "non-finite"),
    ("iou", [0, 0, True, 1], "4 numbers"), ("rec", [0, 0, 10**400, 1], "huge"), ("rec", [0, 0, math.inf, 1], "huge"),
    ("detection", [{"bbox_2d": [0, 0, -10**400, 1], "label": "a"}], "huge"), ("rec", "[0,0,1,1]", "x1, y1, x2, y2"),
    ("detection", [{"bbox_2d": [0, 0, 1, 1]}], "'label'"), ("detection", [{"label": "a"}], "'bbox_2d'"),
    ("det_iou", [{"bbox_2d": [0, 0, 1], "label": "a"}], "4 numbers"), ("detection", {"bbox_2d": [0, 0, 1, 1]}, "list"),
    ("detection", [{"bbox_2d": [0, 0, 1, 1], "label": ""}], "label"),
    ("classification", "", "class name"), ("classification", {"label": "cat", "aliases": "kitty"}, "aliases"),
    ("counting", "three or four", "finite number"), ("counting", math.inf, "finite"),
    ("counting", -1, "a count must be a whole number >= 0"), ("count", "2.5", "whole number"),
    ("multiple_choice", "AB", "one letter"), ("yes_no", "maybe", "'yes' or 'no'"),
    ("no_such_task", 1, "unknown accuracy reward"),
])
def test_validate_solution_rejects(name, solution, message):
    with pytest.raises(ValueError, match=message):
        validate_solution(name, solution)


def test_accuracy_dispatches_per_row():
    comps = ["<answer>[0,0,10,10]</answer>", "<answer>3</answer>", "<answer>cat</answer>", "<answer>B</answer>",
             "<answer>x</answer>", "<answer>x</answer>"]
    sols = [json.dumps([0, 0, 10, 20]), "3", '"cat"', '"B"', '"yes"', '"yes"']
    with pytest.warns(RuntimeWarning, match="bogus"):  # reported, never raised
        out = get_reward("accuracy")(comps, solution=sols, reward=["iou", "counting", "classification", "mc", None, "bogus"],
                                     unknown_column=[1] * 6)
    assert out == [0.5, 1.0, 1.0, 1.0, None, None]
    with pytest.warns(RuntimeWarning, match="1 `reward` values for 2 completions"):  # a short column is reported
        assert get_reward("accuracy")(comps[:2], solution=sols[:2], reward=["iou"]) == [None, None]


def test_a_listed_accuracy_reward_scores_only_rows_of_its_task():
    """Listing one accuracy reward per task for a mixed file scores each row once: `cls_match` accepts "yes" and "B"
    as class names, but rows that name yes_no or multiple_choice are not its rows."""
    from vlm_r1.rewards.dispatch import scoped_to_row_task

    comps = ["<answer>circle</answer>", "<answer>yes</answer>", "<answer>B</answer>", "<answer>cat</answer>"]
    sols = ['"circle"', '"yes"', '"B"', '"cat"']
    rows = ["classification", "yes_no", "multiple_choice", None]
    listed = {name: scoped_to_row_task(name) for name in ("cls_match", "yes_no_match", "choice_match")}
    scores = {name: fn(comps, solution=sols, reward=rows) for name, fn in listed.items()}
    assert scores == {"cls_match": [1.0, None, None, 1.0],  # a row naming no reward is scored by what is listed
                      "yes_no_match": [None, 1.0, None, None],
                      "choice_match": [None, None, 1.0, None]}
    assert get_reward("cls_match")(comps, solution=sols, reward=rows) == [1.0, 1.0, 1.0, 1.0]  # unscoped, as registered
    assert [fn.__name__ for fn in listed.values()] == list(listed)  # TRL logs rewards/<__name__>
    iou = scoped_to_row_task("iou")  # same task, another reward: a row naming `rec` (iou_acc) is its row
    assert iou(["<answer>[0, 0, 10, 10]</answer>"], solution=["[0, 0, 10, 20]"], reward=["rec"]) == [0.5]
    assert scoped_to_row_task("think_format") is get_reward("think_format")  # no ground truth: unchanged


def test_accuracy_checks_what_a_custom_reward_returns(monkeypatch):
    """numpy numbers count; None, a short list or a string instead of a list give None rows and a warning."""
    import sys
    import types
    import numpy as np
    module = types.ModuleType("custom_rewards_for_test")
    module.np32 = lambda completions, **kw: [np.float32(0.5)] * len(completions)
    module.nothing = lambda completions, **kw: None
    module.short = lambda completions, **kw: [1.0]
    module.text = lambda completions, **kw: "1.0"
    monkeypatch.setitem(sys.modules, "custom_rewards_for_test", module)
    from vlm_r1.rewards import make_row_check

    make_row_check([f"custom_rewards_for_test:{name}" for name in ("np32", "nothing", "short", "text")])  # configured
    acc = get_reward("accuracy")
    assert acc(["a", "b"], reward=["custom_rewards_for_test:np32"] * 2) == [0.5, 0.5]
    for bad in ("nothing", "short", "text"):
        with pytest.warns(RuntimeWarning, match=f"custom_rewards_for_test:{bad}"):
            assert acc(["a", "b"], reward=[f"custom_rewards_for_test:{bad}"] * 2) == [None, None]


def test_accuracy_default_and_slicing_of_the_answers_column():
    from vlm_r1.rewards.parsing import Detection, ParsedAnswer
    acc = make_accuracy_reward(default="rec")
    answers = [ParsedAnswer("", "", (Detection((0.0, 0.0, 10.0, 10.0)),)), ParsedAnswer("", "yes", ())]
    out = acc(["x", "y"], solution=[json.dumps([0, 0, 10, 10]), '"yes"'], reward=[None, "yes_no"], answers=answers)
    assert out == [1.0, 1.0]
    assert acc.__name__ == "accuracy"
    with pytest.raises(ValueError):
        make_accuracy_reward(default="bogus")


@pytest.mark.parametrize("module", ["rec", "boxes", "format", "classification", "short_answers"])
def test_docstring_examples_run(module):
    import doctest
    import importlib
    assert doctest.testmod(importlib.import_module(f"vlm_r1.rewards.{module}")).failed == 0


@pytest.mark.parametrize("name", ["iou", "giou", "iou_acc", "det_map", "det_iou", "det_ap50"])
def test_box_rewards_give_none_for_a_coordinate_beyond_float_range(name):
    """An integer too large for a float is unusable ground truth (None), not an OverflowError."""
    box = [0, 0, 10**400, 1]
    solution = json.dumps(box if name in ("iou", "giou", "iou_acc") else [{"bbox_2d": box, "label": "a"}])
    answer = "<answer>[0, 0, 1, 1]</answer>" if name in ("iou", "giou", "iou_acc") else \
        '<answer>[{"bbox_2d": [0, 0, 1, 1], "label": "a"}]</answer>'
    assert get_reward(name)([answer], solution=[solution]) == [None]


def test_a_solution_column_of_the_wrong_length_scores_none():
    with pytest.warns(RuntimeWarning, match="1 ground truths for 2 completions"):
        assert get_reward("number_match")(["<answer>3</answer>"] * 2, solution=["3"]) == [None, None]
