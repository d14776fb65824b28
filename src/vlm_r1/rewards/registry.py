"""Name -> reward function registry.

`@register_reward("name")` records a function under a name (a duplicate is an error, and the
function's `__name__` must be that name, because TRL logs each reward as `rewards/<__name__>`).
`get_reward("name")` looks a registered reward up; `get_reward("package.module:function")` imports
one from anywhere. An optional `validator` checks a row's ground truth at data-load time.
"""
from __future__ import annotations

import importlib
import math
import numbers
from typing import Any, Callable

RewardFn = Callable[..., list]

_REWARDS: dict[str, RewardFn] = {}
_VALIDATORS: dict[str, Callable[[Any], None]] = {}


class UnknownRewardError(KeyError, ValueError):
    """An unknown reward name (a KeyError and a ValueError, with a readable message)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown reward"


def register_reward(name: str, *, validator: Callable[[Any], None] | None = None):
    """Decorator registering `fn` under `name`; `validator(solution)` raises ValueError on unusable ground truth."""

    def decorator(fn: RewardFn) -> RewardFn:
        if name in _REWARDS:
            raise ValueError(f"reward {name!r} is already registered (by {_REWARDS[name].__module__})")
        if getattr(fn, "__name__", None) != name:
            raise ValueError(f"reward {name!r}: the function's __name__ is {getattr(fn, '__name__', None)!r}; "
                             f"name it {name!r} so TRL logs it as rewards/{name}")
        _REWARDS[name] = fn
        if validator is not None:
            _VALIDATORS[name] = validator
        return fn

    return decorator


def get_reward(spec: str) -> RewardFn:
    """Return the reward registered as `spec`, or import `spec` when it reads 'package.module:function'."""
    if not isinstance(spec, str):
        raise ValueError(f"a reward spec is a name or 'package.module:function', got {spec!r}")
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as e:  # ImportError, or an error raised while importing the module
            raise ValueError(f"reward {spec!r}: cannot import module {module_name!r}: {type(e).__name__}: {e}") from e
        fn = getattr(module, attr, None)
        if fn is None or not callable(fn):
            raise ValueError(f"reward {spec!r}: module {module_name!r} has no callable {attr!r}")
        return fn
    if spec not in _REWARDS:
        raise UnknownRewardError(f"unknown reward {spec!r}; registered rewards: {', '.join(sorted(_REWARDS))} "
                                 f"(or give 'package.module:function')")
    return _REWARDS[spec]


def list_rewards() -> dict[str, RewardFn]:
    """A copy of the registry: {name: function}."""
    return dict(_REWARDS)


def get_validator(name: str) -> Callable[[Any], None] | None:
    """The ground-truth validator registered with `name`, or None (a reward without ground truth)."""
    return _VALIDATORS.get(name)


def reward_values(output: Any, n: int, name: str) -> tuple[list[float | None], int]:
    """Check a reward function's output for `n` completions against the contract (one float or None each).

    Returns the values as floats, with NaN and ±inf turned into None, and how many were turned. Raises
    TypeError for output that is not a list of `n` numbers or Nones (any `numbers.Real`, numpy scalars and
    one-element tensors and bools, as 1.0 / 0.0, included).
    """
    if output is None or isinstance(output, (str, bytes, dict)) or not hasattr(output, "__iter__"):
        raise TypeError(f"reward function {name!r} returned {type(output).__name__}; expected a list of {n} values")
    output = list(output)
    if len(output) != n:
        raise TypeError(f"reward function {name!r} returned {len(output)} values for {n} completions")
    values: list[float | None] = []
    dropped = 0
    for value in output:
        if hasattr(value, "numel") and hasattr(value, "item") and value.numel() == 1:  # a one-element tensor
            value = value.item()
        if value is None:
            values.append(None)
        elif isinstance(value, numbers.Real):  # bool, int, float and numpy scalars are all numbers.Real
            value = float(value)
            finite = math.isfinite(value)
            values.append(value if finite else None)
            dropped += not finite
        else:
            raise TypeError(f"reward function {name!r} returned {value!r:.80} ({type(value).__name__}); "
                            "expected a float or None")
    return values, dropped
