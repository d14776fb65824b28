"""REC (referring expression comprehension / visual grounding) rewards: one predicted box vs one ground truth.

Ground truth: `[x1, y1, x2, y2]` in original-image pixels (positive area). The answer must hold
EXACTLY ONE box: an answer with several boxes (hedging) or with a malformed box scores 0, as does a
completion without `<answer>`. Predictions come from `answers_from`, so they are in pixels.
"""
from __future__ import annotations

from typing import Any, Callable

from .boxes import box_iou, generalized_box_iou
from .parsing import MAX_COORD, ParsedAnswer, load_solution, score_rows
from .registry import register_reward


def validate_rec(solution: Any) -> None:
    """Raise ValueError unless `solution` is [x1, y1, x2, y2]: finite numbers, x2 > x1, y2 > y1."""
    if not isinstance(solution, (list, tuple)) or len(solution) != 4:
        raise ValueError(f"REC ground truth must be [x1, y1, x2, y2], got {solution!r:.200}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in solution):
        raise ValueError(f"REC ground truth must hold 4 numbers, got {solution!r:.200}")
    if not all(abs(v) <= MAX_COORD for v in solution):  # False for NaN and ±inf; exact for ints of any size
        raise ValueError(f"REC ground truth has a non-finite or huge coordinate: {solution!r:.200}")
    x1, y1, x2, y2 = solution
    if not (x2 > x1 and y2 > y1):
        raise ValueError("REC ground truth must have x2 > x1 and y2 > y1 (pixels, [x1, y1, x2, y2]): "
                         f"{solution!r:.200}")


def _gt_box(solution: Any) -> list[float] | None:
    value = load_solution(solution)
    try:
        validate_rec(value)
    except ValueError:
        return None
    return [float(v) for v in value]


def _single_box(parsed: ParsedAnswer):
    dets = parsed.detections
    if parsed.answer is None or len(dets) != 1 or dets[0].box is None:
        return None
    return dets[0].box


def _rec_reward(score: Callable[[Any, list[float]], float], completions, solution, kwargs) -> list[float | None]:
    def score_answer(parsed: ParsedAnswer, gt: list[float]) -> float:
        box = _single_box(parsed)
        return 0.0 if box is None else score(box, gt)

    return score_rows(completions, solution, kwargs, _gt_box, score_answer)


def _iou(box, gt) -> float:
    return float(box_iou([box], [gt])[0, 0])


@register_reward("iou", validator=validate_rec)
def iou(completions, solution=None, **kwargs) -> list[float | None]:
    """IoU of the single predicted box with the ground truth, in [0, 1] (0 without exactly one valid box).

    >>> iou(["<answer>[0, 0, 10, 10]</answer>"], solution=["[0, 0, 10, 20]"])
    [0.5]
    """
    return _rec_reward(_iou, completions, solution, kwargs)


def make_iou_threshold_reward(tau: float = 0.5, name: str | None = None) -> Callable[..., list[float | None]]:
    """A reward that is 1.0 when IoU >= `tau` else 0.0 (Acc@tau); its `__name__` is `name` or 'iou_acc_<tau>'.

    Register it yourself if you want it by name: `register_reward(fn.__name__, validator=validate_rec)(fn)`.
    """
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"IoU threshold must be in (0, 1], got {tau}")

    def reward(completions, solution=None, **kwargs):
        return _rec_reward(lambda box, gt: 1.0 if _iou(box, gt) >= tau else 0.0, completions, solution, kwargs)

    reward.__name__ = reward.__qualname__ = name or f"iou_acc_{tau:g}".replace(".", "")
    reward.__doc__ = f"1.0 if the single predicted box has IoU >= {tau} with the ground truth, else 0.0."
    return reward


iou_acc = register_reward("iou_acc", validator=validate_rec)(make_iou_threshold_reward(0.5, name="iou_acc"))


@register_reward("giou", validator=validate_rec)
def giou(completions, solution=None, **kwargs) -> list[float | None]:
    """(GIoU + 1) / 2 of the single predicted box with the ground truth, in [0, 1] (0 without exactly one box).

    Unlike IoU it still ranks disjoint boxes (closer is better). Visual-RFT's reasoning-grounding reward.
    """
    return _rec_reward(lambda box, gt: (float(generalized_box_iou([box], [gt])[0, 0]) + 1.0) / 2.0,
                       completions, solution, kwargs)
