"""The HTML gallery of sampled completions: ``gallery.html``, ``gallery.json`` and ``images/``.

A snapshot takes the first few prompt groups of a :class:`~vlm_r1.trainer.grpo.ScoredBatch` (a group: the rows that
share a prompt, i.e. its G completions) and draws, for every completion, the row's first image with the ground truth
and the predicted boxes. ``gallery.json`` holds every snapshot kept (only the last ``keep``; older images are deleted),
so the page is rebuilt from it after a resume or by ``vlm-r1 report``. All text from the model or the data is
HTML-escaped.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from ..data import load_image
from .draw import draw_answer, ground_truth_boxes, tile

SHEET_WIDTH = 2048  # widest TensorBoard / wandb sheet (the completions of one prompt side by side)


def pick_groups(batch, groups: int) -> list[list[int]]:
    """Row indices of the first ``groups`` prompt groups of ``batch`` (rows sharing source and problem)."""
    order: dict[tuple, list[int]] = {}
    for index, row in enumerate(batch.rows):
        key = (row.get("source"), row.get("problem"), json.dumps(row.get("image_paths"), default=str))
        if key in order or len(order) < groups:
            order.setdefault(key, []).append(index)
    return list(order.values())


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


_IMAGE_NAME = re.compile(r"images/step\d{7,}_p\d+_c\d+\.png")


def read_index(index: Path) -> list[dict]:
    """The snapshots ``gallery.json`` holds, checked for what the page reads; ValueError naming the file and what is
    wrong (a file cut short or edited by hand)."""
    def number_or_none(value) -> bool:
        return value is None or isinstance(value, (int, float)) and not isinstance(value, bool)

    try:
        snapshots = json.loads(index.read_text(encoding="utf-8"))["snapshots"]
        for snap in snapshots:
            int(snap["step"])
            for group in snap["groups"]:
                for card in group["cards"]:
                    values = [card["total"], *card["rewards"].values()]
                    if not (all(map(number_or_none, values)) and isinstance(card["completion"], str)
                            and isinstance(card["boxes"], int) and isinstance(card["malformed"], int)):
                        raise ValueError(f"a card of step {snap['step']} has a field of the wrong type")
    except (ValueError, OSError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{index}: not a gallery index vlm-r1 can read ({type(e).__name__}: {e}); move it away to "
                         "start the gallery afresh") from None
    return snapshots


class Gallery:
    """The gallery folder; :meth:`add` draws one snapshot, :meth:`write_html` rebuilds the page."""

    def __init__(self, report_dir: str | Path, keep: int = 20, resumed_at: int | None = None):
        """Open the gallery of ``report_dir``. A training run passes ``resumed_at``, the step it starts from: the
        snapshots of later steps (all of them for a fresh run, at step 0) belong to an earlier run and are removed
        with their images; ``vlm-r1 report`` passes nothing and keeps them all."""
        self.dir = Path(report_dir)
        self.keep = keep
        self.snapshots: list[dict] = []
        index = self.dir / "gallery.json"
        if index.exists():
            self.snapshots = read_index(index)
        if resumed_at is not None:
            earlier_run = [s for s in self.snapshots if resumed_at == 0 or s["step"] > resumed_at]
            self.snapshots = [s for s in self.snapshots if s not in earlier_run]
            self._delete_images(earlier_run)
            if earlier_run:  # the page and index show this run's snapshots from now on, not at its first one
                self._save()

    def _delete_images(self, snapshots: list[dict]) -> None:
        """Delete the pictures of ``snapshots``: only names this class writes, in its images/ folder (gallery.json is
        a file anyone can edit; it never makes the trainer delete anything else)."""
        for snapshot in snapshots:
            for group in snapshot.get("groups", []):
                for card in group.get("cards", []):
                    name = card.get("image")
                    if isinstance(name, str) and _IMAGE_NAME.fullmatch(name):
                        (self.dir / name).unlink(missing_ok=True)

    def add(
        self, batch, step: int, groups: int = 2, weights: Mapping[str, float] | None = None
    ) -> list[tuple[str, Image.Image]]:
        """Draw ``groups`` prompt groups of ``batch`` as the snapshot of ``step``; return one sheet per group.

        A sheet puts the group's completions side by side with their rewards (for TensorBoard / wandb).
        """
        (self.dir / "images").mkdir(parents=True, exist_ok=True)
        weights = dict(weights or {})
        entry = {"step": step, "generated_at": batch.step, "groups": []}
        sheets = []
        for g, indices in enumerate(pick_groups(batch, groups)):
            row = batch.rows[indices[0]]
            paths = list(row.get("image_paths") or [])
            truth = ground_truth_boxes(row.get("solution"))
            image = load_image(paths[0]) if paths else None  # the same RGB pixels the model was given
            cards, drawn, captions = [], [], []
            for j, i in enumerate(indices):
                answer = batch.answers[i]
                rewards = {name: _number(values[i]) for name, values in batch.rewards.items()}
                applied = [weights.get(name, 1.0) * v for name, v in rewards.items() if v is not None]
                total = sum(applied) if applied else None  # TRL's total: the weighted nansum
                card = {
                    "completion": batch.completions[i],
                    "rewards": rewards,
                    "total": total,
                    "boxes": sum(d.box is not None for d in answer.detections),
                    "malformed": sum(d.box is None for d in answer.detections),
                    "image": None,
                }
                if image is not None:
                    picture = draw_answer(image, truth, answer.detections)
                    card["image"] = f"images/step{step:07d}_p{g}_c{j}.png"  # the _IMAGE_NAME pattern
                    picture.save(self.dir / card["image"])
                    drawn.append(picture)
                    captions.append(f"#{j} total {_fmt(total, 2)}\n" + "\n".join(
                        f"{_short(n)} {_fmt(v, 2)}" for n, v in rewards.items()
                    ))
                cards.append(card)
            entry["groups"].append({
                "problem": row.get("problem"),
                "solution": row.get("solution"),
                "source": row.get("source"),
                "images": len(paths),
                "truth_boxes": len(truth),
                "cards": cards,
            })
            if drawn:
                title = f"step {step}: {str(row.get('problem')).replace('<image>', ' ').strip()}"
                sheets.append((f"gallery/prompt_{g}", tile(_fit_width(drawn), captions, title)))
        self.snapshots = [s for s in self.snapshots if s["step"] != step] + [entry]
        self.snapshots.sort(key=lambda s: s["step"])
        dropped, self.snapshots = self.snapshots[: -self.keep], self.snapshots[-self.keep :]
        self._delete_images(dropped)
        self._save()
        return sheets

    def _save(self) -> None:
        """Write ``gallery.json`` (whole or not at all) and the page."""
        tmp = self.dir / "gallery.json.tmp"
        tmp.write_text(json.dumps({"snapshots": self.snapshots}, indent=1), encoding="utf-8")
        tmp.replace(self.dir / "gallery.json")
        self.write_html()

    def write_html(self) -> Path:
        parts = [_HEAD]
        if not self.snapshots:
            parts.append("<p>No snapshot yet.</p>")
        for snap in reversed(self.snapshots):
            parts.append(f'<h2 id="step{int(snap["step"])}">step {int(snap["step"])}</h2>')
            for group in snap["groups"]:
                parts.append(_group_html(group))
        parts.append("</body></html>\n")
        path = self.dir / "gallery.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(parts), encoding="utf-8")
        return path


def _fit_width(images: list[Image.Image], limit: int = SHEET_WIDTH) -> list[Image.Image]:
    """Shrink the images of a sheet so that side by side they stay within ``limit`` pixels."""
    total = sum(im.width for im in images)
    if total <= limit:
        return images
    factor = limit / total
    return [im.resize((max(1, round(im.width * factor)), max(1, round(im.height * factor))), Image.Resampling.LANCZOS)
            for im in images]


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _short(name: str) -> str:
    return name.removesuffix("_reward")


def _group_html(group: dict) -> str:
    e = html.escape
    more = f" (+{group['images'] - 1} more images, not shown)" if group.get("images", 0) > 1 else ""
    out = [
        '<div class="group">',
        f'<p class="q">{e(str(group.get("problem")))}</p>',
        f'<p class="meta">ground truth <code>{e(str(group.get("solution")))}</code> · {e(str(group.get("source")))}'
        f"{e(more)}</p>",
        '<div class="cards">',
    ]
    for j, card in enumerate(group["cards"]):
        rewards = "".join(
            f"<tr><td>{e(name)}</td><td>{_fmt(v, 3)}</td></tr>" for name, v in card["rewards"].items()
        )
        boxes = f"{card['boxes']} predicted box(es)" + (f", {card['malformed']} malformed" if card["malformed"] else "")
        image = f'<img src="{e(card["image"])}" alt="completion {j}">' if card.get("image") else ""
        out.append(
            f'<div class="card">{image}<table><tr><th>#{j} total</th><th>{_fmt(card["total"], 3)}</th></tr>'
            f"{rewards}</table>"
            f'<p class="meta">{boxes}</p><pre>{e(card["completion"])}</pre></div>'
        )
    out.append("</div></div>")
    return "\n".join(out)


_HEAD = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>vlm-r1 gallery</title>
<style>
body { font-family: sans-serif; margin: 1em 2em; }
.group { border-top: 1px solid #ccc; padding: .5em 0; }
.q { font-weight: bold; margin: .2em 0; }
.meta { color: #555; font-size: 85%; margin: .2em 0; word-break: break-all; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { width: 340px; font-size: 85%; }
.card img { max-width: 340px; display: block; }
pre { white-space: pre-wrap; word-break: break-word; background: #f6f6f6; padding: 4px;
      max-height: 16em; overflow: auto; }
td, th { padding: 0 8px 0 0; text-align: left; }
</style></head><body>
<h1>Sampled completions</h1>
<p>Newest first. <span style="color:#00c800">Green</span>: ground truth (drawn just outside the box).
<span style="color:#e61e1e">Red</span>: predicted boxes (just inside), with label and score when given.
Rewards: n/a means the function does not apply to the row, or it failed or gave NaN / inf there
(the training log warns, and guards/nonfinite_reward_frac counts those).</p>"""
