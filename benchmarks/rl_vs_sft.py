"""RL vs SFT on synthetic REC, from the same warm start, on equal labelled data and equal wall-clock time.

For each seed: GRPO (``recipes/tiny/rec_grpo.yaml``) runs ``--grpo_steps`` steps from the warm start and its wall
time is measured; then SFT (``recipes/tiny/rec_sft.yaml`` with ``--sft_lr``, constant schedule) continues from the
same warm start on the SAME labelled rows for the same number of seconds (``max_train_seconds``). Both are
evaluated greedily on every row of the in-domain ``test`` and the out-of-domain ``ood_pairs`` (held-out
colour-shape pairs) and ``ood`` (those pairs, smaller, on stripes, among more distractors) splits.

    .venv/bin/python benchmarks/rl_vs_sft.py --out outputs/rl_vs_sft   # about 25 minutes on 2 CPU cores

Writes ``results.json``, ``table.md`` and ``rl_vs_sft.png`` to ``--out``. The numbers are whatever this run measures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vlm_r1.pipeline import (  # noqa: E402
    EVAL_SPLITS,
    RECIPES,
    SHIPPED_WARM_START,
    build_warm_start,
    check_shipped_image_size,
    grpo_setup,
    evaluate_checkpoint,
    key_value_args,
    make_data,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/rl_vs_sft")
    p.add_argument("--warm_start", default=None, help="checkpoint (default: the shipped one, else built by SFT)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n_labelled", type=int, default=1000, help="labelled training rows both methods see")
    p.add_argument("--n_test", type=int, default=1000)
    p.add_argument("--image_size", type=int, default=112, help="the shipped warm start was trained at 112 px")
    p.add_argument("--grpo_steps", type=int, default=400)
    p.add_argument("--grpo_args", nargs="*", default=[],
                   help="KEY=VALUE overrides of the GRPO recipe, e.g. per_device_train_batch_size=32 warmup_steps=0")
    p.add_argument("--sft_lr", type=float, default=1e-4)
    p.add_argument("--eval_batch_size", type=int, default=64)
    return p.parse_args(argv)


def run_grpo(warm: Path, data: Path, out: Path, seed: int, steps: int, overrides: list[str]) -> float:
    """Seconds of GRPO's training loop (model loading and saving excluded): SFT gets exactly as many."""
    from vlm_r1.train import main as train_main

    summary = train_main(["--config", str(RECIPES / "rec_grpo.yaml"), "--model_name_or_path", str(warm),
                          "--train_data", str(data), "--output_dir", str(out), "--max_steps", str(steps),
                          "--seed", str(seed), "--disable_tqdm", "true", "--save_strategy", "no",  # saves would count as training
                          *overrides])  # fmt: skip
    return summary["train_seconds"]


def run_sft(warm: Path, data: Path, out: Path, seed: int, seconds: float, lr: float) -> float:
    from vlm_r1.sft import main as sft_main

    summary = sft_main(["--config", str(RECIPES / "rec_sft.yaml"), "--model_name_or_path", str(warm),
              "--train_data", str(data), "--output_dir", str(out), "--max_steps", "100000",
              "--max_train_seconds", f"{seconds:.1f}", "--learning_rate", str(lr), "--lr_scheduler_type", "constant",
              "--warmup_steps", "0", "--seed", str(seed), "--disable_tqdm", "true"])  # fmt: skip
    return summary["train_seconds"]  # the training loop alone, as GRPO's (loading and saving excluded)


def mean_std(values):
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    methods = ["warm start", "GRPO", "SFT"]
    width = 0.25
    for j, method in enumerate(methods):
        means, stds = [], []
        for split in EVAL_SPLITS:
            m, s = mean_std([100 * v for v in results[method][split]])
            means.append(m)
            stds.append(s)
        ax.bar([i + (j - 1) * width for i in range(len(EVAL_SPLITS))], means, width, yerr=stds, capsize=3, label=method)
    ax.set_xticks(range(len(EVAL_SPLITS)), ["in-domain test", "held-out pairs", "pairs + size/background"])
    ax.set_ylabel("Acc@0.5 (%)")
    ax.set_title("REC, tiny Qwen2-VL, equal data and wall time")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if "--max_steps" in key_value_args(args.grpo_args):
        raise SystemExit("set GRPO's steps with --grpo_steps, not --grpo_args max_steps=...")
    if "--seed" in key_value_args(args.grpo_args):
        raise SystemExit("set the seeds with --seeds, not --grpo_args seed=... (it would make every GRPO run the same)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = make_data(out, args.n_labelled, args.n_test, args.image_size, 0)
    if args.warm_start:
        warm = Path(args.warm_start)
    elif (SHIPPED_WARM_START / "config.json").exists():
        check_shipped_image_size(args.image_size)
        warm = SHIPPED_WARM_START
    else:
        warm = build_warm_start(out, "qwen2_vl", paths["train"], str(RECIPES / "rec_sft.yaml"), [])
    setup = grpo_setup(
        ["--config", str(RECIPES / "rec_grpo.yaml"), "--model_name_or_path", str(warm), "--train_data", str(paths["train"]),
         *key_value_args(args.grpo_args)]
    )

    def acc(checkpoint: Path, name: str) -> dict:
        res = evaluate_checkpoint(checkpoint, paths, out / name, args.eval_batch_size, 40, setup)
        return {split: r["metrics"]["rec"] for split, r in res.items()}

    results: dict = {arm: {split: [] for split in EVAL_SPLITS} for arm in ("warm start", "GRPO", "SFT")}
    runs = []
    base = acc(warm, "eval_warm")
    for seed in args.seeds:
        for split in EVAL_SPLITS:
            results["warm start"][split].append(base[split]["acc@0.5"])
        grpo_dir, sft_dir = out / f"grpo_seed{seed}", out / f"sft_seed{seed}"
        grpo_seconds = run_grpo(warm, paths["train"], grpo_dir, seed, args.grpo_steps, key_value_args(args.grpo_args))
        sft_seconds = run_sft(warm, paths["train"], sft_dir, seed, grpo_seconds, args.sft_lr)
        g, s = acc(grpo_dir, f"eval_grpo_seed{seed}"), acc(sft_dir, f"eval_sft_seed{seed}")
        for split in EVAL_SPLITS:
            results["GRPO"][split].append(g[split]["acc@0.5"])
            results["SFT"][split].append(s[split]["acc@0.5"])
        runs.append({"seed": seed, "grpo_seconds": grpo_seconds, "sft_seconds": sft_seconds, "grpo": g, "sft": s})
        (out / "results.json").write_text(json.dumps({"args": vars(args), "warm": base, "runs": runs}, indent=1))

    lines = ["| method | " + " | ".join(f"{split} Acc@0.5 (%)" for split in EVAL_SPLITS) + " |",
             "|---|" + "---|" * len(EVAL_SPLITS)]
    for method, by_split in results.items():
        cells = []
        for split in EVAL_SPLITS:
            m, sd = mean_std([100 * v for v in by_split[split]])
            cells.append(f"{m:.1f} ± {sd:.1f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    seconds = statistics.mean(r["grpo_seconds"] for r in runs)
    lines.append(f"\n{len(args.seeds)} seeds, {args.n_labelled} labelled rows, {args.n_test} rows per evaluation split; "
                 f"GRPO {args.grpo_steps} steps (mean {seconds:.0f} s per run), SFT the same seconds.")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    plot(results, out / "rl_vs_sft.png")
    print(table)
    return results


if __name__ == "__main__":
    main()
