"""Training curves from ``trainer.state.log_history``: one ``curves.png`` with a panel per metric.

Panels (each drawn only when the run logged it): total reward (band: ± reward_std; eval reward as dots), each reward
function's mean, loss, KL, completion length (band: min..max), entropy, fraction of groups with zero reward spread,
gradient norm. Noisy series get a rolling mean on top of the raw line. Drawn with matplotlib's object API on the Agg
canvas: no pyplot, no global backend change.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# (panel title, [(key, band low key or ±std key, band high key)]), in drawing order
_PANELS = [
    ("total reward", [("reward", "reward_std", None)]),
    ("loss", [("loss", None, None)]),
    ("token accuracy (SFT)", [("mean_token_accuracy", None, None)]),
    ("KL to reference", [("kl", None, None)]),
    ("completion length (tokens)", [("completions/mean_length", "completions/min_length", "completions/max_length")]),
    ("entropy", [("entropy", None, None)]),
    ("groups with zero reward std", [("frac_reward_zero_std", None, None)]),
    ("grad norm", [("grad_norm", None, None)]),
]


def series(log_history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``key`` over the logged entries that have it and a step."""
    steps, values = [], []
    for entry in log_history:
        value = entry.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "step" in entry:
            steps.append(entry["step"])
            values.append(float(value))
    return steps, values


def _rolling(values: list[float], window: int) -> list[float]:
    """Trailing mean over the finite values of each window (NaN where a window has none): one skipped step's
    non-finite grad_norm must not blank the rest of the curve."""
    out, total, count = [], 0.0, 0
    for i, v in enumerate(values):
        if math.isfinite(v):
            total, count = total + v, count + 1
        if i >= window and math.isfinite(values[i - window]):
            total, count = total - values[i - window], count - 1
        out.append(total / count if count else math.nan)
    return out


def _window(n: int) -> int:
    return max(1, n // 20)


def _plot(ax, steps, values, label) -> str:
    """Plot one series (raw and faint plus a trailing rolling mean when there are many points); return its colour."""
    window = _window(len(values))
    if window > 1:
        (line,) = ax.plot(steps, values, alpha=0.3, lw=0.8)
        smooth = _rolling(values, window)
        ax.plot(steps, smooth, lw=1.6, color=line.get_color(), label=f"{label} (rolling mean of {window})")
        return line.get_color()
    (line,) = ax.plot(steps, values, lw=1.4, label=label, marker="." if len(values) < 30 else None)
    return line.get_color()


def _band(ax, steps, low, high, color) -> None:
    """Shade low..high (aligned with ``steps``), smoothed like the line it surrounds."""
    window = _window(len(steps))
    ax.fill_between(steps, _rolling(low, window), _rolling(high, window), alpha=0.15, color=color, lw=0)


def write_history_and_curves(log_history: list[dict], out_dir: str | Path) -> Path | None:
    """``out_dir/log_history.json`` (written whole or not at all), which ``vlm-r1 report`` redraws from, and
    ``out_dir/curves.png``; returns the PNG's path as :func:`write_curves` does."""
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "log_history.json.tmp"
    tmp.write_text(json.dumps({"log_history": log_history}, indent=1, default=str), encoding="utf-8")
    tmp.replace(out_dir / "log_history.json")
    return write_curves(log_history, out_dir)


def write_curves(log_history: list[dict], out_dir: str | Path) -> Path | None:
    """Write ``out_dir/curves.png``; return its path, or None when nothing plottable was logged."""
    reward_keys = sorted(
        {k for e in log_history for k in e if k.startswith("rewards/") and k.endswith("/mean")}
    )
    panels = []
    for title, keys in _PANELS:
        if series(log_history, keys[0][0])[0]:
            panels.append((title, keys))
        if title == "total reward" and reward_keys:
            panels.append(("reward per function (mean)", [(k, None, None) for k in reward_keys]))
    if not panels:
        return None
    cols = 2 if len(panels) > 1 else 1
    rows = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(6 * cols, 3.2 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for n, (title, keys) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, n + 1)
        for key, low, high in keys:
            steps, values = series(log_history, key)
            label = key.removeprefix("rewards/").removesuffix("/mean")
            color = _plot(ax, steps, values, label)
            if low:  # a ± std band (no high key) or a low..high band
                lo = dict(zip(*series(log_history, low)))
                hi = dict(zip(*series(log_history, high))) if high else {}
                pairs = [(x, v) for x, v in zip(steps, values) if x in lo and (not high or x in hi)]
                if pairs:
                    xs = [x for x, _ in pairs]
                    if high:
                        _band(ax, xs, [lo[x] for x in xs], [hi[x] for x in xs], color)
                    else:
                        _band(ax, xs, [m - lo[x] for x, m in pairs], [m + lo[x] for x, m in pairs], color)
            eval_steps, eval_values = series(log_history, f"eval_{key}")
            if eval_steps:
                ax.plot(eval_steps, eval_values, "o--", ms=4, color=color, mec="black", lw=1, label=f"eval {label}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        labels = ax.get_legend_handles_labels()[1]
        if len(labels) > 1 or any("rolling mean" in label for label in labels):
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(out_dir) / "curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    fig.clear()
    gc.collect()  # the figure is ~14,000 objects in reference cycles: free them now, not at a rare full collection
    return path
