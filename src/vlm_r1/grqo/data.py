"""Detection examples from the project's JSONL rows, and model batches for Grounding DINO.

A detection row (docs/contracts.md) has one image and a gpt value
`[{"bbox_2d": [x1, y1, x2, y2], "label": "red circle"}, ...]` in pixels of the original image.
Rows are read and validated by `vlm_r1.data.load_rows`, ground truth by the reward library's detection
validator (`det_map`'s), so a bad row is refused at load time as `file:line: solution: ...`; here they
become `DetectionExample`s. Labels and class names are compared in `normalize_label` form (NFKC,
casefold, single spaces), and images are decoded by `vlm_r1.data.load_image` (pixel limit, RGB).

A batch prompts every image with the same closed list of class names, joined Grounding-DINO
style ("red circle. blue square."), so that an object's class index is the position of its label
in that list and transformers' `build_label_maps` recovers each class's prompt tokens. Boxes go to
the model as (cx, cy, w, h) normalised by the original image size (the processor keeps the aspect
ratio, so the normalised frame is the same before and after resizing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.ops import box_convert

from vlm_r1.data import DataError
from vlm_r1.rewards import validate_solution
from vlm_r1.rewards.parsing import normalize_label


MODEL_INPUT_KEYS = ("pixel_values", "pixel_mask", "input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True)
class DetectionExample:
    """One image with its ground-truth boxes ([x1, y1, x2, y2] original pixels) and labels."""

    image: str
    width: int
    height: int
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[str, ...]
    source: str = ""
    prompt: str = ""  # the row's human text


def check_detection_truth(_reward, value) -> None:
    """`load_rows`' validate_solution: every row must be detection ground truth, whatever its reward column, and
    every label must be usable as a class name of the prompt (the error's `field` names the object)."""
    validate_solution("det_map", value)
    for i, obj in enumerate(value):
        if not _usable_name(normalize_label(obj["label"])):
            error = ValueError(f"label {obj['label']!r} contains '.' or '?', where Grounding DINO splits its prompt "
                               "into phrases: rename it")  # fmt: skip
            error.field = f"solution[{i}].label"
            raise error


def _usable_name(name: str) -> bool:
    return bool(name) and "." not in name and "?" not in name


def examples_from_samples(samples) -> list[DetectionExample]:
    """Turn `vlm_r1.data.Sample`s of the detection task into `DetectionExample`s (one image each); DataError naming
    `file:line: field` for a row that is not one."""
    out = []
    for s in samples:
        if len(s.images) != 1:
            raise DataError(f"{s.source}: image: a detection row needs exactly one image, got {len(s.images)}")
        objects = json.loads(s.solution)
        try:
            check_detection_truth(None, objects)
        except ValueError as e:
            raise DataError(f"{s.source}: {getattr(e, 'field', 'solution')}: {e}") from None
        width, height = s.image_sizes[0]
        boxes = [tuple(float(v) for v in obj["bbox_2d"]) for obj in objects]
        labels = [normalize_label(obj["label"]) for obj in objects]
        out.append(DetectionExample(s.images[0], int(width), int(height), tuple(boxes), tuple(labels), s.source,
                                    s.problem))  # fmt: skip
    return out


def load_detection_examples(jsonl_path, image_root=None, allow_outside_root: bool = False) -> list[DetectionExample]:
    """Read a detection JSONL through the project's row loader (`vlm_r1.data.load_rows`)."""
    from vlm_r1.data import load_rows

    return examples_from_samples(load_rows(jsonl_path, image_root, validate_solution=check_detection_truth,
                                           allow_outside_root=allow_outside_root))


def write_synthetic_detection(out_dir, split: str, n: int, seed: int = 0, image_size: int = 112) -> Path:
    """`n` exhaustively labelled rows of `vlm_r1.synthetic`'s detection task, as `grqo_detection_{split}.jsonl`.

    The synthetic detection questions ask for a subset ("Detect every star.") and label only that
    subset, so prompting every class would turn the unasked objects into false negatives of the
    ground truth. GRQO / supervised Grounding DINO training needs every object of a prompted
    class boxed, so only rows asking for every object are kept (about one in four); rows come
    from `write_split` (more are generated until `n` qualify) into the subfolder `grqo_source_{split}/`, so a
    `detection_{split}.jsonl` of `vlm-r1 make-data` in `out_dir` is left alone; the kept rows point at its images.
    """
    from vlm_r1.synthetic import DETECTION_TEMPLATES, write_split

    exhaustive = {"<image>" + q for q in DETECTION_TEMPLATES["all"]}
    out = Path(out_dir)
    source_dir = f"grqo_source_{split}"
    kept: list[dict] = []
    generated = 0
    while len(kept) < n:
        generated = max(4 * n + 16, 2 * generated)
        source = write_split(out / source_dir, "detection", split, generated, seed, image_size)
        rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
        kept = [row for row in rows if row["conversations"][0]["value"] in exhaustive][:n]
    path = out / f"grqo_detection_{split}.jsonl"
    lines = [json.dumps({**row, "image": f"{source_dir}/{row['image']}"}) for row in kept]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def class_names(examples, base: tuple[str, ...] | list[str] = ()) -> list[str]:
    """`base` followed by every other label seen in `examples`, sorted (stable class ids); all `normalize_label`d."""
    base = [normalize_label(c) for c in base]
    extra = sorted({normalize_label(lab) for e in examples for lab in e.labels} - set(base))
    return [*base, *extra]


def check_classes(classes) -> list[str]:
    """The prompt's class names, normalised; ValueError for empty or duplicate names or ones with '.' / '?'
    (Grounding DINO splits the prompt into phrases at those, which would shift every later class id)."""
    names = [normalize_label(c) for c in classes]
    bad = [c for c, n in zip(classes, names) if not _usable_name(n)]
    if bad:
        raise ValueError(f"class names must be non-empty and contain no '.' or '?': {bad}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate class names (after normalize_label): {names}")
    return names


def check_prompt(classes, processor, max_text_len: int | None = None) -> list[str]:
    """`check_classes`, then with the model's tokenizer: ValueError for a name that gives no tokens (the prompt
    would split into fewer phrases than classes, shifting every later class id) and for a prompt longer than
    `max_text_len` tokens (the model would cut it). Returns the normalised names."""
    classes = _check_tokens(check_classes(classes), processor)
    if max_text_len is not None:
        _check_prompt_length(classes, len(processor(text=[classes])["input_ids"][0]), max_text_len)
    return classes


def _check_tokens(classes: list[str], processor) -> list[str]:
    tokenless = [c for c in classes if not processor.tokenizer(c, add_special_tokens=False)["input_ids"]]
    if tokenless:
        raise ValueError(f"class names {tokenless} give no tokens (the tokenizer drops their characters): rename them")
    return classes


def _check_prompt_length(classes: list[str], length: int, max_text_len: int | None) -> None:
    if max_text_len is not None and length > max_text_len:
        raise ValueError(f"the prompt of {len(classes)} classes is {length} tokens, more than the model's "
                         f"max_text_len {max_text_len}: use fewer classes or a model with a longer text input")


def make_batch(examples, processor, classes, max_text_len: int | None = None) -> dict:
    """Model inputs (+ `labels` for the supervised loss) for a list of examples; the classes pass `check_prompt`.

    Returns a dict with pixel_values, pixel_mask, input_ids, attention_mask, token_type_ids and
    labels = [{"class_labels": (G,), "boxes": (G, 4) cxcywh in [0, 1]}] per image.
    """
    from vlm_r1.data import load_row_images

    classes = check_classes(classes)
    index = {name: i for i, name in enumerate(classes)}
    images = [image for e in examples for image in load_row_images([e.image], e.source)]
    _check_tokens(classes, processor)  # check_prompt's checks, the length read from the batch
    inputs = processor(images=images, text=[classes] * len(examples), return_tensors="pt")
    _check_prompt_length(classes, inputs["input_ids"].shape[1], max_text_len)
    labels = []
    for e in examples:
        names = [normalize_label(lab) for lab in e.labels]
        missing = [lab for lab in names if lab not in index]
        if missing:
            raise ValueError(f"{e.source}: labels {missing} are not among the prompt's classes")
        boxes = torch.tensor(e.boxes, dtype=torch.float32).reshape(-1, 4)
        scale = torch.tensor([e.width, e.height, e.width, e.height], dtype=torch.float32)
        xyxy = (boxes / scale).clamp(0, 1)
        labels.append({"class_labels": torch.tensor([index[lab] for lab in names], dtype=torch.long),
                       "boxes": box_convert(xyxy, "xyxy", "cxcywh")})  # fmt: skip
    batch = dict(inputs)
    batch["labels"] = labels
    return batch
