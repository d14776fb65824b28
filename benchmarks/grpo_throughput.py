"""Benchmark: GRPO steps/s of vlm-r1's trainer (shared image encoding; optionally also shared prompt tokens) against
vanilla ``trl.GRPOTrainer``.

Run (CPU default, about 3 minutes on 2 cores):
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/grpo_throughput.py
GPU (implemented, not yet run), a randomly initialised model at Qwen2.5-VL-3B size (no weights needed):
    .venv/bin/python benchmarks/grpo_throughput.py --device cuda --model-type qwen2_5_vl --size 3b --image-size 672

The arms (``--arms``, default all three): ``ours`` (``VLMGRPOTrainer``, image encoding shared), ``packed``
(the same plus ``share_prompt_tokens``: each prompt's language-model positions run once per group in the
log-prob and training passes) and ``vanilla`` (``trl.GRPOTrainer``). All get the same model folder, data, G,
lengths, seed and GRPO settings; they are run in alternating rounds in one process (ours, packed, vanilla,
ours, ...) and each round's first step is a warm-up that is not counted. Reported per trainer (best round,
since the machine is shared):

* samples/s: completions trained on per second (prompts x G per step / step time);
* the time split per step, timed around TRL's own methods: generation (``_generate_single_turn``),
  log-prob passes without grad (reference model with beta > 0, old policy when off-step),
  rewards (``_calculate_rewards``), other scoring work in ``_generate_and_score_completions``
  (templating, the processor on every row, advantages), the training forward (``compute_loss``), and
  backward + optimizer (the rest of the step);
* peak memory: the largest RSS above the round's starting RSS (CPU, sampled every 5 ms), or
  ``torch.cuda.max_memory_allocated`` (GPU).

The CPU default is a perception workload where visual tokens dominate: a tiny Qwen2-VL (text width 128,
3 layers; vision depth 2, width 96) and 448x448 images (1024 patches -> 256 visual tokens), 4 prompts x
G=8, 16 new tokens, beta 0.04 (a reference model, as VLM-R1's recipes use).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch
from transformers import TrainerCallback

PARTS = ("generation", "logps_no_grad", "rewards", "other_scoring", "train_forward", "backward_optimizer")


# ---------------------------------------------------------------------------------------------- timing
class Timings:
    def __init__(self):
        self.current: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, float]] = []


def timed(name_of):
    """Wrap a trainer method so its wall time adds to ``self.timings.current[name_of(...)]``."""

    def decorate(method):
        def wrapper(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return method(self, *args, **kwargs)
            finally:
                if self.args.device.type == "cuda":
                    torch.cuda.synchronize()
                self.timings.current[name_of(self, *args, **kwargs)] += time.perf_counter() - start

        return wrapper

    return decorate


def instrumented(base):
    """A subclass of trainer class ``base`` that records the time split of every step."""

    class Timed(base):
        def __init__(self, *args, **kwargs):
            self.timings = Timings()
            super().__init__(*args, **kwargs)

        @timed(lambda self, *a, **k: "generation")
        def _generate_single_turn(self, *args, **kwargs):
            return super()._generate_single_turn(*args, **kwargs)

        @timed(lambda self, *a, **k: "logps_no_grad" if not torch.is_grad_enabled() else "logps_grad")
        def _get_per_token_logps_and_entropies(self, *args, **kwargs):
            return super()._get_per_token_logps_and_entropies(*args, **kwargs)

        @timed(lambda self, *a, **k: "rewards")
        def _calculate_rewards(self, *args, **kwargs):
            return super()._calculate_rewards(*args, **kwargs)

        @timed(lambda self, *a, **k: "scoring_total")
        def _generate_and_score_completions(self, *args, **kwargs):
            return super()._generate_and_score_completions(*args, **kwargs)

        @timed(lambda self, *a, **k: "train_forward")
        def compute_loss(self, *args, **kwargs):
            return super().compute_loss(*args, **kwargs)

    return Timed


class StepClock(TrainerCallback):
    """Wall time of each optimizer step, and the split recorded by ``instrumented``."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_step_begin(self, args, state, control, **kwargs):
        self.trainer.timings.current.clear()
        if self.trainer.args.device.type == "cuda":
            torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer.args.device.type == "cuda":
            torch.cuda.synchronize()
        t = dict(self.trainer.timings.current)
        step = time.perf_counter() - self.start
        scoring = t.get("scoring_total", 0.0)
        split = {
            "step": step,
            "generation": t.get("generation", 0.0),
            "logps_no_grad": t.get("logps_no_grad", 0.0),
            "rewards": t.get("rewards", 0.0),
        }
        split["other_scoring"] = scoring - split["generation"] - split["logps_no_grad"] - split["rewards"]
        split["train_forward"] = t.get("train_forward", 0.0)
        split["backward_optimizer"] = step - scoring - split["train_forward"]
        self.trainer.timings.steps.append(split)


class PeakRSS:
    """Largest resident set size seen while the block runs, sampled by a thread every 5 ms."""

    def __enter__(self):
        import psutil

        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


# ---------------------------------------------------------------------------------------------- setup
def make_model_dir(args, root: Path) -> Path:
    from vlm_r1.tiny import make_tiny

    pixels = args.image_size * args.image_size
    if args.size == "tiny":
        if args.model_type == "internvl":  # one tile of the image's side (InternVL sizes images by tiles)
            return make_tiny(root / "model", args.model_type, seed=args.seed, image_size=args.image_size, max_tiles=1)
        return make_tiny(root / "model", args.model_type, seed=args.seed, min_pixels=pixels, max_pixels=pixels)
    if args.model_type != "qwen2_5_vl":
        raise SystemExit("--size 3b is defined for --model-type qwen2_5_vl")
    # Qwen2.5-VL-3B's shapes (text 2048 x 36 layers, GQA 16/2, MLP 11008; vision 1280 x 32 blocks),
    # random init, with the tiny offline tokenizer's vocabulary (the 151k-row embedding is left out).
    return make_tiny(
        root / "model", "qwen2_5_vl", seed=args.seed, min_pixels=pixels, max_pixels=pixels,
        hidden_size=2048, num_layers=36, num_heads=16, num_kv_heads=2, intermediate_size=11008,
        vision_depth=32, vision_width=1280, vision_heads=16, vision_intermediate_size=3420,
    )  # fmt: skip


def make_dataset(args):
    from datasets import Dataset
    from PIL import Image

    g = torch.Generator().manual_seed(args.seed)
    rows = []
    for i in range(args.prompts * (args.steps + 1)):
        pixels = torch.randint(0, 256, (args.image_size, args.image_size, 3), generator=g, dtype=torch.uint8)
        rows.append({"prompt": [{"role": "user", "content": f"Find object {i}. Answer with a box."}],
                     "images": [Image.fromarray(pixels.numpy())]})  # fmt: skip
    return Dataset.from_list(rows)


def length_reward(completions, **kwargs):
    """A cheap reward that varies between completions (so advantages are non-zero)."""
    return [float(len(str(c)) % 5) for c in completions]


def build(kind: str, args, model_dir: Path, dataset, out: Path):
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOConfig, GRPOTrainer

    from vlm_r1.config import VLMGRPOConfig
    from vlm_r1.modules import get_module
    from vlm_r1.trainer.grpo import VLMGRPOTrainer

    common = dict(
        output_dir=str(out / kind), per_device_train_batch_size=args.prompts * args.g, num_generations=args.g,
        max_completion_length=args.max_completion_length, max_steps=args.steps + 1, learning_rate=1e-5,
        beta=args.beta, logging_steps=1000, save_strategy="no", report_to="none", seed=args.seed,
        disable_tqdm=True, use_cpu=args.device == "cpu", bf16=args.device == "cuda",
        gradient_checkpointing=args.gradient_checkpointing, dataloader_num_workers=0,
    )  # fmt: skip
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=dtype)
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    if kind in ("ours", "packed"):
        config = VLMGRPOConfig(**common, share_image_encoding=True, share_prompt_tokens=kind == "packed")
        cls, extra = instrumented(VLMGRPOTrainer), {"vlm_module": get_module(args.model_type)}
    else:
        config = GRPOConfig(**common)
        cls, extra = instrumented(GRPOTrainer), {}
    trainer = cls(model=model, reward_funcs=[length_reward], args=config, train_dataset=dataset,
                  processing_class=processor, **extra)  # fmt: skip
    trainer.add_callback(StepClock(trainer))
    return trainer


def release_memory():
    """Collect garbage and hand freed heap pages back to the OS, so each round starts from a similar RSS."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def run_once(kind, args, model_dir, dataset, out):
    release_memory()
    torch.manual_seed(args.seed)
    trainer = build(kind, args, model_dir, dataset, out)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        memory = contextlib.nullcontext()
    else:
        memory = PeakRSS()
    with memory:
        trainer.train()
    steps = trainer.timings.steps[1:]  # the first step warms up
    mean = {k: sum(s[k] for s in steps) / len(steps) for k in steps[0]}
    peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else memory.peak - memory.base
    del trainer
    return mean, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model-type", default="qwen2_vl", choices=["qwen2_vl", "qwen2_5_vl", "internvl"])
    parser.add_argument("--size", choices=["tiny", "3b"], default="tiny")
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--prompts", type=int, default=4, help="distinct prompts per step")
    parser.add_argument("--g", type=int, default=8, help="num_generations")
    parser.add_argument("--max-completion-length", type=int, default=16)
    parser.add_argument("--beta", type=float, default=0.04)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per round (after one warm-up step)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per trainer")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--arms", default="ours,packed,vanilla",
                        help="trainers to compare: ours (image encoding shared), packed (ours + share_prompt_tokens), "
                             "vanilla (trl.GRPOTrainer); ratios are taken against vanilla, and packed against ours")  # fmt: skip
    args = parser.parse_args(argv)
    arms = args.arms.split(",")
    if not arms or set(arms) - {"ours", "packed", "vanilla"} or "vanilla" not in arms:
        parser.error("--arms: a comma-separated subset of ours, packed, vanilla that includes vanilla")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model_dir = make_model_dir(args, root)
        dataset = make_dataset(args)
        results = {kind: [] for kind in arms}
        for r in range(args.rounds):
            for kind in arms:
                mean, peak = run_once(kind, args, model_dir, dataset, root / f"run{r}")
                results[kind].append((mean, peak))
                print(f"round {r} {kind:8s} step {mean['step']:.2f} s  peak {peak / 2**20:.0f} MiB", flush=True)

    samples = args.prompts * args.g
    best = {kind: min(runs, key=lambda x: x[0]["step"]) for kind, runs in results.items()}
    device = f"{platform.processor() or 'cpu'}, {os.cpu_count()} cores"
    if args.device == "cuda":
        device = torch.cuda.get_device_name()
    print(f"\n{datetime.date.today()}  device: {device}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    print(f"model {args.model_type} ({args.size}), image {args.image_size}px, {args.prompts} prompts x G={args.g}, "
          f"{args.max_completion_length} new tokens, beta {args.beta}, "
          f"gradient checkpointing {args.gradient_checkpointing}")  # fmt: skip
    header = f"{'':10s}{'samples/s':>10s}{'step s':>8s}" + "".join(f"{p:>19s}" for p in PARTS)
    header += f"{'peak MiB':>10s}"
    print(header)
    for kind, (mean, peak) in best.items():
        cells = "".join(f"{mean[p]:>19.3f}" for p in PARTS)
        print(f"{kind:10s}{samples / mean['step']:>10.2f}{mean['step']:>8.2f}{cells}{peak / 2**20:>10.0f}")
    ratios = {}
    for kind in arms:
        if kind == "vanilla":
            continue
        ratios[kind] = best["vanilla"][0]["step"] / best[kind][0]["step"]
        memory = best[kind][1] / max(best["vanilla"][1], 1)
        print(f"ratio {kind}/vanilla samples/s: {ratios[kind]:.2f}x   peak memory {kind}/vanilla: {memory:.2f}")
    if "ours" in best and "packed" in best:
        print(f"ratio packed/ours samples/s: {best['ours'][0]['step'] / best['packed'][0]['step']:.2f}x")
    return best, ratios


if __name__ == "__main__":
    main()
