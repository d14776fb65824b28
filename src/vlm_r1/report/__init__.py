"""Pictures of a training run: reward / metric curves and a gallery of sampled completions with boxes drawn.

A run's report folder (default ``<output_dir>/report``) holds ``curves.png``, ``log_history.json``, ``gallery.html``
with ``gallery.json`` and ``images/``. During training :class:`vlm_r1.trainer.report_callback.ReportCallback` fills
it; afterwards ``vlm-r1 report OUTPUT_DIR`` (:func:`main`) redraws the curves and the page from what the run saved.
See docs/report.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..checkpoints import TRAINER_STATE, list_checkpoints
from .curves import write_curves
from .draw import display_scale, draw_answer, ground_truth_boxes, tile
from .gallery import Gallery, pick_groups

logger = logging.getLogger(__name__)

__all__ = [
    "Gallery",
    "display_scale",
    "draw_answer",
    "find_log_history",
    "ground_truth_boxes",
    "main",
    "pick_groups",
    "tile",
    "write_curves",
]


def find_log_history(output_dir: str | Path, report_dir: str | Path | None = None) -> tuple[list[dict], Path]:
    """The log history of the run last written under ``output_dir``, and the file it came from: the newest file,
    or a longer one whose history begins with the newest's (the same run further on: a copied or synced folder's
    files carry the times of the copy, in any order).

    Looks at ``trainer_state.json`` (written by ``trainer.save_state()``), ``report/log_history.json`` (written by the
    report callback; ``REPORT_DIR/log_history.json`` too for a run trained with ``report_dir``) and the newest
    readable ``checkpoint-*/trainer_state.json`` (an unreadable file, such as a save cut short, is skipped with a
    warning). ``output_dir`` may also be one of those files.
    Raises FileNotFoundError naming the places it looked.
    """
    root = Path(output_dir)
    if root.is_file():
        places, checkpoints = [root], []
    else:
        places = [root / TRAINER_STATE, root / "report" / "log_history.json"]
        checkpoints = [folder / TRAINER_STATE for folder in list_checkpoints(root)]
    found = [(history, path) for path in places if (history := _read_history(path)) is not None]
    newest = next(((history, path) for path in reversed(checkpoints) if (history := _read_history(path)) is not None),
                  None)  # fmt: skip
    found += [newest] if newest is not None else []
    if report_dir is not None and not root.is_file():
        moved = Path(report_dir) / "log_history.json"
        found += [(history, moved)] if (history := _read_history(moved)) is not None else []
    # the newest: a fresh run in a used output_dir rewrites report/log_history.json as it starts, while an earlier
    # run's longer trainer_state.json stays until this one ends
    newest = max(found, key=lambda item: item[1].stat().st_mtime, default=None)
    same_run = [item for item in found if newest is not None and item[0][: len(newest[0])] == newest[0]]
    best = max(same_run, key=lambda item: len(item[0]), default=None)
    if best is None:
        also = f" and {Path(report_dir) / 'log_history.json'}" if report_dir is not None and not root.is_file() else ""
        raise FileNotFoundError(
            f"no log history in {root}: looked for trainer_state.json, report/log_history.json, checkpoint-*/{also}"
            " (a run trained with report_dir: pass --out REPORT_DIR)"
        )
    return best


def _read_history(path: Path) -> list[dict] | None:
    """The log history a file holds, or None: absent, or unreadable (a save cut short; logged and skipped)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        logger.warning("%s: not readable (%s); skipped", path, e)
        return None
    history = data.get("log_history", []) if isinstance(data, dict) else data
    if not isinstance(history, list):
        logger.warning("%s: holds no log history; skipped", path)
        return None
    return history


def main(argv: list[str] | None = None) -> int:
    """``vlm-r1 report OUTPUT_DIR [--out DIR]``: redraw curves.png and gallery.html of a finished run."""
    parser = argparse.ArgumentParser(
        prog="vlm-r1 report", description="Redraw the training report (curves, gallery page) of a run."
    )
    parser.add_argument("output_dir", help="the run's output_dir (or a trainer_state.json)")
    parser.add_argument("--out", default=None,
                        help="report folder (default: OUTPUT_DIR/report; for a run trained with report_dir, "
                             "that folder)")
    args = parser.parse_args(argv)
    root = Path(args.output_dir)
    if not root.exists():
        parser.error(f"{root}: no such folder or file")
    if (root / "log.jsonl").is_file():  # what `vlm-r1 grqo` writes: its own log, no trainer log history
        parser.error(f"{root} is a GRQO run: its losses and evaluations are in {root / 'log.jsonl'}; this command "
                     "draws the reports of `vlm-r1 train` and `vlm-r1 sft` runs")
    if (root / "grpo").is_dir() and not (root / "report").exists():  # a `vlm-r1 pipeline` work dir
        parser.error(f"{root} is a pipeline work dir: its GRPO run is {root / 'grpo'}")
    try:
        history, source = find_log_history(args.output_dir, args.out)
    except (FileNotFoundError, ValueError) as e:
        print(f"vlm-r1 report: {e}", file=sys.stderr)
        return 1
    base = Path(args.output_dir)
    out = Path(args.out) if args.out else (base.parent if base.is_file() else base) / "report"
    curves = write_curves(history, out)
    print(f"log history: {source} ({len(history)} entries)")
    print(f"curves: {curves}" if curves else "curves: nothing plottable was logged")
    if (out / "gallery.json").exists():
        try:
            print(f"gallery: {Gallery(out).write_html()}")
        except ValueError as e:
            print(f"vlm-r1 report: {e}", file=sys.stderr)
            return 1
    return 0
