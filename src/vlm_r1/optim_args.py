"""``optim_args``: the ``key=value,…`` options transformers hands to some optimizers. Which optimizer reads which
keys (transformers 5.x, ``trainer_optimizer.py``) is written out here, because transformers drops the rest
silently: ``--optim adamw_torch --optim_args momentum=0.9`` would train with plain AdamW. Such options are refused."""

from __future__ import annotations

_ANY_KEY = "any key (passed to the optimizer as keyword arguments)"
_DATA_TYPES = ("momentum_dtype", "variance_dtype", "compensation_buffer_dtype")
_GALORE = ("rank", "update_proj_gap", "scale", "proj_type")
_ADEMAMIX = ("beta1", "beta2", "beta3", "alpha", "eps", "t_alpha", "t_beta3")

# optimizer name -> the optim_args keys it reads (an empty tuple: it reads none)
KEYS_READ = {
    "sgd": ("momentum", "dampening", "weight_decay", "nesterov"),
    "adagrad": ("lr_decay", "weight_decay", "eps"),
    "rmsprop": ("momentum", "alpha", "eps", "weight_decay", "centered"),
    **dict.fromkeys(("rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit"), _ANY_KEY),
    **dict.fromkeys(("ademamix", "ademamix_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit"), _ADEMAMIX),
    "adamw_anyprecision": ("use_kahan_summation", *_DATA_TYPES),
    **dict.fromkeys(("galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
                     "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise"), _GALORE),
    **dict.fromkeys(("apollo_adamw", "apollo_adamw_layerwise"), (*_GALORE, "proj", "scale_type")),
    "grokadamw": ("alpha_init", "lamb", "gamma", "grokking_signal_decay_rate", "gradient_clipping"),
    **dict.fromkeys(("adamw_torch_4bit", "adamw_torch_8bit"), ("block_size", "bf16_stochastic_round")),
    **dict.fromkeys(("schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd"), ("weight_lr_power", "r")),
    "stable_adamw": ("max_lr", "kahan_sum", "decouple_lr"),
    **dict.fromkeys(("adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor",
                     "adamw_bnb_8bit", "adamw_8bit", "paged_adamw_32bit", "paged_adamw_8bit", "lion_8bit",
                     "lion_32bit", "paged_lion_32bit", "paged_lion_8bit", "lomo", "adalomo"), ()),
}  # fmt: skip


def parse_optim_args(text: str) -> dict[str, str]:
    """``"a=1, b=2"`` as transformers reads it (spaces dropped, pairs split at commas); a pair without exactly one
    ``=`` is refused by name (transformers would fail with "not enough values to unpack")."""
    pairs = {}
    for pair in text.replace(" ", "").split(","):
        if pair.count("=") != 1 or not pair.split("=")[0]:
            raise ValueError(f"optim_args: {pair!r} is not key=value (the form is 'key=value,key=value')")
        key, value = pair.split("=")
        pairs[key] = value
    return pairs


def check_optim_args(training_args) -> None:
    """Refuse ``optim_args`` that the chosen optimizer would not read, naming the keys it does read."""
    if not training_args.optim_args:
        return
    optim = str(getattr(training_args.optim, "value", training_args.optim))
    given = parse_optim_args(training_args.optim_args)
    read = KEYS_READ.get(optim)
    if read is None:  # an optimizer this table does not know (a newer transformers): nothing to check against
        return
    if read == ():
        raise ValueError(f"optim_args only applies with an optimizer that reads it, and optim {optim} reads none: "
                         "drop it, or choose one that does (sgd, adagrad, rmsprop, galore_*, apollo_*, …)")
    if read is _ANY_KEY:
        return
    unread = [key for key in given if key not in read]
    if unread:
        raise ValueError(f"optim_args {', '.join(unread)}: optim {optim} does not read "
                         f"{'it' if len(unread) == 1 else 'them'} (it reads {', '.join(read)})")
