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
