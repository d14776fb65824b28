"""JSONL rows -> validated :class:`Sample` objects, with every problem reported as ``file:line: field: message``.

A row is ``{"image": str | [str] (optional), "conversations": [{"from": "human", "value": text},
{"from": "gpt", "value": ground truth}], "reward": str (optional)}``; unknown keys are ignored, except VLM-R1's
``accu_reward_method`` on a row without ``reward`` (refused: the row would be scored by another reward).
:func:`check_rows` validates every line and returns a :class:`LoadReport` (it raises only for a
missing or empty file); :func:`load_rows` raises :class:`DataError` listing all problems, or with
``skip_invalid=True`` drops the bad rows, warns with their count and keeps them in ``.report``.
The rules are written out in docs/data.md.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..rewards.boxes import is_four_numbers
from ..rewards.format import THINK_TAGS
from ..rewards.parsing import strip_fence
from .errors import DataError, DataWarning, ImageError, Problem
from .images import DEFAULT_MAX_PIXELS, exif_orientation, load_image, probe_image

IMAGE_PLACEHOLDER = "<image>"
HUMAN_ROLES = ("human", "user")
GPT_ROLES = ("gpt", "assistant")


@dataclass(frozen=True)
class Sample:
    """One validated row. ``solution`` is ``json.dumps`` of the parsed ground truth."""

    images: tuple[str, ...]  # absolute paths
    image_sizes: tuple[tuple[int, int], ...]  # (width, height) of each original image
    problem: str  # the human text, one <image> placeholder per image, in place
    solution: str
    reward: str | None
    source: str  # "file:line"


@dataclass(frozen=True)
class SkippedRow:
    source: str
    reasons: tuple[str, ...]  # "field: message"


@dataclass
class LoadReport:
    """What :func:`check_rows` found: the valid samples, and every problem of the invalid rows."""

    path: str
    samples: list[Sample]
    problems: list[Problem]
    n_rows: int  # non-blank lines read

    @property
    def skipped(self) -> list[SkippedRow]:
        by_source: dict[str, list[str]] = {}
        for p in self.problems:
            by_source.setdefault(p.source, []).append(f"{p.field}: {p.message}")
        return [SkippedRow(s, tuple(r)) for s, r in by_source.items()]

    def write_skipped(self, path) -> Path:
        """Write one JSON line ``{"source": "file:line", "reasons": [...]}`` per skipped row."""
        return write_skipped_rows(path, self.skipped)


def write_skipped_rows(path, skipped: list[SkippedRow]) -> Path:
    """Write one JSON line ``{"source": "file:line", "reasons": [...]}`` per skipped row."""
    path = Path(path)
    with open(path, "w", encoding="utf-8") as f:
        for row in skipped:
            f.write(json.dumps({"source": row.source, "reasons": list(row.reasons)}) + "\n")
    return path


class Rows(list):
    """The list of samples returned by :func:`load_rows`, with the :class:`LoadReport` attached."""

    report: LoadReport

    @property
    def skipped(self) -> list[SkippedRow]:
        return self.report.skipped


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    result = dict(pairs)
    if len(result) < len(pairs):  # json.loads would keep the last value and drop the others without a word
        counts = collections.Counter(k for k, _ in pairs)
        duplicates = sorted(k for k, n in counts.items() if n > 1)
        raise ValueError(f"duplicate key(s) {', '.join(map(repr, duplicates)):.200} in one object")
    return result


def _json(text: str):
    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def _type(value) -> str:
    return type(value).__name__ if value is not None else "null"


def _box_problem(box: list, size: tuple[int, int] | None) -> str | None:
    x1, y1, x2, y2 = box
    if not (x1 < x2 and y1 < y2):
        return f"box {box} is reversed or empty (need x1 < x2 and y1 < y2)"
    if size is not None:
        w, h = size
        if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
            return f"box {box} lies outside the {w}x{h} image"
        if max(box) <= 1 and max(w, h) > 2:
            return (f"box {box} lies within the first pixel of the {w}x{h} image: boxes are pixels of the original "
                    f"image; if these are fractions of it (0-1), multiply x by {w} and y by {h}")
    return None


# A row without an image has no pixels for a box to be in: its boxes would be scored unconverted, in whatever frame
# the model writes, and SFT could not write them in the model's frame.
BOX_WITHOUT_IMAGE = "a box ground truth needs an image (its pixels are the box's frame), and this row has none"


def holds_boxes(value) -> bool:
    """Whether a decoded ground truth holds boxes: a 4-number list, or a list with a dict that has a "bbox_2d"."""
    return isinstance(value, list) and (is_four_numbers(value) or any(
        isinstance(item, dict) and "bbox_2d" in item for item in value))  # fmt: skip


def _solution_problems(value, size: tuple[int, int] | None, has_image: bool = True) -> list[tuple[str, str]]:
    """Box checks: a 4-number list is a box; so is the "bbox_2d" of each dict in a list; a row without an image holds
    none (:data:`BOX_WITHOUT_IMAGE`)."""
    if not has_image and holds_boxes(value):
        return [("solution", BOX_WITHOUT_IMAGE)]
    if isinstance(value, list) and is_four_numbers(value):
        msg = _box_problem(value, size)
        return [("solution", msg)] if msg else []
    out = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not (isinstance(item, dict) and "bbox_2d" in item):
                continue
            box = item["bbox_2d"]
            if not (isinstance(box, list) and is_four_numbers(box)):
                out.append((f"solution[{i}].bbox_2d", f"expected 4 numbers, got {json.dumps(box):.200}"))
            elif msg := _box_problem(box, size):
                out.append((f"solution[{i}].bbox_2d", msg))
    return out


# VLM-R1 writes ground truths as completions: "<answer>X</answer>", maybe after a <think> block, and detections in
# a ```json fence. The wrapper is taken off (as VLM-R1 does before scoring); X is then read like any gpt value.
_ANSWER_WRAPPED = re.compile(r"(?:<think>.*?</think>\s*)?<answer>(.*)</answer>", re.DOTALL)


def parse_ground_truth(value):
    """The gpt value as a JSON value: JSON text is parsed, other text kept as a string. A VLM-R1 wrapper (the whole
    text is ``<answer>X</answer>``, maybe after ``<think>…</think>``, or one ```json fence) is taken off first.

    Raises ValueError for empty text, null, text that starts like JSON ("[" / "{") but does not parse, and text that
    still holds answer or think tags.
    """
    if isinstance(value, str):
        text = value.strip()
        if wrapped := _ANSWER_WRAPPED.fullmatch(text):
            text = wrapped.group(1).strip()
        text = strip_fence(text)
        if any(tag in text for tag in THINK_TAGS):
            raise ValueError("holds <answer> / <think> tags that are not one '<answer>X</answer>' around the whole "
                             f"value: write the ground truth alone, got {value!r:.200}")
        if not text:
            raise ValueError("empty ground truth")
        try:
            value = _json(text)
        except ValueError as e:
            if text[0] in "[{":
                raise ValueError(f"looks like JSON but does not parse: {e}") from None
            value = text
    if value is None:
        raise ValueError('ground truth is null (a class named "null" is written {"label": "null"})')
    if not _finite(value):
        raise ValueError("ground truth holds a non-finite number")
    return value


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


# keys other datasets keep a row's image under; read as nothing, they would make it a text-only row
IMAGE_KEY_LOOKALIKES = ("image", "images", "img", "image_path", "image_paths", "image_file", "img_path")  # any case
# keys text-only rows may keep as metadata: refused only when they hold a path with an image file's extension
IMAGE_NAME_KEYS = ("image_url", "file_name", "filename", "image_name")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def _names_an_image(value) -> bool:
    values = value if isinstance(value, list) else [value]
    return any(isinstance(v, str) and v.strip().lower().endswith(IMAGE_EXTENSIONS) for v in values)


def _missing_conversations(row: dict) -> str:
    """The problem of a row without ``conversations``, with the conversion for the other projects' row shapes."""
    if "problem" in row and "solution" in row:  # R1-V / Visual-RFT
        return ('missing. This row has R1-V / Visual-RFT keys (problem, solution); vlm-r1 reads "conversations": '
                '[{"from": "human", "value": "<image>" + problem}, {"from": "gpt", "value": solution}] (the '
                "solution's <answer> tags may stay), see docs/data.md")
    if "messages" in row:
        return ('missing. This row has chat "messages"; vlm-r1 reads "conversations": [{"from": "human", "value": '
                'the user text}, {"from": "gpt", "value": the ground truth}], see docs/data.md')
    return "missing"


@dataclass
class _Context:
    path: str
    root: str  # absolute image root
    root_real: str  # the same with symlinks resolved
    allow_outside_root: bool
    max_pixels: int | None
    decode: bool
    cache: dict = field(default_factory=dict)  # absolute image path -> size or ImageError
    rotated: list = field(default_factory=list)  # image paths whose EXIF orientation is not "as stored"


def _check_image(ctx: _Context, rel) -> tuple[str, tuple[int, int] | None, str | None]:
    """(absolute path, size, problem)."""
    if not isinstance(rel, str) or not rel.strip():
        return "", None, f"expected a non-empty path string, got {json.dumps(rel):.200}"
    if "\0" in rel:
        return "", None, f"the path holds a NUL character: {rel!r:.200}"
    full = os.path.abspath(os.path.join(ctx.root, rel))
    if not ctx.allow_outside_root:
        try:
            real = os.path.realpath(full)
        except (OSError, ValueError) as e:
            return full, None, f"{rel!r:.200} is not a usable path ({type(e).__name__}: {str(e)[:200]})"
        if os.path.commonpath([ctx.root_real, real]) != ctx.root_real:
            return full, None, (f"{rel!r} resolves outside the image root {ctx.root} (--allow_images_outside_root "
                                "true lets it through)")
    if full not in ctx.cache:
        try:
            if ctx.decode:
                ctx.cache[full] = load_image(full, ctx.max_pixels).size
            else:
                ctx.cache[full] = probe_image(full, ctx.max_pixels)
        except ImageError as e:
            ctx.cache[full] = e
        else:
            if exif_orientation(full) != 1:
                ctx.rotated.append(full)
    got = ctx.cache[full]
    if isinstance(got, ImageError):
        return full, None, str(got)
    return full, got, None


def _turns(conv, problems: list[tuple[str, str]]):
    """Return (human value, gpt value) indices, or None after recording problems."""
    if not isinstance(conv, list) or not conv:
        problems.append(("conversations", f"expected a non-empty list of turns, got {_type(conv)}"))
        return None
    humans, gpts = [], []
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            problems.append((f"conversations[{i}]", 'expected {"from": ..., "value": ...}'))
        elif turn["from"] in HUMAN_ROLES:
            humans.append(i)
        elif turn["from"] in GPT_ROLES:
            gpts.append(i)
        else:
            problems.append((f"conversations[{i}].from", f"unknown role {json.dumps(turn['from']):.200}; expected human or gpt"))
    if problems:
        return None
    if not humans:
        problems.append(("conversations", "no human turn"))
    if not gpts:
        problems.append(("conversations", "no gpt turn"))
    if len(humans) > 1 or len(gpts) > 1:
        problems.append(("conversations", f"expected one human and one gpt turn, got {len(humans)} and {len(gpts)}"))
    if problems:
        return None
    if gpts[0] < humans[0]:
        problems.append(("conversations", "the gpt turn comes before the human turn"))
        return None
    return humans[0], gpts[0]


def _check_row(ctx: _Context, row, lineno: int, default_reward, validate_solution):
    """Return (Sample | None, problems as (field, message))."""
    problems: list[tuple[str, str]] = []
    if not isinstance(row, dict):
        return None, [("row", f"expected a JSON object, got {_type(row)}")]
    if "conversations" in row:
        turns = _turns(row["conversations"], problems)
    else:
        turns = None
        problems.append(("conversations", _missing_conversations(row)))
    misplaced = [key for key in row if key != "image" and (str(key).lower() in IMAGE_KEY_LOOKALIKES or (
        str(key).lower() in IMAGE_NAME_KEYS and _names_an_image(row[key])))]
    if misplaced and not row.get("image"):  # the image would be dropped and the row trained on as text
        problems.append((misplaced[0], "is not read: a row's image is `image` (a path or a list of paths); rename "
                                       "the key"))
    # images
    raw = row.get("image")
    if raw is None:
        rels = []
    elif isinstance(raw, str):
        rels = [raw]
    elif isinstance(raw, list):
        rels = raw
    else:
        problems.append(("image", f"expected a path or a list of paths, got {_type(raw)}"))
        rels = []
    images, sizes = [], []
    for j, rel in enumerate(rels):
        name = "image" if isinstance(raw, str) else f"image[{j}]"
        full, size, msg = _check_image(ctx, rel)
        if msg:
            problems.append((name, msg))
        images.append(full)
        sizes.append(size)
    # reward
    reward = row.get("reward")
    if reward is None and "accu_reward_method" in row:  # VLM-R1's key: scoring the row by another reward is wrong
        problems.append(("accu_reward_method", "VLM-R1's per-row reward key is not read here: name the row's reward in "
                         "`reward` instead (mcq -> multiple_choice, yes_no -> yes_no, od_ap or map -> detection, "
                         "default -> rec for a box); see docs/data.md"))
    if reward is None:
        reward = default_reward
    elif not isinstance(reward, str) or not reward.strip():
        problems.append(("reward", f"expected a non-empty string, got {json.dumps(reward):.200}"))
    # text and ground truth
    problem_text, value = None, None
    if turns is not None:
        h, g = turns
        text = row["conversations"][h]["value"]
        hf = f"conversations[{h}].value"
        if not isinstance(text, str):
            problems.append((hf, f"expected text, got {_type(text)}"))
        elif not text.replace(IMAGE_PLACEHOLDER, "").strip():
            problems.append((hf, "empty question text"))
        else:
            n_ph = text.count(IMAGE_PLACEHOLDER)
            if n_ph == 0 and rels:
                text = IMAGE_PLACEHOLDER * len(rels) + text  # VLM-R1's rule: images go first
            elif n_ph != len(rels):
                problems.append((hf, f"{n_ph} {IMAGE_PLACEHOLDER} placeholder(s) but {len(rels)} image(s)"))
            problem_text = text
        try:
            value = parse_ground_truth(row["conversations"][g]["value"])
        except ValueError as e:
            problems.append((f"conversations[{g}].value", str(e)))
        else:
            size = sizes[0] if sizes else None  # a box refers to the row's first image
            problems.extend(_solution_problems(value, size, has_image=bool(rels)))
            if validate_solution is not None and not any(f.startswith(("solution", "reward")) for f, _ in problems):
                try:
                    validate_solution(reward, value)
                except ValueError as e:  # an error may name its field (a reward name the validator does not know)
                    field_name = getattr(e, "field", "solution")
                    if field_name == "reward" and row.get("reward") is None:
                        field_name = "default_reward"
                    problems.append((field_name, str(e)))
    if problems:
        return None, problems
    sample = Sample(
        images=tuple(images),
        image_sizes=tuple(sizes),
        problem=problem_text,
        solution=json.dumps(value),
        reward=reward,
        source=f"{ctx.path}:{lineno}",
    )
    return sample, []


def check_rows(
    jsonl_path,
    image_root=None,
    *,
    default_reward: str | None = None,
    validate_solution: Callable[[str | None, object], None] | None = None,
    allow_outside_root: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    decode_images: bool = False,
) -> LoadReport:
    """Validate every line of ``jsonl_path``; never raises for a bad row (see :func:`load_rows`)."""
    path = Path(jsonl_path)
    if not path.is_file():
        raise FileNotFoundError(f"JSONL file not found: {path}")
    root = os.path.abspath(image_root if image_root is not None else path.parent)
    ctx = _Context(str(path), root, os.path.realpath(root), allow_outside_root, max_pixels, decode_images)
    samples, problems, n_rows = [], [], 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            source = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                n_rows += 1
                problems.append(Problem(source, "json", f"not UTF-8 ({e.reason} at byte {e.start})"))
                continue
            if lineno == 1:
                line = line.lstrip("\ufeff")
            if not line.strip():
                continue
            n_rows += 1
            try:
                row = _json(line)
                json.dumps(row, ensure_ascii=False).encode("utf-8")  # "\ud800" parses but is no text
            except UnicodeEncodeError:
                problems.append(Problem(source, "json", "holds a lone surrogate escape (\\ud800-\\udfff): not text"))
                continue
            except ValueError as e:
                problems.append(Problem(source, "json", f"invalid JSON: {e}"))
                continue
            except RecursionError:
                problems.append(Problem(source, "json", "nested too deep to read"))
                continue
            try:
                sample, row_problems = _check_row(ctx, row, lineno, default_reward, validate_solution)
            except RecursionError:  # a ground truth nested hundreds of levels deep
                sample, row_problems = None, [("solution", "nested too deep to read")]
            if sample is not None:
                samples.append(sample)
            problems.extend(Problem(source, f, m) for f, m in row_problems)
    if n_rows == 0:
        raise DataError.from_problems([Problem(f"{path}:0", "file", "no rows")])
    if ctx.rotated:
        warnings.warn(f"{path}: {len(ctx.rotated)} image(s) carry an EXIF rotation, which is not applied (e.g. "
                      f"{ctx.rotated[0]}): boxes must refer to the pixels as stored, which is what the model sees",
                      DataWarning, stacklevel=2)  # fmt: skip
    return LoadReport(str(path), samples, problems, n_rows)


def load_rows(
    jsonl_path,
    image_root=None,
    *,
    default_reward: str | None = None,
    skip_invalid: bool = False,
    validate_solution: Callable[[str | None, object], None] | None = None,
    allow_outside_root: bool = False,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    decode_images: bool = False,
) -> Rows:
    """Load and validate a VLM-R1 JSONL file into :class:`Sample` objects.

    Image paths are relative to ``image_root`` (default: the JSONL's folder) and may not resolve
    outside it unless ``allow_outside_root``. Each image's header is read and verified (a full
    decode with ``decode_images=True``). ``validate_solution(reward_name, value)`` may raise
    ValueError to reject a row's ground truth. Without ``skip_invalid`` any problem raises
    :class:`DataError` listing them all; with it, bad rows are dropped with a :class:`DataWarning`
    and listed in ``result.report`` / ``result.skipped`` (``result.report.write_skipped(path)``).
    """
    report = check_rows(
        jsonl_path,
        image_root,
        default_reward=default_reward,
        validate_solution=validate_solution,
        allow_outside_root=allow_outside_root,
        max_pixels=max_pixels,
        decode_images=decode_images,
    )
    n_bad = report.n_rows - len(report.samples)
    if n_bad and not skip_invalid:
        raise DataError.from_problems(
            report.problems, f"{report.path}: {n_bad} of {report.n_rows} rows are invalid:"
        )
    if n_bad:
        warnings.warn(
            f"{report.path}: skipped {n_bad} of {report.n_rows} invalid rows (see .report.skipped)",
            DataWarning,
            stacklevel=2,
        )
    rows = Rows(report.samples)
    rows.report = report
    return rows
