"""`GRQOConfig`: every option of a GRQO (or supervised-only) Grounding DINO run.

Parsed with `vlm_r1.recipe.RecipeParser` (TRL's `TrlParser`, recipe values type-checked) from a recipe YAML
plus `--key value` overrides (`train.py`). Every field says what it does in `metadata["help"]`; `check_config`
refuses values and combinations that could not be honoured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from vlm_r1.checkpoints import RESUME_HELP
from vlm_r1.data import image_root_problem
from vlm_r1.recipe import only_apply


@dataclass
class GRQOConfig:
    """A Grounding DINO fine-tuning run: supervised detection loss, plus optional GRQO and objectness KL."""

    # --- model and data ---
    model_name_or_path: str = field(
        default="", metadata={"help": "Hub id or local folder of a GroundingDinoForObjectDetection checkpoint + processor."}
    )
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of a hub checkpoint."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow a checkpoint's own modelling code (and a non-Grounding-DINO model_type)."}
    )
    train_data: str = field(default="", metadata={"help": "Detection JSONL for training (docs/contracts.md schema)."})
    eval_data: list[str] = field(
        default_factory=list, metadata={"help": "Detection JSONL files scored with COCO mAP at the end (and every eval_every steps)."}
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Folder image paths are relative to. Default: each JSONL's folder."}
    )
    allow_images_outside_root: bool = field(
        default=False, metadata={"help": "Allow image paths that resolve outside image_root (../, absolute, symlinks)."}
    )
    classes: list[str] = field(
        default_factory=list,
        metadata={"help": "Class names prompted for every image, in order. Default: sorted labels of train_data. "
                  "An eval file's unseen labels are appended to its prompt."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training rows (fixes the labelled set size)."}
    )
    output_dir: str = field(
        default="outputs/grqo_dino",
        metadata={"help": "Where the model, metrics, log and checkpoints go: a new folder (one that holds another GRQO "
                          "run's outputs is refused unless this run resumes it), never the model's own folder."},
    )

    # --- optimisation ---
    max_steps: int = field(default=300, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=4, metadata={"help": "Images per step."})
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (transformer and heads)."})
    backbone_lr_scale: float = field(
        default=0.1, metadata={"help": "The image backbone (.backbone.) and the text encoder (.text_backbone.) train at "
                                       "learning_rate * this (Grounding DINO's recipes use 0.1 for both)."}
    )
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=0.1, metadata={"help": "Gradient clipping norm (DINO: 0.1); 0 disables."})
    seed: int = field(default=0, metadata={"help": "Seed of data order and of torch."})
    device: str = field(default="auto", metadata={"help": "'cpu', 'cuda' or 'auto' (cuda when available)."})
    auxiliary_loss: bool = field(
        default=True,
        metadata={"help": "Supervise every decoder layer (sets the model config's auxiliary_loss). GRQO over all "
                  "layers needs it, and both arms of a comparison should share it."},
    )

    # --- GRQO ---
    use_grqo: bool = field(default=True, metadata={"help": "Add the GRQO query-group term (alpha * L_GRQO)."})
    grqo_alpha: float = field(default=1e-2, metadata={"help": "Weight alpha of the GRQO term (paper: 1e-2)."})
    grqo_layers: str = field(
        default="all", metadata={"help": "'all': one group per decoder layer (paper); 'last': final layer only."}
    )
    grqo_surrogate: str = field(
        default="logprob",
        metadata={"help": "Differentiable quantity the stop-gradient advantage multiplies: 'logprob' (log prob. of "
                  "the best-matching object's label) or 'neg_cost' (the query's own matching cost). See docs/grqo.md."},
    )
    advantage_eps: float = field(default=1e-6, metadata={"help": "eps in A = (r - mean) / (std + eps)."})
    cost_class: float = field(default=2.0, metadata={"help": "Weight of the focal class cost in the reward."})
    cost_bbox: float = field(default=5.0, metadata={"help": "Weight of the L1 box cost in the reward."})
    cost_giou: float = field(default=2.0, metadata={"help": "Weight of the GIoU cost in the reward."})

    # --- objectness KL ---
    use_kl: bool = field(default=True, metadata={"help": "Add beta * KL(objectness || reference objectness)."})
    kl_beta: float = field(default=0.04, metadata={"help": "Weight beta of the objectness KL (paper: 0.04)."})
    kl_top_k: int = field(
        default=0, metadata={"help": "How many top encoder proposals the KL covers; 0 = the model's num_queries."}
    )
    kl_outcomes: str = field(
        default="exact",
        metadata={"help": "'exact': the Bernoulli KL(policy || reference) of each proposal's objectness; 'both' / "
                          "'positive': the k3 penalty r - log r - 1 summed over both outcomes / on the object outcome "
                          "only (not a KL: it can grow like exp(logit gap), see docs/grqo.md)."},
    )
    ref_refresh_steps: int = field(
        default=100, metadata={"help": "Copy the policy into the frozen reference every N steps; 0 = never."}
    )

    # --- logging / evaluation ---
    log_every: int = field(default=10, metadata={"help": "Log losses every N steps."})
    eval_every: int = field(default=0, metadata={"help": "Evaluate eval_data every N steps; 0 = only at the end."})
    eval_batch_size: int = field(default=8, metadata={"help": "Images per evaluation forward."})
    disable_tqdm: bool = field(
        default=False,
        metadata={"help": "No progress bar: the logged steps and evaluations are printed as lines alone."},
    )
    save_model: bool = field(
        default=True,
        metadata={"help": "save_pretrained the model and processor after the last step (before the final evaluation)."},
    )
    save_steps: int = field(
        default=0, metadata={"help": "Write a resumable checkpoint-N folder into output_dir every N steps; 0 = none."}
    )
    save_total_limit: int = field(
        default=0, metadata={"help": "Keep only the latest N checkpoint-N folders (older ones are deleted after each "
                                     "save); 0 = keep all. Needs save_steps."}
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": RESUME_HELP + " A checkpoint made with other options is refused (learning_rate and "
                  "max_grad_norm may change)."},
    )


CHOICES = {"grqo_layers": ("all", "last"), "grqo_surrogate": ("logprob", "neg_cost"),
           "kl_outcomes": ("exact", "both", "positive"), "device": ("auto", "cpu", "cuda")}  # fmt: skip


# Options read only when their term is on: set while the term is off, they would be ignored.
SWITCHED_OPTIONS = {
    "use_grqo": ("grqo_alpha", "grqo_layers", "grqo_surrogate", "advantage_eps", "cost_class", "cost_bbox", "cost_giou"),
    "use_kl": ("kl_beta", "kl_top_k", "kl_outcomes", "ref_refresh_steps"),
}


def check_config(cfg: GRQOConfig) -> None:
    """Raise ValueError listing every option that cannot be honoured."""
    problems = []
    if not cfg.model_name_or_path:
        problems.append("model_name_or_path is required")
    if not cfg.train_data:
        problems.append("train_data is required")
    if problem := image_root_problem(cfg.image_root):
        problems.append(problem)
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            problems.append(f"{name} must be one of {allowed}, got {getattr(cfg, name)!r}")
    for name in ("max_steps", "batch_size", "log_every", "eval_batch_size"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name} must be >= 1")
    for name in ("learning_rate", "backbone_lr_scale", "weight_decay", "max_grad_norm", "grqo_alpha", "kl_beta",
                 "advantage_eps", "cost_class", "cost_bbox", "cost_giou", "kl_top_k", "ref_refresh_steps",
                 "eval_every", "save_steps", "save_total_limit"):  # fmt: skip
        if not math.isfinite(getattr(cfg, name)) or getattr(cfg, name) < 0:
            problems.append(f"{name} must be a finite number >= 0, got {getattr(cfg, name)}")
    if cfg.advantage_eps == 0:  # equal rewards would give 0 / 0
        problems.append("advantage_eps must be > 0 (a group of equal rewards is divided by std + eps = 0)")
    if cfg.max_train_samples is not None and cfg.max_train_samples < 1:
        problems.append("max_train_samples must be >= 1")
    stems = [Path(path).stem for path in cfg.eval_data]
    if len(set(stems)) != len(stems):  # metrics are keyed by file stem
        problems.append(f"eval_data files need distinct names (metrics are keyed by them): {stems}")
    if cfg.save_total_limit and not cfg.save_steps:
        problems.append("save_total_limit needs save_steps > 0 (no checkpoints are written)")
    if cfg.eval_every and not cfg.eval_data:
        problems.append("eval_every > 0 needs eval_data")
    if cfg.eval_every > cfg.max_steps:
        problems.append(f"eval_every ({cfg.eval_every}) is more than max_steps ({cfg.max_steps}): no evaluation would "
                        "happen before the final one; lower it, or 0")
    defaults = GRQOConfig()
    if not cfg.eval_data and cfg.eval_batch_size != defaults.eval_batch_size:
        problems.append("eval_batch_size needs eval_data (nothing is evaluated without it)")
    if cfg.save_steps > cfg.max_steps:
        problems.append(f"save_steps ({cfg.save_steps}) is more than max_steps ({cfg.max_steps}): no checkpoint would "
                        "be written; lower it, or 0")
    if cfg.use_kl and cfg.ref_refresh_steps != defaults.ref_refresh_steps and cfg.ref_refresh_steps >= cfg.max_steps:
        problems.append(f"ref_refresh_steps ({cfg.ref_refresh_steps}) is not below max_steps ({cfg.max_steps}): the "
                        "reference would never be refreshed; lower it, or 0 for never")
    if cfg.model_revision != "main" and Path(cfg.model_name_or_path).is_dir():
        problems.append(f"model_revision {cfg.model_revision!r} only applies to a hub id, and {cfg.model_name_or_path} "
                        "is a local folder, loaded as it is")
    if cfg.use_grqo and cfg.grqo_layers == "all" and not cfg.auxiliary_loss:
        problems.append("grqo_layers='all' needs auxiliary_loss=true (the per-layer outputs come with it)")
    for switch, names in SWITCHED_OPTIONS.items():
        changed = [n for n in names if getattr(cfg, n) != getattr(defaults, n)]
        if changed and not getattr(cfg, switch):
            problems.append(f"{only_apply(changed)} with {switch}=true (it is false here)")
    if problems:
        raise ValueError("invalid GRQO config:\n  " + "\n  ".join(problems))


def check_model_config(cfg: GRQOConfig, model_config) -> None:
    """Raise ValueError for options the checkpoint cannot honour; `model_config` is its config (config.json)."""
    problems = []
    if cfg.use_kl and not getattr(model_config, "two_stage", False):
        problems.append("use_kl needs a two-stage model (encoder proposals with objectness); set use_kl=false")
    num_queries = getattr(model_config, "num_queries", None)
    if num_queries is not None and cfg.kl_top_k > num_queries:
        problems.append(f"kl_top_k ({cfg.kl_top_k}) is more than the model's num_queries ({num_queries}), the "
                        "proposals it selects: use at most that, or 0 for all")
    if problems:
        raise ValueError("; ".join(problems))
