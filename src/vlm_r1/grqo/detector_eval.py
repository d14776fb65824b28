"""`vlm-r1 eval` on a Grounding DINO checkpoint: zero-shot from the hub, or trained by `vlm-r1 grqo`.

Each file's rows must be detection rows (docs/contracts.md). Every image is prompted with the same class list: the
classes the checkpoint was trained with (its `vlm_r1_classes.json`, written by `vlm-r1 grqo`), or `--classes`, followed
by every other label of the file, sorted, so every category with ground truth is queried (nothing is pre-filtered).
The metrics are the project's COCO evaluator's (`vlm_r1.evaluation.detection.coco_metrics`, pycocotools), as in
GRQO's own evaluation. Options only a VLM reads (prompt, decoding, image resolution) are refused, not ignored.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from vlm_r1.recipe import OptionError

logger = logging.getLogger("vlm_r1")

# EvalArguments and ModelArguments fields a detector evaluation does not read: set away from their defaults, refused
VLM_ONLY_EVAL_OPTIONS = ("question_template", "system_prompt", "use_recorded_prompt", "max_new_tokens", "do_sample",
                         "temperature", "top_p", "num_samples", "seed")  # fmt: skip
VLM_ONLY_MODEL_OPTIONS = ("dtype", "attn_implementation", "min_pixels", "max_pixels", "max_tiles")


def refuse_vlm_options(model_args, args) -> None:
    """OptionError naming every option set that a detector evaluation would ignore."""
    from vlm_r1.config import ModelArguments
    from vlm_r1.evaluate import EvalArguments

    eval_defaults, model_defaults = EvalArguments(), ModelArguments()
    changed = [n for n in VLM_ONLY_EVAL_OPTIONS if getattr(args, n) != getattr(eval_defaults, n)]
    changed += [n for n in VLM_ONLY_MODEL_OPTIONS if getattr(model_args, n) != getattr(model_defaults, n)]
    if args.task not in ("auto", "detection"):
        changed.append(f"task {args.task}")
    if changed:
        raise OptionError(f"{model_args.model_name_or_path} is a detector checkpoint (Grounding DINO), scored on "
                          f"detection rows with a class-list prompt; it does not read {', '.join(changed)}, which only "
                          "VLM checkpoints take: drop them")  # fmt: skip


def prompt_classes(checkpoint: str, given: list[str]) -> list[str]:
    """The class names every prompt starts with: `given`, else the ones the checkpoint records, else none."""
    from .checkpointing import CLASSES_FILE, read_classes
    from .data import check_classes

    from vlm_r1.checkpoints import CheckpointError

    if given:
        try:
            classes = check_classes(given)
        except ValueError as e:
            raise OptionError(f"--classes: {e}") from None
        try:
            recorded = read_classes(checkpoint) if Path(checkpoint).is_dir() else None
        except CheckpointError as e:  # the given classes replace the record: only say it cannot be compared
            logger.warning("%s; evaluating with --classes", e)
            recorded = None
        if recorded is not None and classes != recorded:
            logger.warning("--classes %s differs from the %s %s was trained with; evaluating with the one given",
                           classes, recorded, checkpoint)  # fmt: skip
        return classes
    recorded = read_classes(checkpoint) if Path(checkpoint).is_dir() else None
    if recorded is None:
        logger.info("%s records no training classes (%s): each file's labels are prompted, sorted", checkpoint,
                    CLASSES_FILE)  # fmt: skip
        return []
    logger.info("prompt classes: %s (trained with, from %s)", recorded, CLASSES_FILE)
    return recorded


def evaluate_detector(model_args, args, device: str) -> dict[str, dict]:
    """Score each of `args.data` (EvalArguments) with the detector `model_args.model_name_or_path`; write
    `<output_dir>/<file stem>.json` when asked. Returns {file stem: result}; each result holds "metrics"
    ({"detection": COCO metrics}), "classes" (the prompt), "seconds", and per-image "predictions"."""
    from tqdm.auto import tqdm

    from vlm_r1.data import DataError
    from vlm_r1.config import loading_options
    from vlm_r1.evaluate import check_eval_output, how_it_was_read, read_data
    from vlm_r1.evaluation.detection import coco_metrics
    from vlm_r1.evaluation.runner import write_json

    from .coco_eval import ground_truth, predict_detections
    from .data import check_detection_truth, check_prompt, class_names, examples_from_samples
    from .loading import detector_config, load_detector

    refuse_vlm_options(model_args, args)
    config = detector_config(model_args.model_name_or_path, model_args.model_revision, args.trust_remote_code)
    if args.output_dir:
        check_eval_output(args.output_dir, args.data)
    base = prompt_classes(model_args.model_name_or_path, args.classes)
    def detection_rows_only(reward, value) -> None:
        try:
            check_detection_truth(reward, value)
        except ValueError as e:
            field = getattr(e, "field", "solution")
            e = ValueError(f"a detector is scored on detection rows only; {e}")
            e.field = field
            raise e from None

    rows = read_data(args.data, args.image_root, args.allow_images_outside_root, detection_rows_only)
    files = {path: examples_from_samples(samples)[: args.max_samples] for path, samples in rows.items()}
    for path, examples in files.items():
        if not class_names(examples, base):
            raise DataError(f"{path}: no row holds a labelled object and no classes are given, so the prompt would "
                            "name nothing: give --classes")  # fmt: skip

    model, processor = load_detector(model_args.model_name_or_path, model_args.model_revision, args.trust_remote_code)
    prompts = {}
    for path, examples in files.items():  # every prompt against the tokenizer, before any image is scored
        try:
            prompts[path] = check_prompt(class_names(examples, base), processor, config.max_text_len)
        except ValueError as e:
            raise OptionError(f"{path}: {e}") from None
    model.to(device)

    results = {}
    for path, examples in files.items():
        name, classes = Path(path).stem, prompts[path]
        start = time.perf_counter()
        with tqdm(total=len(examples), desc=name, unit="image", disable=args.disable_tqdm) as bar:
            detections = predict_detections(model, processor, examples, classes, args.batch_size,
                                            progress=lambda done, total: bar.update(done - bar.n))  # fmt: skip
        result = {
            "metrics": {"detection": coco_metrics(ground_truth(examples), detections)},
            "n": len(examples),
            "classes": classes,
            "seconds": time.perf_counter() - start,
            **how_it_was_read(model_args.model_name_or_path, path, loading_options(model_args), device,
                              args.image_root),
            "predictions": [
                {"source": e.source, "image": e.image,
                 "solution": [{"bbox_2d": list(box), "label": label} for box, label in zip(e.boxes, e.labels)],
                 "boxes": d.boxes, "labels": d.labels, "scores": d.scores}
                for e, d in zip(examples, detections)
            ],
        }  # fmt: skip
        if args.output_dir:
            logger.info("%s: wrote %s", name, write_json(result, Path(args.output_dir) / f"{name}.json"))
        logger.info("%s: %d images in %.1f s", name, len(examples), result["seconds"])
        results[name] = result
    return results
