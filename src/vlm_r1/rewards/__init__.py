"""Rule-based, verifiable rewards: `f(completions, **columns) -> list[float | None]`, registered by name.

Importing this package registers every built-in reward (see docs/rewards.md for the table).
"""
from . import classification, detection, dispatch, format, ovd, rec, shaping, short_answers  # noqa: F401  (register)
from .dispatch import TASK_REWARDS, make_accuracy_reward, make_row_check, validate_solution
from .parsing import Detection, ParsedAnswer, answers_from, completion_text, parse_answer
from .registry import get_reward, list_rewards, register_reward

__all__ = [
    "Detection", "ParsedAnswer", "TASK_REWARDS", "answers_from", "completion_text", "get_reward", "list_rewards",
    "make_accuracy_reward", "make_row_check", "parse_answer", "register_reward", "validate_solution",
]
