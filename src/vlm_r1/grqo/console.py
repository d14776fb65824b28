"""What `vlm-r1 grqo` prints: one compact line per logged step and per evaluation (beside the progress bar), and
the summary at the end. `log.jsonl` and `metrics.json` keep every number; these lines are for reading."""

from __future__ import annotations

# (log key, label, digits) in the order they are printed; a key the step did not log is left out
_STEP_FIELDS = (("loss", "loss", 4), ("loss_supervised", "sup", 4), ("loss_grqo", "grqo", 4),
                ("reward_mean", "reward", 3), ("kl_objectness", "kl", 4), ("grad_norm", "grad", 2))  # fmt: skip
_EVAL_FIELDS = (("mAP", 3), ("AP50", 3), ("AP75", 3))


def step_line(logs: dict, max_steps: int) -> str:
    """``step N/M | loss … | sup … | grqo … | reward … | kl … | grad … | S s/step``."""
    parts = [f"step {logs['step']:>5}/{max_steps}"]
    parts += [f"{label} {logs[key]:.{digits}f}" for key, label, digits in _STEP_FIELDS if key in logs]
    parts.append(f"{logs['step_time_s']:.2f} s/step")
    return " | ".join(parts)


def metrics_text(metrics: dict) -> str:
    """``mAP … AP50 … AP75 …`` of one evaluation file's COCO metrics (n/a where COCO gives -1: no ground
    truth)."""
    return " ".join(f"{name} {metrics[name]:.{digits}f}" if metrics[name] >= 0 else f"{name} n/a"
                    for name, digits in _EVAL_FIELDS if name in metrics)


def eval_line(step: int, metrics_by_file: dict) -> str:
    """``eval at step N | FILE mAP … AP50 … AP75 … | …``."""
    return " | ".join([f"eval at step {step}", *(f"{name} {metrics_text(m)}" for name, m in metrics_by_file.items())])


def summary(result: dict, output_dir) -> str:
    """The lines printed when the run ends: the steps and mean step time, each eval file's metrics, where the
    files are."""
    lines = [f"GRQO: {result['steps']} steps, {result['mean_step_time_s']:.2f} s/step on average"]
    lines += [f"  {name}: {metrics_text(m)}" for name, m in result["metrics"].items()]
    if not result["metrics"]:
        lines.append("  no eval_data: nothing was evaluated")
    lines.append(f"metrics (every COCO number, per file): {output_dir}/metrics.json; step logs: {output_dir}/log.jsonl")
    return "\n".join(lines)
