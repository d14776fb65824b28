"""Synthetic visual tasks: seeded scenes of coloured shapes, written as VLM-R1 JSONL.

Every scene is a light background with a few flat-coloured shapes drawn by PIL without
anti-aliasing, so each object's box is known exactly: it is the bounding box of the drawn
pixels, ``[x1, y1, x2, y2]`` in the continuous pixel convention (a shape covering pixel
columns 10..29 has ``x1 = 10, x2 = 30``). Objects never overlap and keep a gap of at least
``_GAP`` pixels, so every box is also the extent of the visible shape.

Four tasks (``TASKS``) and three splits (``DOMAINS``):

* ``rec``            "Find the blue square."      -> ``[x1, y1, x2, y2]``
* ``detection``      "Detect every star."         -> ``[{"bbox_2d": [...], "label": "red star"}, ...]``
* ``counting``       "How many red objects ..."   -> an integer
* ``classification`` "What shape is in the image?" -> ``"circle"``

``train`` and ``test`` share one distribution (different random streams); ``ood`` uses
colour-shape pairs that never occur in ``train``/``test``, smaller objects, a striped
background and more distractors. The rules live in :class:`Domain` and are documented in
docs/data.md. Everything is a pure function of ``(seed, task, split, index)``: the same
arguments give byte-identical PNG files and JSONL lines.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Each row's "reward" field names its task; the accuracy reward of a task is chosen in one place,
# vlm_r1.rewards.dispatch.TASK_REWARDS (rec -> iou_acc, detection -> det_map, ...).
TASKS = ("rec", "detection", "counting", "classification")

COLOURS = {  # name -> base RGB; every colour has a channel <= 60, every background channel >= 180
    "red": (220, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 55, 190),
    "orange": (245, 130, 20),
}
SHAPES = ("circle", "square", "triangle", "star", "cross")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars", "cross": "crosses"}
BACKGROUNDS = ("plain", "noise", "stripes")

Pair = tuple[str, str]  # (colour, shape)
ALL_PAIRS: tuple[Pair, ...] = tuple((c, s) for c in COLOURS for s in SHAPES)
# One held-out shape per colour, chosen on a diagonal so every colour keeps 4 seen shapes and
# every shape keeps at least 4 seen colours: red triangle, green star, blue cross, yellow circle,
# purple square, orange triangle.
HELD_OUT_PAIRS: tuple[Pair, ...] = tuple((c, SHAPES[(i + 2) % len(SHAPES)]) for i, c in enumerate(COLOURS))
SEEN_PAIRS: tuple[Pair, ...] = tuple(p for p in ALL_PAIRS if p not in HELD_OUT_PAIRS)

_GAP = 2  # minimum free pixels between two objects' squares
_COLOUR_JITTER = 12  # per-channel jitter of an object's fill colour


@dataclass(frozen=True)
class Domain:
    """The sampling rules of one split. Ranges are inclusive; sizes are fractions of the image side."""

    name: str
    target_pairs: tuple[Pair, ...]  # pairs that may be referred to / counted / classified
    distractor_pairs: tuple[Pair, ...]  # pairs that may appear as other objects
    size_range: tuple[float, float]  # side of an object's square, as a fraction of the image side (rounded to whole
    # pixels, at least 6 px: exact at 112 px; at 64 px `ood` objects are 6-8 px, 0.09-0.13 of the side)
    backgrounds: tuple[str, ...]
    rec_distractors: tuple[int, int]  # other objects next to the referent
    detection_objects: tuple[int, int]  # objects in a detection scene
    detection_empty_p: float  # probability that a detection query matches nothing
    count_range: tuple[int, int]  # how many objects match a counting question
    count_others: tuple[int, int]  # non-matching objects in a counting scene


TRAIN = Domain(
    name="train",
    target_pairs=SEEN_PAIRS,
    distractor_pairs=SEEN_PAIRS,
    size_range=(0.13, 0.28),
    backgrounds=("plain", "noise"),
    rec_distractors=(0, 3),
    detection_objects=(1, 5),
    detection_empty_p=0.15,
    count_range=(0, 5),
    count_others=(0, 2),
)
OOD = Domain(
    name="ood",
    target_pairs=HELD_OUT_PAIRS,
    distractor_pairs=ALL_PAIRS,
    size_range=(0.07, 0.12),
    backgrounds=("stripes",),
    rec_distractors=(3, 6),
    detection_objects=(4, 8),
    detection_empty_p=0.15,
    count_range=(0, 5),
    count_others=(3, 6),
)
# The compositional shift alone: referents are the held-out colour-shape pairs, everything else (sizes,
# backgrounds, number of distractors) is as in training. `ood` adds the other shifts on top.
OOD_PAIRS = replace(TRAIN, name="ood_pairs", target_pairs=HELD_OUT_PAIRS, distractor_pairs=ALL_PAIRS)
DOMAINS = {"train": TRAIN, "test": replace(TRAIN, name="test"), "ood": OOD, "ood_pairs": OOD_PAIRS}
SPLITS = tuple(DOMAINS)

REC_TEMPLATES = (
    "Find the {colour} {shape}.",
    "Where is the {colour} {shape}?",
    "Locate the {colour} {shape} in the image.",
    "Give the bounding box of the {colour} {shape}.",
)
DETECTION_TEMPLATES = {
    "all": ("Detect every object in the image.", "Find all objects and give their bounding boxes."),
    "shape": ("Detect every {shape} in the image.", "Find all {plural}."),
    "colour": ("Detect every {colour} object.", "Find all {colour} objects."),
    "pair": ("Detect every {colour} {shape}.", "Find all {colour} {plural}."),
}
COUNTING_TEMPLATES = {
    "shape": "How many {plural} are there?",
    "colour": "How many {colour} objects are there?",
    "pair": "How many {colour} {plural} are there?",
}
CLASSIFICATION_TEMPLATES = ("What shape is in the image?", "Name the shape shown in the image.")


@dataclass(frozen=True)
class ObjectSpec:
    """One drawn object: its class and its tight box in image pixels (x2, y2 exclusive)."""

    colour: str
    shape: str
    box: tuple[int, int, int, int]
    rgb: tuple[int, int, int]  # the exact fill colour used

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class SceneSpec:
    """What to draw: the objects (colour, shape) in order, and how big and on what."""

    objects: tuple[Pair, ...]
    image_size: int = 112
    size_range: tuple[float, float] = TRAIN.size_range
    background: str = "plain"


@dataclass(frozen=True)
class Example:
    """One task instance in memory: the picture, its objects, the question and the answer."""

    image: Image.Image
    objects: tuple[ObjectSpec, ...]
    question: str  # without the <image> placeholder
    answer: object  # the ground truth as a JSON value
    task: str
    reward: str


# ----------------------------------------------------------------------------- drawing


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def _randint(rng: np.random.Generator, lo_hi: tuple[int, int]) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


def _background(rng: np.random.Generator, kind: str, size: int) -> Image.Image:
    base = rng.integers(215, 251, size=3)
    if kind == "plain":
        return Image.new("RGB", (size, size), tuple(int(v) for v in base))
    if kind == "noise":
        noise = rng.normal(0.0, 6.0, size=(size, size, 1))
        arr = np.clip(base[None, None, :] + noise, 190, 255)
    elif kind == "stripes":
        period = int(rng.integers(8, 17))
        other = np.clip(base - rng.integers(18, 30, size=3), 180, 255)
        yy, xx = np.mgrid[0:size, 0:size]
        band = ((xx + yy) // (period // 2)) % 2 == 1
        arr = np.where(band[..., None], other[None, None, :], base[None, None, :])
    else:
        raise ValueError(f"unknown background {kind!r}; expected one of {BACKGROUNDS}")
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x0: int, y0: int, s: int) -> None:
    """Draw ``shape`` filled with 255 inside the square of pixels x0..x0+s-1, y0..y0+s-1."""
    x1, y1 = x0 + s - 1, y0 + s - 1
    if shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=255)
    elif shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=255)
    elif shape == "triangle":
        draw.polygon([(x0 + (s - 1) / 2, y0), (x1, y1), (x0, y1)], fill=255)
    elif shape == "star":
        cx, cy, r = x0 + (s - 1) / 2, y0 + (s - 1) / 2, (s - 1) / 2
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else 0.45 * r
            ang = np.pi * k / 5
            pts.append((cx + rad * np.sin(ang), cy - rad * np.cos(ang)))
        draw.polygon(pts, fill=255)
    elif shape == "cross":
        t = max(2, round(s / 3))
        a = x0 + (s - t) // 2
        b = y0 + (s - t) // 2
        draw.rectangle([a, y0, a + t - 1, y1], fill=255)
        draw.rectangle([x0, b, x1, b + t - 1], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _place(rng: np.random.Generator, n: int, size: int, size_range: tuple[float, float]):
    """Non-overlapping squares (x, y, side) with a gap of ``_GAP``; None when it did not fit."""
    lo = max(6, round(size_range[0] * size))
    hi = max(lo, round(size_range[1] * size))
    placed: list[tuple[int, int, int]] = []
    for _ in range(n):
        for _try in range(100):
            s = int(rng.integers(lo, hi + 1))
            if s > size:
                return None
            x, y = (int(v) for v in rng.integers(0, size - s + 1, size=2))
            if all(
                x + s + _GAP <= px or px + ps + _GAP <= x or y + s + _GAP <= py or py + ps + _GAP <= y
                for px, py, ps in placed
            ):
                placed.append((x, y, s))
                break
        else:
            return None
    return placed


def make_scene(rng: np.random.Generator | int, spec: SceneSpec) -> tuple[Image.Image, list[ObjectSpec]]:
    """Draw ``spec`` with random placement, size and colour jitter from ``rng``.

    Returns the RGB image and one :class:`ObjectSpec` per ``spec.objects`` entry, in order,
    each with the exact tight box of its drawn pixels. Raises ValueError if the objects cannot
    be placed without overlap (too many or too large for the image).
    """
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    for colour, shape in spec.objects:
        if colour not in COLOURS or shape not in SHAPES:
            raise ValueError(f"unknown object {colour!r} {shape!r}; colours {tuple(COLOURS)}, shapes {SHAPES}")
    size = int(spec.image_size)
    image = _background(rng, spec.background, size)
    for _attempt in range(50):
        squares = _place(rng, len(spec.objects), size, spec.size_range)
        if squares is not None:
            break
    else:
        raise ValueError(f"cannot place {len(spec.objects)} objects of size {spec.size_range} in {size}px")
    objects = []
    for (colour, shape), (x, y, s) in zip(spec.objects, squares):
        jitter = rng.integers(-_COLOUR_JITTER, _COLOUR_JITTER + 1, size=3)
        rgb = tuple(int(v) for v in np.clip(np.array(COLOURS[colour]) + jitter, 0, 255))
        mask = Image.new("L", (size, size), 0)
        _draw_shape(ImageDraw.Draw(mask), shape, x, y, s)
        box = mask.getbbox()  # (left, upper, right, lower), right/lower exclusive
        image.paste(rgb, (0, 0), mask)
        objects.append(ObjectSpec(colour, shape, tuple(int(v) for v in box), rgb))
    return image, objects


# ----------------------------------------------------------------------------- tasks


def _others(rng, pairs, n, excluded) -> list[Pair]:
    pool = [p for p in pairs if not excluded(p)]
    return [_pick(rng, pool) for _ in range(n)] if pool else []


def _matches(query: str, value, pair: Pair) -> bool:
    colour, shape = pair
    return {"all": True, "shape": shape == value, "colour": colour == value, "pair": pair == value}[query]


def _query_value(query: str, pair: Pair):
    return {"all": None, "shape": pair[1], "colour": pair[0], "pair": pair}[query]


def _fill(template: str, query: str, value) -> str:
    colour = value[0] if query == "pair" else value if query == "colour" else ""
    shape = value[1] if query == "pair" else value if query == "shape" else ""
    return template.format(colour=colour, shape=shape, plural=PLURALS.get(shape, ""))


def _scene(rng, dom: Domain, objects: list[Pair], image_size: int):
    spec = SceneSpec(tuple(objects), image_size, dom.size_range, _pick(rng, dom.backgrounds))
    return make_scene(rng, spec)


def _rec(rng, dom: Domain, image_size: int):
    target = _pick(rng, dom.target_pairs)
    n = _randint(rng, dom.rec_distractors)
    objects = [target] + _others(rng, dom.distractor_pairs, n, lambda p: p == target)
    perm = rng.permutation(len(objects))
    objects = [objects[i] for i in perm]
    image, specs = _scene(rng, dom, objects, image_size)
    (ref,) = [o for o in specs if (o.colour, o.shape) == target]
    question = _pick(rng, REC_TEMPLATES).format(colour=target[0], shape=target[1])
    return image, specs, question, list(ref.box)


def _detection(rng, dom: Domain, image_size: int):
    query = _pick(rng, ("all", "shape", "colour", "pair"))
    anchor = _pick(rng, dom.target_pairs)
    n = _randint(rng, dom.detection_objects)
    objects = [anchor] + [_pick(rng, dom.distractor_pairs) for _ in range(n - 1)]
    value = _query_value(query, anchor)
    if query != "all" and rng.random() < dom.detection_empty_p:
        candidates = {
            "shape": SHAPES,
            "colour": tuple(COLOURS),
            "pair": dom.target_pairs,
        }[query]
        absent = [v for v in candidates if not any(_matches(query, v, p) for p in objects)]
        if absent:
            value = _pick(rng, absent)
    objects = [objects[i] for i in rng.permutation(len(objects))]
    image, specs = _scene(rng, dom, objects, image_size)
    hits = sorted((o for o in specs if _matches(query, value, (o.colour, o.shape))), key=lambda o: (o.box[1], o.box[0]))
    answer = [{"bbox_2d": list(o.box), "label": o.label} for o in hits]
    return image, specs, _fill(_pick(rng, DETECTION_TEMPLATES[query]), query, value), answer


def _counting(rng, dom: Domain, image_size: int):
    query = _pick(rng, ("shape", "colour", "pair"))
    value = _query_value(query, _pick(rng, dom.target_pairs))
    k = _randint(rng, dom.count_range)
    matching = [p for p in dom.target_pairs if _matches(query, value, p)]
    objects = [_pick(rng, matching) for _ in range(k)]
    objects += _others(rng, dom.distractor_pairs, _randint(rng, dom.count_others), lambda p: _matches(query, value, p))
    objects = [objects[i] for i in rng.permutation(len(objects))]
    image, specs = _scene(rng, dom, objects, image_size)
    answer = sum(_matches(query, value, (o.colour, o.shape)) for o in specs)
    return image, specs, _fill(COUNTING_TEMPLATES[query], query, value), int(answer)


def _classification(rng, dom: Domain, image_size: int):
    pair = _pick(rng, dom.target_pairs)
    image, specs = _scene(rng, dom, [pair], image_size)
    return image, specs, _pick(rng, CLASSIFICATION_TEMPLATES), pair[1]


_BUILDERS = {"rec": _rec, "detection": _detection, "counting": _counting, "classification": _classification}


# Below this size the ood split's smallest objects and distractors no longer fit (a 28 px image fails to place them).
MIN_IMAGE_SIZE = 32


def _check(task: str, split: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if split not in DOMAINS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")


def check_image_size_and_seed(image_size, seed, seed_name: str = "seed") -> None:
    """ValueError unless ``image_size`` is a whole number >= MIN_IMAGE_SIZE and ``seed`` a whole number >= 0."""
    for name, value, low in (("image_size", image_size, MIN_IMAGE_SIZE), (seed_name, seed, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")


def example_rng(task: str, split: str, index: int, seed: int = 0) -> np.random.Generator:
    """The random stream of one example: independent per (seed, task, split, index)."""
    _check(task, split)
    return np.random.default_rng([int(seed), TASKS.index(task), SPLITS.index(split), int(index)])


def make_example(task: str, split: str, index: int, seed: int = 0, image_size: int = 112) -> Example:
    """Build example ``index`` of ``task``/``split`` in memory (what :func:`write_split` writes)."""
    check_image_size_and_seed(image_size, seed)
    rng = example_rng(task, split, index, seed)
    image, specs, question, answer = _BUILDERS[task](rng, DOMAINS[split], int(image_size))
    return Example(image, tuple(specs), question, answer, task, task)


def split_file(out_dir, task: str, split: str) -> Path:
    """Where :func:`write_split` writes the JSONL of ``task``'s ``split`` in ``out_dir``."""
    return Path(out_dir) / f"{task}_{split}.jsonl"


def write_split(out_dir, task: str, split: str, n: int, seed: int = 0, image_size: int = 112) -> Path:
    """Write ``n`` examples as ``out_dir/images/{task}_{split}_{i:06d}.png`` and ``out_dir/{task}_{split}.jsonl``.

    Each JSONL line is ``{"image": "images/….png", "conversations": [{"from": "human", "value":
    "<image>question"}, {"from": "gpt", "value": <answer as a JSON value>}], "reward": name}``.
    Returns the JSONL path. Re-running with the same arguments rewrites identical bytes.
    """
    _check(task, split)
    check_image_size_and_seed(image_size, seed)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be a whole number >= 0, got {n!r}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jsonl = split_file(out, task, split)
    tmp = jsonl.with_name(jsonl.name + ".tmp")
    try:
        _write_rows(tmp, out, task, split, n, seed, image_size)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written JSONL is left behind (the images are rewritten next time)
        raise
    tmp.replace(jsonl)
    return jsonl


def _write_rows(tmp: Path, out: Path, task: str, split: str, n: int, seed: int, image_size: int) -> None:
    with open(tmp, "w", encoding="utf-8") as f:
        for i in range(int(n)):
            ex = make_example(task, split, i, seed, image_size)
            rel = f"images/{task}_{split}_{i:06d}.png"
            ex.image.save(out / rel, format="PNG")
            row = {
                "image": rel,
                "conversations": [
                    {"from": "human", "value": "<image>" + ex.question},
                    {"from": "gpt", "value": ex.answer},
                ],
                "reward": ex.reward,
            }
            f.write(json.dumps(row) + "\n")
