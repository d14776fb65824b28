"""Entry point: `python -m vlm_r1.grqo.train --config recipes/tiny/grqo_dino.yaml [--key value ...]`.

`main(argv)` parses a `GRQOConfig` (recipe YAML + overrides, `vlm_r1.recipe.RecipeParser`) and calls `run`,
which goes through the phases: data, model, trainer, train, evaluate, save. The model and its processor
are loaded by `loading.load_detector` (hub id or folder, `model_revision`, `trust_remote_code` off unless asked).
Outputs in `output_dir`: `log.jsonl` (one line per logged step), `metrics.json` (COCO metrics
per eval file, mean step time), and the fine-tuned model + processor when `save_model`.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import torch

from vlm_r1.grqo.coco_eval import evaluate
from vlm_r1.grqo.config import GRQOConfig, check_config
from vlm_r1.grqo.data import check_classes, class_names, load_detection_examples, make_batch
from vlm_r1.grqo.loading import load_detector
from vlm_r1.grqo.trainer import GRQOTrainer


def _batches(n_examples: int, batch_size: int, seed: int):
    """Endless index batches: reshuffled every epoch, deterministic given the seed."""
    rng = random.Random(seed)
    order: list[int] = []
    while True:
        while len(order) < batch_size:
            epoch = list(range(n_examples))
            rng.shuffle(epoch)
            order += epoch
        yield order[:batch_size]
        order = order[batch_size:]


def _evaluate_all(model, processor, eval_sets, classes, batch_size) -> dict:
    return {name: evaluate(model, processor, examples, class_names(examples, classes), batch_size)
            for name, examples in eval_sets.items()}  # fmt: skip


def run(cfg: GRQOConfig) -> dict:
    """Train (and evaluate) as configured.

    Returns {"metrics": {eval file stem: COCO metrics}, "mean_step_time_s" (wall), "train_cpu_s"
    (process CPU time of the training loop, evaluation excluded), "eval_time_s", "history", "classes", "steps"}.
    """
    from ..recipe import refusing_options

    with refusing_options():
        check_config(cfg)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # ---------------- data ----------------
    train = load_detection_examples(cfg.train_data, cfg.image_root)
    if cfg.max_train_samples:
        train = train[: cfg.max_train_samples]
    if not train:
        raise ValueError(f"{cfg.train_data}: no training rows")
    classes = check_classes(list(cfg.classes) or class_names(train))
    unlisted = sorted({lab for e in train for lab in e.labels} - set(classes))
    if unlisted:
        raise ValueError(f"{cfg.train_data}: labels {unlisted} are not among classes {classes}")
    eval_sets = {Path(p).stem: load_detection_examples(p, cfg.image_root) for p in cfg.eval_data}

    # ---------------- model ----------------
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else ("cpu" if cfg.device == "auto" else cfg.device)
    torch.manual_seed(cfg.seed)
    model, processor = load_detector(cfg.model_name_or_path, cfg.model_revision, cfg.trust_remote_code)
    model = model.to(device)

    # ---------------- trainer ----------------
    trainer = GRQOTrainer(model, cfg)

    # ---------------- train ----------------
    log_path = out_dir / "log.jsonl"
    step_times, history = [], {}
    cpu_start = time.process_time()
    with log_path.open("w") as log_file:
        for step, index in zip(range(1, cfg.max_steps + 1), _batches(len(train), cfg.batch_size, cfg.seed)):
            batch = make_batch([train[i] for i in index], processor, classes, model.config.max_text_len)
            logs = trainer.training_step(batch)
            step_times.append(logs["step_time_s"])
            if cfg.eval_every and step % cfg.eval_every == 0 and eval_sets:
                logs["eval"] = history[step] = _evaluate_all(model, processor, eval_sets, classes, cfg.eval_batch_size)
            if step % cfg.log_every == 0 or step == cfg.max_steps or "eval" in logs:
                log_file.write(json.dumps(logs) + "\n")
                log_file.flush()
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in logs.items()}), flush=True)

    train_cpu_s = time.process_time() - cpu_start

    # ---------------- evaluate & save ----------------
    start = time.perf_counter()
    metrics = _evaluate_all(model, processor, eval_sets, classes, cfg.eval_batch_size)
    result = {"metrics": metrics, "eval_time_s": time.perf_counter() - start, "history": history,
              "mean_step_time_s": sum(step_times) / len(step_times), "train_cpu_s": train_cpu_s,
              "classes": classes, "steps": cfg.max_steps}  # fmt: skip
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    if cfg.save_model:
        model.save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
    return result


def parse_config(argv=None) -> GRQOConfig:
    """GRQOConfig from `--config recipe.yaml` plus `--key value` overrides (unknown keys are errors)."""
    from ..recipe import RecipeParser, refusing_options

    parser = RecipeParser(GRQOConfig, prog="vlm-r1 grqo",
                          description="GRQO / supervised fine-tuning of a Grounding DINO detector. Options come from "
                                      "--config RECIPE.yaml and flags.")
    with refusing_options():
        (cfg,) = parser.parse_args_and_config(argv)
    return cfg


def main(argv=None) -> int:
    result = run(parse_config(argv))
    print(json.dumps({"metrics": result["metrics"], "mean_step_time_s": round(result["mean_step_time_s"], 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
