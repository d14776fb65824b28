"""Shared pytest fixtures. Everything is built offline, in temp dirs, once per session where costly."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """Factory: `tiny_model_dir(model_type="qwen2_vl") -> Path` of a tiny checkpoint, built once per session.

    The folder loads with `AutoModelForImageTextToText` / `AutoProcessor.from_pretrained`. Treat it as
    read-only (it is shared across tests); to train or modify a model, copy it or save elsewhere.
    """
    from vlm_r1.tiny import make_tiny

    cache = {}

    def get(model_type: str = "qwen2_vl"):
        if model_type not in cache:
            cache[model_type] = make_tiny(tmp_path_factory.mktemp(f"tiny_{model_type}"), model_type)
        return cache[model_type]

    return get


@pytest.fixture
def small_image():
    """A 112x112 RGB PIL image: a red circle (box [20, 30, 60, 70]) and a blue square on grey."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (112, 112), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    draw.ellipse([20, 30, 60, 70], fill=(255, 0, 0))
    draw.rectangle([70, 70, 100, 100], fill=(0, 0, 255))
    return image


# The smallest GRPO run that still learns something: used by every end-to-end test through `grpo_run`.
TINY_GRPO_RECIPE = {
    "bf16": False,
    "use_cpu": True,
    "per_device_train_batch_size": 8,
    "num_generations": 4,
    "max_completion_length": 8,
    "max_steps": 2,
    "learning_rate": 1e-3,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "gradient_checkpointing": False,
    "seed": 0,
    "disable_tqdm": True,
}


@pytest.fixture
def grpo_recipe(tmp_path, monkeypatch):
    """Factory: write a tiny GRPO recipe YAML and return its path.

    `grpo_recipe(model_dir, data, reward_module=(name, source), **fields)`: fields override TINY_GRPO_RECIPE;
    `reward_module` writes Python `source` as module `name` on sys.path (use a name unique to the test file:
    Python caches modules by name), so `reward_funcs` can name `name:function`.
    """
    import textwrap

    import yaml

    def write(model_dir, data, reward_module=None, **fields):
        if reward_module is not None:
            name, source = reward_module
            (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
            monkeypatch.syspath_prepend(str(tmp_path))
        recipe = {
            "model_name_or_path": str(model_dir),
            "train_data": [str(data)],
            "output_dir": str(tmp_path / "out"),
            **TINY_GRPO_RECIPE,
            **fields,
        }
        path = tmp_path / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe))
        return path

    return write


@pytest.fixture
def grpo_run(grpo_recipe):
    """Factory: `grpo_run(model_dir, data, *cli_args, reward_module=..., **fields)` runs `vlm_r1.train.main` on a
    tiny recipe (see `grpo_recipe`) plus command-line flags, and returns its summary (with `log_history`)."""
    from vlm_r1.train import main

    def run(model_dir, data, *cli_args, reward_module=None, **fields):
        path = grpo_recipe(model_dir, data, reward_module=reward_module, **fields)
        return main(["--config", str(path), *cli_args])

    return run


@pytest.fixture(scope="session")
def rec_rows(tmp_path_factory):
    """8 synthetic REC training rows (JSONL path), shared by the end-to-end tests."""
    from vlm_r1.synthetic import write_split

    return write_split(tmp_path_factory.mktemp("rec_rows"), "rec", "train", 8, seed=0)


@pytest.fixture
def parse_only_argv(tmp_path):
    """The smallest `vlm-r1 train` / `vlm-r1 sft` command line that parses (nothing is loaded): for option checks."""
    return ["--model_name_or_path", "x", "--train_data", "a.jsonl", "--output_dir", str(tmp_path), "--use_cpu", "true"]


@pytest.fixture(scope="session")
def tiny_dino(tmp_path_factory):
    """A tiny offline Grounding DINO checkpoint folder (`vlm_r1.grqo.tiny`); tests must not write into it."""
    from vlm_r1.grqo.tiny import make_tiny_grounding_dino

    return make_tiny_grounding_dino(tmp_path_factory.mktemp("tiny_gdino"), seed=0)


@pytest.fixture(scope="session")
def shapes(tmp_path_factory):
    """Exhaustively labelled synthetic detection rows: (train jsonl of 8 rows, test jsonl of 4)."""
    from vlm_r1.grqo.data import write_synthetic_detection

    root = tmp_path_factory.mktemp("shapes")
    return write_synthetic_detection(root, "train", 8, seed=0), write_synthetic_detection(root, "test", 4, seed=0)
