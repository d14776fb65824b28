"""Paired comparison of two evaluations of the same rows (before / after training): difference and bootstrap CI.

Row scores are paired by position (the same rows, the same order). The 95% interval is the percentile interval of
the mean difference over ``n_boot`` resamples of the rows (with replacement), seeded, so it is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .rec import HIT_IOU


def paired_bootstrap(before: Sequence[float], after: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict:
    """``{"before", "after", "delta", "ci95": [lo, hi], "n"}`` for per-row scores (e.g. 0/1 hits)."""
    a, b = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores differ in length: {a.shape} vs {b.shape}")
    n = len(a)
    if n == 0:
        return {"before": None, "after": None, "delta": None, "ci95": [None, None], "n": 0}
    diff = b - a
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"before": float(a.mean()), "after": float(b.mean()), "delta": float(diff.mean()),
            "ci95": [float(lo), float(hi)], "n": n}  # fmt: skip


def hits(result: dict) -> list[float]:
    """Per-row 0/1 REC hits of an evaluation result (first completion): IoU >= ``rec.HIT_IOU``."""
    return [float(p["scores"][0] >= HIT_IOU) for p in result["predictions"] if p["task"] == "rec"]
