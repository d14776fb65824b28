"""Soak test: a few hundred GRPO steps of the tiny model on CPU, watching resident memory for a leak.

    OMP_NUM_THREADS=1 python benchmarks/soak.py --steps 300 --every 10 --warmup 60 --max-slope 8

Builds a tiny Qwen2-VL-architecture model and a synthetic REC set in a temporary folder, then runs
``vlm_r1.train.main`` (the real entry point, checkpoints every ``--save-steps`` included). A probe reward — returning
None, so it never changes the training — samples the process's RSS (psutil) every ``--every`` steps, after a full
``gc.collect()``: a leak is memory that survives a full collection (``--no-collect`` samples as is, so cyclic garbage
waiting for Python's rare generation-2 collection counts as growth). After the warm-up steps it fits a least-squares
line to RSS against step and prints the slope in MB per 100 steps; the exit status is 1 when the slope exceeds
``--max-slope``. Results are written to docs/reliability.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

PROBE = '''
import gc, os, psutil

SAMPLES = []
EVERY = int(os.environ["SOAK_EVERY"])
COLLECT = os.environ["SOAK_COLLECT"] == "1"
_process = psutil.Process()

def rss_probe(completions, trainer_state=None, **kwargs):
    """Sample RSS once per probed step; never applies (None), so training is unchanged."""
    step = trainer_state.global_step if trainer_state is not None else -1
    if step % EVERY == 0 and (not SAMPLES or SAMPLES[-1][0] != step):
        collected = gc.collect() if COLLECT else 0
        SAMPLES.append((step, _process.memory_info().rss / 2**20, len(gc.get_objects()), collected))
    return [None] * len(completions)

def digits(completions, **kwargs):
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) + 0.002 * len(t) for t in texts]
'''


def slope_per_100(samples: list[tuple[int, float]]) -> float:
    """Least-squares slope of RSS (MB) against step, times 100."""
    n = len(samples)
    mean_x = sum(s for s, _ in samples) / n
    mean_y = sum(m for _, m in samples) / n
    var = sum((s - mean_x) ** 2 for s, _ in samples)
    cov = sum((s - mean_x) * (m - mean_y) for s, m in samples)
    return 100 * cov / var if var else 0.0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=10, help="sample RSS every N steps")
    parser.add_argument("--warmup", type=int, default=60, help="steps left out of the slope fit")
    parser.add_argument("--max-slope", type=float, default=8.0, help="fail above this many MB per 100 steps")
    parser.add_argument("--save-steps", type=int, default=50)
    parser.add_argument(
        "--no-collect",
        action="store_true",
        help="sample without a full gc.collect() first (then cyclic garbage awaiting Python's rare generation-2 "
        "collection counts as growth)",
    )
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--workdir", default=None, help="default: a temporary folder, removed afterwards")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.every < 1:
        parser.error("--steps and --every must be at least 1")
    fit_points = [step for step in range(0, args.steps, args.every) if step >= args.warmup]  # the probe's samples
    if len(fit_points) < 3:
        parser.error(f"--steps {args.steps}, --every {args.every} and --warmup {args.warmup} leave {len(fit_points)} "
                     "RSS samples after the warm-up; the slope needs at least 3: raise --steps, or lower --every or "
                     "--warmup")  # fmt: skip

    os.environ["SOAK_EVERY"] = str(args.every)
    os.environ["SOAK_COLLECT"] = "0" if args.no_collect else "1"
    with tempfile.TemporaryDirectory(prefix="vlm_r1_soak_") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "soak_probe.py").write_text(textwrap.dedent(PROBE))
        sys.path.insert(0, str(work))

        from vlm_r1.synthetic import write_split
        from vlm_r1.tiny import make_tiny
        from vlm_r1.train import main as train_main

        model = make_tiny(work / "model", "qwen2_vl")
        data = write_split(work / "data", "rec", "train", args.rows, seed=0)
        recipe = {
            "model_name_or_path": str(model),
            "train_data": [str(data)],
            "reward_funcs": ["soak_probe:digits", "soak_probe:rss_probe"],
            "output_dir": str(work / "out"),
            "bf16": False,
            "use_cpu": True,
            "per_device_train_batch_size": 8,
            "num_generations": 4,
            "max_completion_length": 16,
            "max_steps": args.steps,
            "learning_rate": 1e-4,
            "logging_steps": 1,
            "save_strategy": "steps",
            "save_steps": args.save_steps,
            "save_total_limit": 2,
            "report_to": "none",
            "gradient_checkpointing": False,
            "seed": 0,
            "disable_tqdm": True,
        }
        config = work / "soak.yaml"
        config.write_text(json.dumps(recipe))  # JSON is YAML
        start = time.monotonic()
        train_main(["--config", str(config)])
        seconds = time.monotonic() - start
        samples = sys.modules["soak_probe"].SAMPLES

    fitted = [(s, m) for s, m, _, _ in samples if s >= args.warmup]
    slope = slope_per_100(fitted)
    print("\nstep    rss_mb  python_objects  gc_collected")
    for step, mb, objects, collected in samples:
        print(f"{step:>4}  {mb:8.1f}  {objects:>14,}  {collected:>12,}")
    print(
        f"\n{args.steps} steps in {seconds:.0f} s ({seconds / args.steps:.2f} s/step); RSS {samples[0][1]:.0f} MB at "
        f"step {samples[0][0]}, {samples[-1][1]:.0f} MB at step {samples[-1][0]}; slope after step {args.warmup}: "
        f"{slope:+.2f} MB per 100 steps (bound {args.max_slope})"
    )
    if not slope <= args.max_slope:
        print("FAIL: resident memory grows faster than the bound")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
