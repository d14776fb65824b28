"""Configuration dataclasses for `vlm-r1 train` (GRPO), parsed with ``vlm_r1.recipe.RecipeParser``.

A run is configured by a recipe YAML (``--config recipes/...yaml``) plus command-line overrides; every field has a
``help`` text, which is what ``vlm-r1 train --help`` prints. Options are honoured or refused: :func:`check_args`
rejects combinations that would otherwise be silently ignored.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from trl import GRPOConfig

from .checkpoints import RESUME_HELP
from .optim_args import check_optim_args
from .recipe import OptionError, only_apply


@dataclass
class DataArguments:
    """Where the data is and how a row becomes a prompt and a reward."""

    train_data: list[str] = field(
        default_factory=list,
        metadata={"help": "One or more JSONL files of training rows (see docs/data.md for the schema)."},
    )
    eval_data: list[str] = field(
        default_factory=list, metadata={"help": "Optional JSONL files scored during training (eval_strategy)."}
    )
    image_root: str | None = field(
        default=None,
        metadata={"help": "Folder that image paths in the JSONL are relative to. Default: each JSONL file's folder."},
    )
    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy", "think_format"],
        metadata={
            "help": "Rewards to optimise: registered names (`vlm-r1 rewards` lists them) or `package.module:function` "
            "for your own. `accuracy` picks each row's reward from its `reward` field."
        },
    )
    default_reward: str | None = field(
        default=None,
        metadata={
            "help": "Accuracy reward or task for rows whose JSONL has no `reward` field (e.g. `iou`, `rec`): their "
            "ground truth is validated against it when loading, and the `accuracy` reward (if in reward_funcs) scores "
            "them with it. Other rewards in reward_funcs score every row whatever this says."
        },
    )
    question_template: str | None = field(
        default=None,
        metadata={"help": "Template wrapping each question; `{question}` is replaced. Default: the model module's."},
    )
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message for every prompt."})
    skip_invalid_rows: bool = field(
        default=False,
        metadata={"help": "Skip rows that fail validation (count and list them in the output dir) instead of stopping."},
    )
    allow_images_outside_root: bool = field(
        default=False, metadata={"help": "Allow image paths that resolve outside image_root (../, absolute, symlinks)."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N training rows (after validation)."}
    )


@dataclass
class ModelArguments:
    """Which checkpoint, how it is loaded, and which of its parameters train."""

    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Hub id or local folder of the checkpoint (config.json decides the module)."}
    )
    model_revision: str = field(default="main", metadata={"help": "Branch, tag or commit of a hub checkpoint."})
    dtype: str = field(
        default="auto", metadata={"help": "Weights dtype: auto, float32, bfloat16 or float16."}
    )
    attn_implementation: str | None = field(
        default=None, metadata={"help": "sdpa (default), eager, or flash_attention_2 (needs the flash-attn extra)."}
    )
    min_pixels: int | None = field(default=None, metadata={"help": "Qwen: lower bound of pixels per image."})
    max_pixels: int | None = field(default=None, metadata={"help": "Qwen: upper bound of pixels per image."})
    max_tiles: int | None = field(default=None, metadata={"help": "InternVL: maximum number of image tiles."})
    freeze_vision: bool = field(default=False, metadata={"help": "Freeze the vision encoder."})
    freeze_projector: bool = field(
        default=False, metadata={"help": "Freeze the vision-to-language projector (merger) too; needs freeze_vision."}
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of all parameters."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=128, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        metadata={"help": "Names of the linear layers that get adapters (language model only unless lora_vision)."},
    )
    lora_vision: bool = field(default=False, metadata={"help": "Also put LoRA adapters on the vision encoder."})


# ModelArguments fields that change how a checkpoint is read (not how it trains): the pipeline's evaluations use
# GRPO's, and every evaluation result records them
LOADING_OPTIONS = ("dtype", "attn_implementation", "min_pixels", "max_pixels", "max_tiles")


def loading_options(model_args: ModelArguments) -> dict:
    """The :data:`LOADING_OPTIONS` of ``model_args`` set away from their defaults."""
    defaults = ModelArguments()
    return {n: getattr(model_args, n) for n in LOADING_OPTIONS if getattr(model_args, n) != getattr(defaults, n)}


@dataclass
class VLMGRPOConfig(GRPOConfig):
    """TRL's GRPOConfig plus what vlm-r1 adds. Every GRPOConfig field (loss_type, beta, num_generations,
    temperature, top_p, reward_weights, use_vllm, …) works as documented by TRL."""

    resume_from_checkpoint: str | None = field(default=None, metadata={"help": RESUME_HELP})
    share_image_encoding: bool = field(
        default=True,
        metadata={"help": "Encode each image once per group of generations instead of once per completion."},
    )
    share_prompt_tokens: bool = field(
        default=True,
        metadata={"help": "With share_image_encoding: in the log-prob and training passes, run the language model over "
                  "each prompt once per group, the G completions packed behind it under a block attention mask "
                  "(Qwen2-VL, Qwen2.5-VL, InternVL with sdpa or eager attention; otherwise the plain pass runs "
                  "and a warning says why)."},
    )
    report_dir: str | None = field(
        default=None,
        metadata={"help": "Where the training report (curves, gallery) goes. Default: <output_dir>/report."},
    )
    gallery_every: int = field(
        default=0, metadata={"help": "Add sampled completions to the report gallery every N steps (0: only at the end)."}
    )
    eval_greedy: bool = field(
        default=False,
        metadata={"help": "Decode greedily when scoring eval_data during training (eval_strategy): one completion per "
                  "prompt, so eval_rewards/* are the greedy accuracy papers report, next to the sampled training "
                  "reward. num_generations_eval defaults to 1 and must be 1; not with use_vllm."},
    )

    def __post_init__(self):
        if isinstance(self.scale_rewards, str) and self.scale_rewards.lower() in ("true", "false"):  # from a flag
            self.scale_rewards = self.scale_rewards.lower() == "true"  # TRL reads the booleans as group / none
        if self.eval_greedy and self.num_generations_eval is None:
            self.num_generations_eval = 1  # greedy copies of one prompt would all be the same completion
        super().__post_init__()

    @property
    def prompts_per_batch(self) -> int:
        """Distinct prompts in one generation batch. TRL's sampler keeps whole batches only, so fewer training rows
        than this train 0 steps."""
        return self.generation_batch_size // self.num_generations


_TRAINING_ONLY_MODEL_FIELDS = (
    "freeze_vision", "freeze_projector", "use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
    "lora_vision",
)


def refuse_revision_of_a_folder(model_args: ModelArguments) -> None:
    """from_pretrained ignores a revision for a local folder: refuse one rather than record it as used."""
    if model_args.model_revision != "main" and Path(model_args.model_name_or_path).is_dir():
        raise ValueError(f"model_revision {model_args.model_revision!r} only applies to a hub id, and "
                         f"{model_args.model_name_or_path} is a local folder, loaded as it is: check out that revision "
                         "there, or drop model_revision")


def check_attn_implementation(name: str | None) -> None:
    """Refuse an attention implementation transformers does not know (``eager`` and those it registers; a hub
    kernel "org/repo" is left to transformers), and flash-attn ones without their package: transformers failed only
    once the data was read, with a traceback."""
    import importlib.util

    from transformers import AttentionInterface

    if name is None or "/" in name:
        return
    known = ["eager", *sorted(AttentionInterface().keys())]  # its public Mapping view of the registered kernels
    if name not in known:
        raise ValueError(f"attn_implementation {name!r} is not one transformers knows: {', '.join(known)}")
    if name.startswith("flash_attention") and importlib.util.find_spec("flash_attn") is None and \
            importlib.util.find_spec("kernels") is None:
        raise ValueError(f"attn_implementation {name}: the flash-attn package is not installed here (pip install "
                         "flash-attn, on a machine with a GPU); sdpa is the default")


def check_model_args(model_args: ModelArguments, training: bool) -> None:
    """Refuse model options that would be ignored (shared by train, sft and eval); raise ValueError."""
    if not model_args.model_name_or_path:
        raise ValueError("model_name_or_path is required (a hub id or a local folder; `vlm-r1 make-tiny` makes one)")
    refuse_revision_of_a_folder(model_args)
    if model_args.dtype not in {"auto", "float32", "bfloat16", "float16"}:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, not {model_args.dtype!r}")
    check_attn_implementation(model_args.attn_implementation)
    for name in ("min_pixels", "max_pixels", "max_tiles"):
        if getattr(model_args, name) is not None and getattr(model_args, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(model_args, name)}")
    if None not in (model_args.min_pixels, model_args.max_pixels) and model_args.min_pixels > model_args.max_pixels:
        raise ValueError(f"min_pixels ({model_args.min_pixels}) is above max_pixels ({model_args.max_pixels}): "
                         "the processor would honour only one of them")
    if not training:
        defaults = ModelArguments()
        changed = [name for name in _TRAINING_ONLY_MODEL_FIELDS if getattr(model_args, name) != getattr(defaults, name)]
        if changed:
            raise ValueError(f"{only_apply(changed)} to training; evaluate a merged checkpoint instead")
        return
    if model_args.freeze_projector and not model_args.freeze_vision:
        raise ValueError("freeze_projector needs freeze_vision (a frozen projector under a training encoder is odd)")
    if model_args.use_peft and (model_args.freeze_vision or model_args.freeze_projector):
        raise ValueError("with use_peft the base model is frozen already; use lora_vision to choose adapter placement")
    if not model_args.use_peft:
        defaults = ModelArguments()
        lora = [n for n in _TRAINING_ONLY_MODEL_FIELDS if n.startswith("lora_")
                and getattr(model_args, n) != getattr(defaults, n)]
        if lora:
            raise ValueError(f"{only_apply(lora)} with use_peft true (without it the run trains every "
                             "parameter): add --use_peft true, or drop them")


def check_schedule(training_args) -> None:
    """Refuse schedule options that transformers' ``get_scheduler`` drops without a word: a warm-up under
    ``constant``, ``reduce_lr_on_plateau`` or ``greedy`` (they take none), and ``lr_scheduler_kwargs`` under
    ``constant`` / ``constant_with_warmup`` (they take none either; every other schedule rejects unknown keys)."""
    scheduler = str(getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type))
    if training_args.warmup_steps and scheduler in ("constant", "reduce_lr_on_plateau", "greedy"):
        hint = "constant_with_warmup" if scheduler == "constant" else "another scheduler"
        raise ValueError(
            f"warmup_steps = {training_args.warmup_steps:g} has no effect with lr_scheduler_type {scheduler!r}: "
            f"use lr_scheduler_type {hint}, or warmup_steps 0"
        )
    if training_args.lr_scheduler_kwargs and scheduler in ("constant", "constant_with_warmup"):
        raise ValueError(
            f"lr_scheduler_kwargs {training_args.lr_scheduler_kwargs} have no effect with lr_scheduler_type "
            f"{scheduler!r} (it takes none): drop them or choose a schedule that reads them (e.g. cosine)"
        )
    _check_scheduler_kwargs(scheduler, dict(training_args.lr_scheduler_kwargs or {}))
    if training_args.max_steps == 0:
        raise ValueError("max_steps 0 would still train one step: give max_steps >= 1, or -1 to let "
                         "num_train_epochs set the run's length")
    if 1 <= training_args.warmup_steps and 0 < training_args.max_steps <= training_args.warmup_steps:
        raise ValueError(f"warmup_steps ({training_args.warmup_steps:g}) is not below max_steps "
                         f"({training_args.max_steps}): the whole run would be warm-up; lower warmup_steps (a value "
                         "below 1 is a fraction of the run)")


def _check_scheduler_kwargs(scheduler: str, kwargs: dict) -> None:
    """Refuse ``lr_scheduler_kwargs`` the schedule's function does not take (a TypeError at the first step
    otherwise), and ``cosine_with_min_lr`` without its floor."""
    import inspect

    from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION, SchedulerType

    function = TYPE_TO_SCHEDULER_FUNCTION.get(SchedulerType(scheduler))
    if function is None:
        return
    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return  # reduce_lr_on_plateau, greedy: their kwargs go to another class
    taken = [name for name in parameters if name not in ("optimizer", "num_warmup_steps", "num_training_steps",
                                                          "last_epoch")]
    unknown = sorted(set(kwargs) - set(taken))
    if unknown:
        raise ValueError(f"lr_scheduler_kwargs {', '.join(unknown)} are not taken by lr_scheduler_type {scheduler!r} "
                         f"(it takes {', '.join(taken) or 'none'})")
    if scheduler.endswith("with_min_lr") and kwargs.get("min_lr") is None and kwargs.get("min_lr_rate") is None:
        raise ValueError(f"lr_scheduler_type {scheduler!r} needs its floor: add --lr_scheduler_kwargs "
                         "'{\"min_lr_rate\": 0.1}' (a fraction of learning_rate) or '{\"min_lr\": 1e-6}'")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def check_training_args(data_args: DataArguments, model_args: ModelArguments, training_args) -> None:
    """The checks GRPO (:func:`check_args`) and SFT (``vlm_r1.sft.check_sft_args``) share; raise ValueError."""
    from .data import image_root_problem

    check_model_args(model_args, training=True)
    if problem := image_root_problem(data_args.image_root):
        raise ValueError(problem)
    check_schedule(training_args)
    check_conditional_options(training_args)
    if model_args.use_peft and "lm_head" in model_args.lora_target_modules:
        raise ValueError("lora_target_modules may not include lm_head: TRL refuses an adapter there (in GRPO it "
                         "computes the log-probabilities from lm_head.weight directly, so one would never train)")
    if not data_args.train_data:
        raise ValueError("train_data is required: one or more JSONL files (`vlm-r1 make-data` makes a demo set)")
    for option in ("train_data", "eval_data"):
        files = [Path(p).resolve() for p in getattr(data_args, option) or []]
        if twice := sorted({str(p) for p in files if files.count(p) > 1}):
            raise ValueError(f"{option} names {', '.join(twice)} more than once: each of its rows would count twice")
    start = Path(model_args.model_name_or_path)
    if training_args.output_dir and start.is_dir() and Path(training_args.output_dir).resolve() == start.resolve():
        raise ValueError(f"output_dir {training_args.output_dir} is the folder of the model the run starts from: the "
                         "run would overwrite that checkpoint; write to another folder")
    if data_args.eval_data and training_args.eval_strategy == "no":
        raise ValueError("eval_data is set but eval_strategy is 'no': set --eval_strategy steps (and eval_steps)")
    if not data_args.eval_data:
        _refuse_evaluation_without_data(training_args)
    if training_args.remove_unused_columns:
        raise ValueError("remove_unused_columns would drop the columns vlm-r1 reads (images, solution, reward, the "
                         "prompt's parts): leave it false")
    if training_args.model_init_kwargs:
        raise ValueError("set model options through ModelArguments (dtype, attn_implementation, …), not model_init_kwargs")
    if training_args.fp16 and (training_args.use_cpu or not _has_cuda()):
        raise ValueError("fp16 does nothing on the CPU (accelerate applies no fp16 autocast there, and the run stays "
                         "float32): drop it, or use --bf16 true")
    if data_args.max_train_samples is not None and data_args.max_train_samples < 1:
        raise ValueError(f"max_train_samples must be >= 1 (it keeps the first N training rows), "
                         f"got {data_args.max_train_samples}")
    if training_args.max_steps > 0 and training_args.num_train_epochs != type(training_args).num_train_epochs:
        raise ValueError(f"num_train_epochs ({training_args.num_train_epochs:g}) has no effect when max_steps "
                         f"({training_args.max_steps}) is set: max_steps ends the run; drop one of them")
    if data_args.question_template is not None:
        from .data import check_question_template

        check_question_template(data_args.question_template)
    if data_args.default_reward is not None:
        from .rewards.dispatch import resolve_accuracy

        try:
            resolve_accuracy(data_args.default_reward)
        except ValueError as e:
            raise ValueError(f"default_reward: {e}") from None


EVALUATION_OPTIONS = ("eval_steps", "eval_delay", "per_device_eval_batch_size", "eval_accumulation_steps",
                      "num_generations_eval", "load_best_model_at_end", "metric_for_best_model", "eval_do_concat_batches",
                      "eval_use_gather_object")


def _refuse_evaluation_without_data(training_args) -> None:
    """Evaluation options are refused when there is no ``eval_data`` to evaluate on: the trainer would fail at the
    first evaluation (eval_strategy, eval_on_start), or never read them."""
    strategy = str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy))
    if strategy != "no":
        raise ValueError(f"eval_strategy {strategy!r} needs eval_data (a JSONL file to "
                         "evaluate on): add --eval_data FILE, or drop eval_strategy")
    if getattr(training_args, "eval_greedy", False):
        raise ValueError("eval_greedy decodes eval_data greedily during training: set eval_data and eval_strategy "
                         "(e.g. --eval_strategy steps --eval_steps 100)")
    if training_args.eval_on_start:
        raise ValueError("eval_on_start needs eval_data and an eval_strategy: add --eval_data FILE --eval_strategy "
                         "steps, or drop eval_on_start")
    defaults = type(training_args).__dataclass_fields__
    changed = [name for name in EVALUATION_OPTIONS if name in defaults
               and getattr(training_args, name) != _field_default(defaults[name])]
    if changed:
        raise ValueError(f"{only_apply(changed)} when the run evaluates, and it has no eval_data: add "
                         "--eval_data FILE --eval_strategy steps, or drop them")


def _field_default(field):
    """A dataclass field's default value (its default_factory called when it has one)."""
    return field.default if field.default is not MISSING else field.default_factory()


# Options (TRL's GRPO and SFT configs, transformers' TrainingArguments) read only under another setting: set away from
# their defaults without it, they would be ignored. A name the run's config class lacks is never checked.
_READ_ONLY_WHEN = (  # (option names, whether the run reads them, the setting that makes it read them)
    (("liger_kernel_config",), lambda a: a.use_liger_kernel, "use_liger_kernel true"),
    (("ref_model_sync_steps", "ref_model_mixup_alpha"), lambda a: a.sync_ref_model, "sync_ref_model true"),
    (("entropy_target", "entropy_coef_min", "entropy_coef_max", "entropy_coef_delta"),
     lambda a: a.use_adaptive_entropy, "use_adaptive_entropy true"),
    (("sapo_temperature_pos", "sapo_temperature_neg"), lambda a: a.loss_type == "sapo", "loss_type sapo"),
    (("vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg"), lambda a: a.loss_type == "vespo",
     "loss_type vespo"),
    (("epsilon_high",), lambda a: a.loss_type not in ("sapo", "vespo"), "a clipped loss_type (not sapo or vespo)"),
    (("delta",), lambda a: a.loss_type in ("grpo", "bnpo", "dr_grpo", "dapo", "luspo"),
     "loss_type grpo, bnpo, dr_grpo, dapo or luspo"),
    (("num_completions_to_print", "log_unique_prompts"), lambda a: a.log_completions, "log_completions true"),
    (("use_bias_correction_kl",), lambda a: a.beta != 0, "beta > 0 (a KL term)"),
    (("gradient_checkpointing_kwargs",),  # (transformers mirrors it into its new alias activation_checkpointing_kwargs)
     lambda a: a.gradient_checkpointing or getattr(a, "activation_checkpointing", False),
     "gradient_checkpointing true"),
    (("optim_target_modules",),
     lambda a: any(k in str(getattr(a.optim, "value", a.optim)) for k in ("galore", "apollo")),
     "an optim that targets modules (GaLore, APOLLO)"),
    (("dataloader_persistent_workers", "dataloader_prefetch_factor"), lambda a: a.dataloader_num_workers > 0,
     "dataloader_num_workers > 0"),
    (("greater_is_better",), lambda a: a.metric_for_best_model is not None, "metric_for_best_model"),
    (("hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "hub_always_push", "hub_revision"),
     lambda a: a.push_to_hub, "push_to_hub true"),
)  # fmt: skip
# Options vlm-r1 train and sft never read, with the reason
_NEVER_READ = {
    "max_tool_calling_iterations": "vlm-r1 gives the trainer no tools",
    "transformers_continuous_batching_config": "continuous batching is refused for models with images",
    "length_column_name": "no sampler here groups rows by length",
    "bf16_full_eval": "evaluations run inside training, on the training model in its training precision",
    "fp16_full_eval": "evaluations run inside training, on the training model in its training precision",
    **dict.fromkeys(("prediction_loss_only", "eval_accumulation_steps", "include_for_metrics", "batch_eval_metrics",
                     "label_names"), "the evaluation logs losses and rewards, not metrics computed from predictions"),
    **dict.fromkeys(("do_train", "do_predict"), "example scripts read it, the Trainer does not: the command trains, "
                                                "and evaluates when given eval_data"),
}  # fmt: skip


# TRL options with a fixed set of values (TRL 1.16), which TRL itself checks only at the first step
_CHOICES = {
    "loss_type": ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"),
    "scale_rewards": ("group", "batch", "none"),
    "importance_sampling_level": ("token", "sequence"),
    "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum"),
}


def check_choices(training_args) -> None:
    """Refuse a value outside an option's fixed set (:data:`_CHOICES`), naming the set."""
    for name, values in _CHOICES.items():
        value = getattr(training_args, name)
        if value not in values:
            hint = " (GSPO is importance_sampling_level sequence)" if name == "loss_type" else ""
            raise ValueError(f"{name} {value!r} is not one of {', '.join(values)}{hint}")


def check_conditional_options(training_args) -> None:
    """Refuse options set away from their defaults that this run would not read (:data:`_READ_ONLY_WHEN`,
    :data:`_NEVER_READ`); used by train and sft."""
    changed = {f.name for f in fields(training_args) if getattr(training_args, f.name) != _field_default(f)}
    for names, reads, setting in _READ_ONLY_WHEN:
        unread = [n for n in names if n in changed]
        if unread and not reads(training_args):
            raise ValueError(f"{only_apply(unread)} with {setting}, which this run does not have: "
                             "drop them, or set that")
    for name, reason in _NEVER_READ.items():
        if name in changed:
            raise ValueError(f"{name} has no effect in vlm-r1 ({reason}): drop it")
    check_optim_args(training_args)


def check_installed(training_args) -> None:
    """Refuse, before the data and model load, what this machine lacks: a ``report_to`` integration or vLLM that is
    not installed (transformers and TRL would fail only at the trainer's start). Not part of the option checks, so
    a recipe parses anywhere."""
    import importlib.util

    from transformers.integrations import get_available_reporting_integrations

    if getattr(training_args, "use_liger_kernel", False) and importlib.util.find_spec("liger_kernel") is None:
        raise OptionError("use_liger_kernel: liger-kernel is not installed here (pip install liger-kernel), or drop "
                          "use_liger_kernel")
    if getattr(training_args, "use_vllm", False) and importlib.util.find_spec("vllm") is None:
        raise OptionError("use_vllm: vLLM is not installed here (pip install vllm, on a machine with a GPU), or drop "
                          "use_vllm")
    report_to = training_args.report_to
    asked = [report_to] if isinstance(report_to, str) else list(report_to or [])
    available = get_available_reporting_integrations()
    missing = [name for name in asked if name not in ("all", "none", *available)]
    if missing:
        raise OptionError(f"report_to {', '.join(missing)}: not installed here (pip install {' '.join(missing)}); "
                         f"installed: {', '.join(available) or 'none'}")


def check_architecture_options(training_args, model_config) -> None:
    """Refuse options the checkpoint's architecture (its config) cannot honour: TRL would fail only after the
    model has loaded (train and sft)."""
    if getattr(training_args, "cast_lm_head_to_fp32", False) and getattr(model_config, "tie_word_embeddings", False):
        raise OptionError(f"cast_lm_head_to_fp32 is not supported for a {model_config.model_type} checkpoint with tied "
                          "word embeddings (TRL hooks an embedding layer VLMs keep elsewhere): drop it")
    if training_args.router_aux_loss_coef and not hasattr(model_config.get_text_config(), "output_router_logits"):
        raise OptionError(f"router_aux_loss_coef applies to Mixture-of-Experts models, and this {model_config.model_type} "
                          "checkpoint is not one: drop it")


def check_sampling(data_args: DataArguments, training_args: VLMGRPOConfig) -> None:
    """Refuse sampling and reward settings that fail only once training has started, or that leave GRPO nothing to
    learn from (identical completions in every group)."""
    if training_args.temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {training_args.temperature:g}: GRPO samples each group "
                         "(greedy decoding makes its completions identical and their advantages zero)")
    if (training_args.generation_kwargs or {}).get("do_sample") is False:
        raise ValueError("generation_kwargs do_sample false makes every completion of a group the same (no advantage "
                         "to learn from): drop it; use temperature / top_k / top_p to sharpen the sampling")
    if training_args.top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 keeps every token), got {training_args.top_k}")
    if not 0 < training_args.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {training_args.top_p:g}")
    if training_args.min_p is not None and not 0 <= training_args.min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {training_args.min_p:g}")
    if training_args.max_completion_length < 1:
        raise ValueError(f"max_completion_length must be >= 1, got {training_args.max_completion_length}")
    from .rewards import get_reward

    for name in data_args.reward_funcs:
        if "," in name:
            raise ValueError(f"reward_funcs {name!r}: separate the names with spaces (--reward_funcs "
                             f"{' '.join(n.strip() for n in name.split(','))}), or list them in the recipe")
        try:
            get_reward(name)
        except (KeyError, ValueError, ImportError, AttributeError) as e:
            raise ValueError(f"reward_funcs: {e}") from None
    weights = training_args.reward_weights
    if weights is not None and len(weights) != len(data_args.reward_funcs):
        raise ValueError(f"reward_weights has {len(weights)} values for {len(data_args.reward_funcs)} reward_funcs "
                         f"({', '.join(data_args.reward_funcs)}): give one weight per reward")
    if training_args.sync_ref_model and training_args.beta == 0:
        raise ValueError("sync_ref_model updates the reference model, and beta 0 has none (no KL term): set beta > 0, "
                         "or drop sync_ref_model")


def check_recipe_overrides(data_args: DataArguments, training_args: VLMGRPOConfig, command_line: set[str],
                           recipe: tuple[str, dict]) -> None:
    """Checks that depend on where a value came from (``RecipeParser.command_line_options`` / ``recipe_values``), run
    after :func:`check_args` (which names a misspelt reward first): the recipe's reward_weights beside another
    reward list from the command line (they would weigh it by position), and a given share_prompt_tokens true
    without share_image_encoding (it only applies with it)."""
    recipe_name, values = recipe
    recipe_funcs = values.get("reward_funcs")
    recipe_funcs = [recipe_funcs] if isinstance(recipe_funcs, str) else recipe_funcs
    if ("reward_funcs" in command_line and "reward_weights" in set(values) - command_line
            and data_args.reward_funcs != recipe_funcs):
        raise ValueError(f"--reward_funcs replaces the reward list of {recipe_name} ({recipe_funcs}), whose "
                         f"reward_weights {training_args.reward_weights} were for that list: give --reward_weights "
                         "too (one per reward), or set both in the recipe")
    given = command_line | set(values)
    if "share_prompt_tokens" in given and training_args.share_prompt_tokens and not training_args.share_image_encoding:
        raise ValueError("share_prompt_tokens only applies with share_image_encoding true (it is false here): drop "
                         "share_prompt_tokens, or set share_image_encoding")


def check_args(data_args: DataArguments, model_args: ModelArguments, training_args: VLMGRPOConfig) -> None:
    """Refuse option combinations that would otherwise be ignored; raise ValueError saying what to do."""
    check_training_args(data_args, model_args, training_args)
    check_sampling(data_args, training_args)
    check_choices(training_args)
    given_dropout = model_args.lora_dropout not in (0, ModelArguments().lora_dropout)  # the default may be zeroed
    if model_args.use_peft and training_args.disable_dropout and given_dropout:
        raise ValueError(f"disable_dropout also zeroes the LoRA adapters' dropout, so lora_dropout "
                         f"{model_args.lora_dropout:g} would be ignored: drop one of them")
    if training_args.sync_ref_model and model_args.use_peft:
        raise ValueError("sync_ref_model does not apply with use_peft: the reference is the base model under the "
                         "adapter, which does not change; drop one of them")
    if training_args.data_seed is not None:
        raise ValueError("data_seed has no effect in GRPO: TRL's prompt sampler is seeded by `seed`; set that instead")
    if str(getattr(training_args.train_sampling_strategy, "value", training_args.train_sampling_strategy)) != "random":
        raise ValueError("train_sampling_strategy has no effect in GRPO (TRL's repeat sampler orders the prompts)")
    if training_args.use_transformers_continuous_batching:
        raise ValueError("use_transformers_continuous_batching is for text-only models (TRL refuses it for a model with "
                         "images): use use_vllm for faster generation")
    if training_args.label_smoothing_factor:
        raise ValueError("label_smoothing_factor has no effect in GRPO (the loss is the policy gradient, not cross-entropy)")
    if training_args.use_vllm and any(v is not None for v in (model_args.min_pixels, model_args.max_pixels, model_args.max_tiles)):
        raise ValueError(
            "min_pixels / max_pixels / max_tiles would change the images the loss sees but not those vLLM generates "
            "from (vLLM reads the checkpoint's processor config): set them in the checkpoint's processor config instead"
        )
    if not training_args.use_vllm:
        unused = [f.name for f in fields(training_args) if f.name.startswith("vllm_")
                  and getattr(training_args, f.name) != _field_default(f)]
        if unused:
            raise ValueError(f"{only_apply(unused)} with use_vllm true (it is false here): set use_vllm, or "
                             "drop them")
    elif not training_args.ds3_gather_for_generation:
        raise ValueError("ds3_gather_for_generation false only applies to generation without vLLM (TRL reads it only "
                         "there): drop it, or use_vllm false")
    deepspeed = training_args.deepspeed_plugin  # set by --deepspeed or by `accelerate launch` with a DeepSpeed config
    if not training_args.ds3_gather_for_generation and (deepspeed is None or deepspeed.zero_stage != 3):
        stage = "no DeepSpeed" if deepspeed is None else f"DeepSpeed ZeRO-{deepspeed.zero_stage}"
        raise ValueError(f"ds3_gather_for_generation false only applies under DeepSpeed ZeRO-3 (this run has {stage}, "
                         "where the weights are whole already): drop it")
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")  # set by `accelerate launch` from its config or flag
    precision = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "no"
    if launcher is not None and launcher != precision:
        raise ValueError(f"accelerate launches with mixed_precision {launcher!r} but the recipe says {precision!r} "
                         "(bf16 / fp16): the launcher's would win; make them agree (e.g. --mixed_precision "
                         f"{precision} on the accelerate command line)")
    if training_args.gallery_every < 0:
        raise ValueError("gallery_every must be >= 0")
    if training_args.eval_greedy:  # (without eval_data or eval_strategy it is refused by check_training_args)
        if training_args.load_best_model_at_end and training_args.metric_for_best_model in (None, "loss", "eval_loss"):
            raise ValueError("eval_greedy logs no eval loss (one completion per prompt has no advantage): set "
                             "metric_for_best_model to a reward, e.g. eval_reward with greater_is_better true")
        if training_args.num_generations_eval != 1:
            raise ValueError(f"eval_greedy gives one completion per prompt: num_generations_eval must be 1 (or unset), "
                             f"not {training_args.num_generations_eval}")
        if training_args.use_vllm:
            raise ValueError("eval_greedy is not supported with use_vllm (vLLM samples with the training temperature): "
                             "drop one of them")
