"""Draw what the model answered on the image it looked at.

Ground truth boxes are green and sit just OUTSIDE their box; predicted boxes are red and sit just INSIDE theirs, so a
perfect prediction shows both colours side by side instead of one hiding the other. A labelled ground-truth box has
a green tag under it, a predicted box a red tag (label and score) over its top-left corner; a tag that would cover
one already drawn moves to the nearest free place beside it, so every tag stays readable. Small images (the synthetic
shapes are 112 px) are enlarged by a whole factor with nearest-neighbour sampling so the boxes stay readable; large
photos are shrunk. Every box is in pixels of the original image (the trainer has already converted predictions).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ..rewards.boxes import is_four_numbers
from ..rewards.parsing import Detection

TRUTH = (0, 200, 0)
PREDICTION = (230, 30, 30)
LINE = 2  # line width in display pixels
MORE = (90, 90, 90)  # the tag saying how many labels were left out
MAX_TAGS = 60  # labels placed on one picture: placing each avoids the others, so the cost grows with their square
SMALL_TARGET = 320  # images whose long side is below this are enlarged by an integer factor up to about this
LARGE_LIMIT = 640  # images whose long side is above this are shrunk to it

Box = tuple[float, float, float, float]


def ground_truth_boxes(solution: Any) -> list[tuple[Box, str | None]]:
    """Boxes of a row's ``solution`` (JSON or parsed): REC ``[x1,y1,x2,y2]``, detection ``[{"bbox_2d", "label"}]``.

    Anything else (a class name, a count, malformed JSON) has no boxes and gives ``[]``; this never raises.
    """
    if isinstance(solution, str):
        try:
            solution = json.loads(solution)
        except (ValueError, RecursionError):
            return []
    if is_four_numbers(solution, finite=True):
        return [(tuple(float(v) for v in solution), None)]
    if isinstance(solution, dict):
        solution = [solution]
    boxes = []
    if isinstance(solution, list):
        for item in solution:
            if isinstance(item, dict) and is_four_numbers(item.get("bbox_2d"), finite=True):
                label = item.get("label")
                boxes.append((tuple(float(v) for v in item["bbox_2d"]), str(label) if label is not None else None))
    return boxes


def display_scale(size: tuple[int, int]) -> float:
    """Factor from original pixels to gallery pixels: a whole number >= 1 for small images, < 1 for large ones."""
    long_side = max(size)
    if long_side > LARGE_LIMIT:
        return LARGE_LIMIT / long_side
    return float(max(1, math.ceil(SMALL_TARGET / long_side))) if long_side < SMALL_TARGET else 1.0


@lru_cache(maxsize=4)
def font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def draw_answer(
    image: Image.Image,
    truth: Sequence[tuple[Box, str | None]],
    detections: Sequence[Detection],
    scale: float | None = None,
) -> Image.Image:
    """A new RGB image: ``image`` scaled by ``scale`` (default :func:`display_scale`) with the boxes drawn on it."""
    scale = display_scale(image.size) if scale is None else scale
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    canvas = image.convert("RGB").resize(size, resample)
    draw = ImageDraw.Draw(canvas)
    tags = []  # (text, colour, preferred top-left corner)
    for box, label in truth:
        x1, y1, x2, y2 = _on_canvas(box, scale, size)
        draw.rectangle(_inside([x1 - LINE, y1 - LINE, x2 + LINE - 1, y2 + LINE - 1], size), outline=TRUTH, width=LINE)
        if label:
            tags.append((label[:40], TRUTH, (x1 - LINE, y2 + LINE)))
    for det in detections:
        if det.box is None:
            continue
        x1, y1, x2, y2 = _on_canvas(det.box, scale, size)
        draw.rectangle(_inside([x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)], size), outline=PREDICTION, width=LINE)
        caption = " ".join(part for part in (det.label, None if det.score is None else f"{det.score:.2f}") if part)
        if caption:
            tags.append((caption[:40], PREDICTION, (x1, y1 - _tag_size(draw, caption[:40])[1])))
    placed: list[tuple[int, int, int, int]] = []
    for text, colour, corner in tags[:MAX_TAGS]:  # the truth's first
        _label(draw, text, corner, size, colour, placed)
    if len(tags) > MAX_TAGS:
        _label(draw, f"+{len(tags) - MAX_TAGS} labels not drawn", (0, size[1]), size, MORE, placed)
    return canvas


def _on_canvas(box: Box, scale: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """A box in canvas pixels, clamped a little outside the canvas (absurd coordinates stay finite integers)."""
    w, h = size
    limits = (w, h, w, h)
    return tuple(int(round(min(max(v * scale, -2 * LINE), lim + 2 * LINE))) for v, lim in zip(box, limits))


def _inside(rect: list[int], size: tuple[int, int]) -> list[int]:
    """``rect`` (x1, y1, x2, y2, inclusive) clamped into the canvas: a side at or beyond the border is drawn on it,
    so a box touching the border, covering the image or larger than it keeps a visible outline."""
    w, h = size
    x1, y1, x2, y2 = (min(max(v, 0), lim - 1) for v, lim in zip(rect, (w, h, w, h)))
    return [x1, y1, x2, y2]


def _tag_size(draw: ImageDraw.ImageDraw, text: str) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font())
    return right - left + 4, bottom - top + 2


def _label(draw: ImageDraw.ImageDraw, text: str, corner: tuple[int, int], size: tuple[int, int],
           colour: tuple[int, int, int], placed: list[tuple[int, int, int, int]]) -> None:
    """A tag with its top-left at ``corner`` (kept on the canvas), or, when that would overlap a tag in ``placed``,
    at the nearest free row below or above it. The tag's rectangle is added to ``placed``."""
    tw, th = _tag_size(draw, text)
    x = min(max(corner[0], 0), max(0, size[0] - tw))
    lowest = max(0, size[1] - th)
    y0 = min(max(corner[1], 0), lowest)
    rows = sorted(range(0, lowest + 1), key=lambda y: (abs(y - y0), y < y0))  # nearest first, below before above
    y = next((y for y in rows if not any(_overlap((x, y, x + tw, y + th), r) for r in placed)), y0)
    placed.append((x, y, x + tw, y + th))
    left, top, _, _ = draw.textbbox((0, 0), text, font=font())
    draw.rectangle([x, y, x + tw - 1, y + th - 1], fill=colour)
    draw.text((x + 2 - left, y + 1 - top), text, fill=(255, 255, 255), font=font())


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def tile(images: Sequence[Image.Image], captions: Sequence[str], title: str = "") -> Image.Image:
    """Images side by side, each with its caption (may hold newlines) under it and an optional title on top."""
    f = font()
    line = f.getbbox("Ag")[3] + 3
    cap_h = line * max(1, max((c.count("\n") + 1 for c in captions), default=1)) + 4
    title_h = line + 6 if title else 0
    width = sum(im.width for im in images) + 4 * (len(images) + 1)
    height = title_h + max((im.height for im in images), default=0) + cap_h + 8
    sheet = Image.new("RGB", (max(width, 8), height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((4, 3), _fit(draw, title, width - 8), fill=(0, 0, 0), font=f)
    x = 4
    for im, caption in zip(images, captions, strict=True):
        sheet.paste(im, (x, title_h + 4))
        for i, text in enumerate(caption.split("\n")):
            draw.text((x, title_h + 6 + im.height + i * line), _fit(draw, text, im.width), fill=(0, 0, 0), font=f)
        x += im.width + 4
    return sheet


def _fit(draw: ImageDraw.ImageDraw, text: str, width: int) -> str:
    """``text`` on one line (line breaks become spaces: PIL cannot measure several lines) cut, with an ellipsis, to
    fit ``width`` pixels."""
    text = " ".join(text.splitlines())
    if draw.textlength(text, font=font()) <= width:
        return text
    low, high = 0, len(text)  # the longest prefix that fits with the ellipsis: binary search, O(n log n) to measure
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(text[:middle] + "…", font=font()) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…"
