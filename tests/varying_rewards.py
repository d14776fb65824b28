"""Rewards for end-to-end tests: they differ between random completions of an untrained model, so GRPO's
advantages are non-zero and every weight gets a gradient. pytest puts tests/ on sys.path, so a recipe names one
as `varying_rewards:bracket_share`; a subprocess needs tests/ on its PYTHONPATH."""


# Recipe fields of the end-to-end training tests: IoU plus `bracket_share`, so every step has a gradient.
VARYING_GRPO_FIELDS = {"reward_funcs": ["iou", "varying_rewards:bracket_share"], "per_device_train_batch_size": 4}


def bracket_share(completions, **kwargs):
    """Share of digits and brackets in the completion text."""
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    return [sum(ch.isdigit() or ch in "[]<>" for ch in t) / max(len(t), 1) for t in texts]
