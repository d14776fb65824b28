"""Decisions each process of a run makes on its own must agree across processes.

Which checkpoint to resume and which rows to train on are decided by every process from its own files (each node may
hold its own copy of the data and outputs). Processes that decided differently would train on different step counters
or row lists and fail later in a collective, or wait in one forever; one whose decision raised would leave the others
waiting. :func:`same_on_every_rank` makes every process raise the same error instead. During training, a stop that
each process decides from its own clock is taken when any of them decides it (:func:`true_on_any_rank`).
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")

# errors a decision may raise for a user to fix: passed to every process as that error (others stay tracebacks)
USER_ERRORS = ("DataError", "ImageError", "CheckpointError", "OptionError", "FileNotFoundError")


def same_on_every_rank(what: str, decide: Callable[[], T], fingerprint: Callable[[T], Any]) -> T:
    """``decide()`` on every process, and its result once every process has the same ``fingerprint`` of it.

    A process whose ``decide()`` raised a user error makes every process raise that error (the lowest such rank's,
    saying which process it came from); fingerprints that differ raise a :class:`vlm_r1.checkpoints.CheckpointError`
    on every process naming what differs. With one process it is ``decide()``."""
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes == 1:
        return decide()
    from accelerate.utils import gather_object

    result, error = None, None
    try:
        result = decide()
        outcome = ("ok", fingerprint(result))
    except Exception as e:
        if type(e).__name__ not in USER_ERRORS:
            raise
        error, outcome = e, ("error", type(e).__name__, str(e))
    outcomes = gather_object([outcome])
    failed = [(rank, o) for rank, o in enumerate(outcomes) if o[0] == "error"]
    if failed:
        if error is not None:
            raise error
        rank, (_, kind, message) = failed[0]
        raise _user_error(kind)(f"(process {rank}) {message}")
    if any(o != outcomes[0] for o in outcomes):
        from .checkpoints import CheckpointError

        listing = "; ".join(f"process {rank}: {o[1]}" for rank, o in enumerate(outcomes))
        raise CheckpointError(f"the processes of this run disagree on {what} ({listing}): give every node the same "
                              "files (data, images, output_dir)")
    return result


def is_main_rank() -> bool:
    """Whether this is the run's main process, from the launcher's ``RANK`` (readable before anything initialises the
    process group). What every process decides alike (and :func:`same_on_every_rank` checks) is said by this one."""
    import os

    return os.environ.get("RANK", "0") == "0"


def true_on_any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any process of the run (an all-reduce; itself alone when there is one)."""
    import torch
    import torch.distributed as dist
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes == 1:
        return flag
    value = torch.tensor([float(flag)], device=state.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _user_error(kind: str) -> type[Exception]:
    from .checkpoints import CheckpointError
    from .data import DataError
    from .recipe import OptionError

    return {"DataError": DataError, "ImageError": DataError, "CheckpointError": CheckpointError,
            "OptionError": OptionError, "FileNotFoundError": FileNotFoundError}[kind]  # fmt: skip
