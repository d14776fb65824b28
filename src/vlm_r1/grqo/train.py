"""Entry point: `python -m vlm_r1.grqo.train --config recipes/tiny/grqo_dino.yaml [--key value ...]`.

`main(argv)` parses a `GRQOConfig` (recipe YAML + overrides, `vlm_r1.recipe.RecipeParser`) and calls `run`,
which goes through the phases: checks (options, the checkpoint's config.json, device, output_dir, resume),
data, model (and every prompt against its tokenizer), trainer, train, save, evaluate. The model and its processor
are loaded by `loading.load_detector` (hub id or folder, `model_revision`, `trust_remote_code` off unless asked).
Outputs in `output_dir`: `log.jsonl` (one line per logged step), `checkpoint-N` folders every `save_steps`
(`checkpointing.py`), the fine-tuned model + processor when `save_model` (written before the final
evaluation), and `metrics.json` (COCO metrics per eval file, mean step time). The console shows a progress bar
(`disable_tqdm`), one line per logged step and evaluation, and a summary at the end (`console.py`).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from vlm_r1.evaluate import pick_device
from vlm_r1.grqo.checkpointing import (continue_log, load_checkpoint, run_record, save_checkpoint, save_detector,
                                       settle_start)  # fmt: skip
from vlm_r1.grqo.coco_eval import evaluate
from vlm_r1.grqo.config import GRQOConfig, check_config, check_model_config
from vlm_r1.grqo.console import eval_line, step_line, summary
from vlm_r1.grqo.data import check_classes, check_prompt, class_names, load_detection_examples, make_batch
from vlm_r1.grqo.loading import detector_config, load_detector
from vlm_r1.grqo.trainer import GRQOTrainer


class BatchOrder:
    """Endless index batches: reshuffled every epoch, deterministic given the seed; `state()` / `load_state()`
    carry the RNG and the rest of the current epoch across a resume."""

    def __init__(self, n_examples: int, batch_size: int, seed: int):
        self.n_examples, self.batch_size = n_examples, batch_size
        self.rng = random.Random(seed)
        self.order: list[int] = []

    def next(self) -> list[int]:
        while len(self.order) < self.batch_size:
            epoch = list(range(self.n_examples))
            self.rng.shuffle(epoch)
            self.order += epoch
        batch, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return batch

    def state(self) -> dict:
        return {"rng": self.rng.getstate(), "order": list(self.order), "n_examples": self.n_examples}

    def load_state(self, state: dict) -> None:
        from vlm_r1.checkpoints import CheckpointError

        if state["n_examples"] != self.n_examples:
            raise CheckpointError(f"the checkpoint was trained on {state['n_examples']} rows, this run has "
                                  f"{self.n_examples}: resume with the same train_data and max_train_samples")
        self.rng.setstate(state["rng"])
        self.order = list(state["order"])


def _evaluate_all(model, processor, eval_sets, classes, batch_size) -> dict:
    return {name: evaluate(model, processor, examples, class_names(examples, classes), batch_size)
            for name, examples in eval_sets.items()}  # fmt: skip


def run(cfg: GRQOConfig) -> dict:
    """Train (and evaluate) as configured.

    Returns {"metrics": {eval file stem: COCO metrics}, "mean_step_time_s" (wall), "train_cpu_s"
    (process CPU time of the training loop, evaluation excluded), "eval_time_s", "history", "classes", "steps",
    "resumed_from"}; step times are of the steps this call ran.
    """
    from ..recipe import check_output_dir, refusing_options

    # ---------------- options, model config, device, output_dir: before any data is read ----------------
    with refusing_options():
        check_config(cfg)
        check_model_config(cfg, detector_config(cfg.model_name_or_path, cfg.model_revision, cfg.trust_remote_code))
        device = pick_device(cfg.device)
        check_output_dir(cfg.output_dir)
    record = run_record(cfg)
    resume = settle_start(cfg, record)

    # ---------------- data ----------------
    train = load_detection_examples(cfg.train_data, cfg.image_root, cfg.allow_images_outside_root)
    if cfg.max_train_samples:
        train = train[: cfg.max_train_samples]
    eval_files = {Path(p).stem: p for p in cfg.eval_data}
    eval_sets = {name: load_detection_examples(path, cfg.image_root, cfg.allow_images_outside_root)
                 for name, path in eval_files.items()}
    with refusing_options():
        classes = check_classes(list(cfg.classes) or class_names(train))
        if not classes:
            raise ValueError(f"{cfg.train_data}: no row holds a labelled object and classes is empty, so the prompt "
                             "would name nothing: give --classes (the class names to prompt)")
        unlisted = sorted({lab for e in train for lab in e.labels} - set(classes))
        if unlisted:
            raise ValueError(f"{cfg.train_data}: labels {unlisted} are not among classes {classes}")

    # ---------------- model, and every prompt checked with its tokenizer ----------------
    torch.manual_seed(cfg.seed)
    model, processor = load_detector(cfg.model_name_or_path, cfg.model_revision, cfg.trust_remote_code)
    model = model.to(device)
    with refusing_options():
        check_prompt(classes, processor, model.config.max_text_len)
        for name, examples in eval_sets.items():
            try:
                check_prompt(class_names(examples, classes), processor, model.config.max_text_len)
            except ValueError as e:
                where = f"eval_data {eval_files[name]} (its unseen labels are added to the prompt)"
                raise ValueError(f"{where}: {e}") from e

    # ---------------- trainer, resumed from a checkpoint when asked ----------------
    trainer = GRQOTrainer(model, cfg)
    order = BatchOrder(len(train), cfg.batch_size, cfg.seed)
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "log.jsonl"
    history = {}
    if resume is not None:
        load_checkpoint(trainer, order, resume)
        history = continue_log(log_path, trainer.step)
        print(f"resumed from {resume} at step {trainer.step}", flush=True)

    # ---------------- train ----------------
    step_times = []
    cpu_start = time.process_time()
    bar = tqdm(total=cfg.max_steps, initial=trainer.step, desc="GRQO", unit="step", disable=cfg.disable_tqdm)
    with log_path.open("a" if resume is not None else "w") as log_file, bar:
        while trainer.step < cfg.max_steps:
            batch = make_batch([train[i] for i in order.next()], processor, classes, model.config.max_text_len)
            logs = trainer.training_step(batch)
            step = trainer.step
            bar.update(1)
            step_times.append(logs["step_time_s"])
            if cfg.eval_every and step % cfg.eval_every == 0 and eval_sets:
                logs["eval"] = history[step] = _evaluate_all(model, processor, eval_sets, classes, cfg.eval_batch_size)
            if step % cfg.log_every == 0 or step == cfg.max_steps or "eval" in logs:
                log_file.write(json.dumps(logs) + "\n")
                log_file.flush()
                tqdm.write(step_line(logs, cfg.max_steps))
                if "eval" in logs:
                    tqdm.write(eval_line(step, logs["eval"]))
            if cfg.save_steps and step % cfg.save_steps == 0:
                save_checkpoint(trainer, processor, order, out_dir, record, classes, cfg.save_total_limit)

    train_cpu_s = time.process_time() - cpu_start

    # ---------------- save, then evaluate (a failing evaluation leaves the weights) ----------------
    if cfg.save_model:
        save_detector(model, processor, out_dir, classes)
    start = time.perf_counter()
    metrics = history.get(cfg.max_steps) or _evaluate_all(model, processor, eval_sets, classes, cfg.eval_batch_size)
    result = {"metrics": metrics, "eval_time_s": time.perf_counter() - start, "history": history,
              "mean_step_time_s": sum(step_times) / len(step_times) if step_times else 0.0,
              "train_cpu_s": train_cpu_s, "classes": classes, "steps": cfg.max_steps,
              "resumed_from": str(resume) if resume is not None else None}  # fmt: skip
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
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
    cfg = parse_config(argv)
    print(summary(run(cfg), cfg.output_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
