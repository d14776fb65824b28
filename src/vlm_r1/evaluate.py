"""Evaluation entry point: ``vlm-r1 eval --model_name_or_path CKPT --data test.jsonl [ood.jsonl ...]``.

Every row of every file is scored (no caps unless ``--max_samples`` is given): REC Acc@0.5 and mean IoU, detection
COCO mAP / AP50 (pycocotools), classification, multiple-choice, yes/no and counting accuracy. Greedy decoding by
default, batched; boxes are converted from the model's frame through its VLM module. With ``--output_dir`` each
file's metrics and per-row predictions go to ``<output_dir>/<file stem>.json``. A Grounding DINO checkpoint (zero-shot,
or trained by ``vlm-r1 grqo``) is scored on detection rows instead (:mod:`vlm_r1.grqo.detector_eval`). See
docs/evaluation.md.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import ModelArguments, check_model_args, loading_options
from .data import check_question_template, image_root_problem
from .evaluation.runner import TASKS, GenerationSettings
from .recipe import OptionError, RecipeParser, check_output_dir, refusing_options

logger = logging.getLogger("vlm_r1")


@dataclass
class EvalArguments:
    """What to evaluate and how to decode."""

    data: list[str] = field(default_factory=list, metadata={"help": "One or more JSONL files to evaluate, each on its own."})
    image_root: str | None = field(
        default=None, metadata={"help": "Folder image paths are relative to. Default: each JSONL file's folder."}
    )
    task: str = field(
        default="auto",
        metadata={"help": "auto (each row's `reward` column, else its ground truth's shape), rec, detection, counting, "
                          "classification, multiple_choice or yes_no."},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Write <output_dir>/<file stem>.json (metrics + per-row predictions)."}
    )
    question_template: str | None = field(
        default=None, metadata={"help": "Template wrapping each question ({question}). Default: the one the checkpoint "
                                         "was trained with (its vlm_r1_prompt.json), else the model module's."}
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System message for every prompt. Default: the one the checkpoint was trained "
                                         "with (its vlm_r1_prompt.json), else none."}
    )
    use_recorded_prompt: bool = field(
        default=True, metadata={"help": "false: ignore the checkpoint's vlm_r1_prompt.json; unset --question_template "
                                        "and --system_prompt then mean the model module's template and no system prompt."}
    )
    # the generation defaults are GenerationSettings' own
    batch_size: int = field(default=GenerationSettings.batch_size, metadata={"help": "Rows per generate() call."})
    max_new_tokens: int = field(default=GenerationSettings.max_new_tokens, metadata={"help": "Longest completion."})
    do_sample: bool = field(default=GenerationSettings.do_sample, metadata={"help": "Sample instead of greedy decoding."})
    temperature: float = field(default=GenerationSettings.temperature,
                               metadata={"help": "Sampling temperature (with do_sample)."})  # fmt: skip
    top_p: float = field(default=GenerationSettings.top_p, metadata={"help": "Nucleus sampling mass (with do_sample)."})
    num_samples: int = field(default=GenerationSettings.num_samples, metadata={
        "help": "Completions per row (needs do_sample); adds best_of_<k> to the metrics."})  # fmt: skip
    seed: int = field(default=GenerationSettings.seed, metadata={"help": "Sampling seed."})
    max_samples: int | None = field(default=None, metadata={"help": "Evaluate only the first N rows of each file."})
    device: str = field(default="auto", metadata={"help": "auto (cuda if available), cpu, cuda, cuda:1, ..."})
    disable_tqdm: bool = field(default=False, metadata={"help": "No progress bar (one per data file, in rows)."})
    allow_images_outside_root: bool = field(
        default=False, metadata={"help": "Allow image paths that resolve outside image_root."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run a checkpoint's own Python code (only for checkpoints you trust)."}
    )
    classes: list[str] = field(default_factory=list, metadata={
        "help": "Detector checkpoints only: the class names prompted for every image, in order. Default: the ones "
                "the checkpoint was trained with (its vlm_r1_classes.json), else none; each file's other labels are "
                "appended, sorted."})  # fmt: skip


def check_eval_output(output_dir: str, data: list[str]) -> None:
    """Refuse an ``output_dir`` where a result file (``<file stem>.json``) would replace something that is not an
    earlier evaluation's result: a data file, a checkpoint's ``config.json``, a folder. Before anything loads."""
    check_output_dir(output_dir)
    inputs = {Path(p).resolve() for p in data}
    for path in data:
        target = Path(output_dir) / f"{Path(path).stem}.json"
        if target.resolve() in inputs:
            raise OptionError(f"--output_dir {output_dir}: the result of {path} would be written over the data file "
                              f"{target}; choose another --output_dir")
        if target.is_dir() or target.exists() and not _is_evaluation_result(target):
            kind = "a folder" if target.is_dir() else "a file that is no evaluation result"
            raise OptionError(f"--output_dir {output_dir}: {target} is {kind}, and the result of {path} would replace "
                              "it; choose another --output_dir")


def how_it_was_read(model: str, data: str, model_options: dict, device: str, image_root: str | None) -> dict:
    """The part of an evaluation result that says what was evaluated and how it was read (``vlm-r1 eval``, a
    detector's eval and the pipeline's evaluations record the same): ``model`` (a local folder as an absolute path,
    the result may be read from elsewhere; a hub id as given), ``data`` (absolute), the loading options set away
    from their defaults, the device, the image root."""
    return {"model": str(Path(model).resolve()) if Path(model).is_dir() else model, "data": str(Path(data).resolve()),
            "model_options": model_options, "device": str(device), "image_root": image_root}


def _is_evaluation_result(path: Path) -> bool:
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(result, dict) and {"metrics", "predictions", "model", "data"} <= set(result)


def check_eval_args(model_args: ModelArguments, args: EvalArguments) -> GenerationSettings:
    """Refuse options evaluation would ignore (model options: :func:`vlm_r1.config.check_model_args`, sampling
    options without ``do_sample``); return the generation settings."""
    check_model_args(model_args, training=False)
    if not args.data:
        raise ValueError("data is required: one or more JSONL files")
    if problem := image_root_problem(args.image_root):
        raise ValueError(problem)
    if len({Path(path).stem for path in args.data}) < len(args.data):
        raise ValueError("data files must have distinct names (results are keyed by file stem)")
    if args.task != "auto" and args.task not in TASKS:
        raise ValueError(f"task must be auto or one of {', '.join(TASKS)}, got {args.task!r}")
    if args.max_samples is not None and args.max_samples < 1:
        raise ValueError("max_samples must be >= 1")
    if args.question_template is not None:
        check_question_template(args.question_template)
    return GenerationSettings(
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        num_samples=args.num_samples,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
    )


def parse_args(argv: list[str] | None = None):
    """``(model_args, eval_args, generation_settings)``; ValueError for options that would be ignored."""
    parser = RecipeParser((ModelArguments, EvalArguments), prog="vlm-r1 eval", description=__doc__.split("\n\n")[0])
    with refusing_options():
        model_args, args = parser.parse_args_and_config(argv)
        return model_args, args, check_eval_args(model_args, args)


def format_table(results: dict[str, dict]) -> str:
    """One line per (file, task) with the metrics that matter most."""
    lines = []
    for name, result in results.items():
        for task, m in result["metrics"].items():
            keys = [k for k in m if k not in {"n"} and isinstance(m[k], float)]
            if task == "detection":
                keys = [k for k in ("mAP", "AP50", "AP75", "answered") if k in m]
            body = ", ".join(f"{k} {m[k]:.4f}" for k in keys)
            lines.append(f"{name:<16} {task:<15} n={m.get('n', m.get('n_images'))}  {body}")
    return "\n".join(lines)


def eval_prompt(checkpoint: str, question_template: str | None, system_prompt: str | None, use_recorded: bool = True):
    """``(question_template, system_prompt)`` to evaluate with: each one given on the command line, else the one the
    checkpoint was trained with (its ``vlm_r1_prompt.json``, unless ``use_recorded`` is false), else the model
    family's default template (None here) and no system prompt. A given one that differs from the recorded one is
    used, with a warning."""
    from .checkpoints import CheckpointError
    from .data import PROMPT_FILE, read_prompt

    if not use_recorded or not Path(checkpoint).is_dir():  # a hub id records no prompt of ours
        logger.info("prompt: question_template %s, system_prompt %r%s",
                    "the model family's default" if question_template is None else repr(question_template),
                    system_prompt, "" if use_recorded else " (use_recorded_prompt false)")  # fmt: skip
        return question_template, system_prompt
    try:
        recorded = read_prompt(checkpoint)
    except CheckpointError as e:
        if question_template is None or system_prompt is None:
            raise CheckpointError(f"{e}: repair it, or evaluate without it: --use_recorded_prompt false with "
                                  "--question_template (and --system_prompt, if the run had one)") from e
        logger.warning("%s; evaluating with the prompt given", e)
        recorded = None
    if recorded is None:
        logger.info("%s records no training prompt (%s): question_template %s, system_prompt %r", checkpoint,
                    PROMPT_FILE, "the model family's default" if question_template is None else repr(question_template),
                    system_prompt)  # fmt: skip
        return question_template, system_prompt
    for name, given in (("question_template", question_template), ("system_prompt", system_prompt)):
        if given is not None and given != recorded[name]:
            logger.warning("--%s %r differs from the %r %s was trained with; evaluating with the one given",
                           name, given, recorded[name], checkpoint)
    template = recorded["question_template"] if question_template is None else question_template
    system = recorded["system_prompt"] if system_prompt is None else system_prompt
    trained = f"trained with, from {PROMPT_FILE}"
    logger.info("prompt: question_template %r (%s), system_prompt %r (%s)",
                template, trained if question_template is None else "from --question_template",
                system, trained if system_prompt is None else "from --system_prompt")  # fmt: skip
    return template, system


def pick_device(name: str) -> str:
    """The torch device to evaluate on: "auto" is cuda when one is available, else cpu. :class:`OptionError` for a
    name torch does not know, or a device this machine does not have (found before anything is loaded)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(f"--device {name} is not a device torch knows: use cpu, cuda, cuda:0, mps ...") from None
    backend = getattr(torch, device.type, None)
    if device.type != "cpu" and not getattr(backend, "is_available", lambda: False)():
        raise OptionError(f"--device {name}: no {device.type.upper()} device is available here")
    count = getattr(backend, "device_count", None)
    if device.type != "cpu" and device.index is not None and count is not None and device.index >= count():
        raise OptionError(f"--device {name}: this machine has {count()} {device.type.upper()} device(s), "
                          f"{device.type}:0 to {device.type}:{count() - 1}")
    return name


def read_data(paths: list[str], image_root: str | None, allow_outside_root: bool, validate_solution) -> dict[str, list]:
    """Every row of every file, checked as :func:`vlm_r1.data.load_rows` checks them and with
    ``validate_solution(reward, ground_truth)``; one :class:`DataError` lists every problem of every file."""
    from .data import DataError, check_rows

    reports = [check_rows(path, image_root, allow_outside_root=allow_outside_root, validate_solution=validate_solution)
               for path in paths]  # fmt: skip
    bad = [r for r in reports if r.problems]
    if bad:
        header = "; ".join(f"{r.path}: {r.n_rows - len(r.samples)} of {r.n_rows} rows are invalid" for r in bad)
        raise DataError.from_problems([p for r in bad for p in r.problems], f"{header} (nothing was evaluated):")
    return {path: r.samples for path, r in zip(paths, reports)}


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    from .train import quiet_library_deprecations

    quiet_library_deprecations()
    model_args, args, settings = parse_args(argv)
    device = pick_device(args.device)

    from tqdm.auto import tqdm

    from .evaluation.runner import check_inputs, evaluate_samples, row_task, write_json
    from .grqo.loading import is_detector_checkpoint
    from .loading import check_model_options, load_policy

    if is_detector_checkpoint(model_args.model_name_or_path, model_args.model_revision, args.trust_remote_code):
        from .grqo.detector_eval import evaluate_detector

        results = evaluate_detector(model_args, args, device)
        print(format_table(results))
        return results
    if args.classes:
        raise OptionError("classes only applies to a detector checkpoint (Grounding DINO); a VLM reads each row's "
                          "question: drop --classes")
    check_model_options(model_args, args.trust_remote_code)  # before the data: a refused option costs nothing
    if args.output_dir:
        check_eval_output(args.output_dir, args.data)
    rows = read_data(args.data, args.image_root, args.allow_images_outside_root,
                     lambda reward, value: row_task(reward, value, args.task))  # before the model loads
    if args.max_samples is not None:
        rows = {path: samples[: args.max_samples] for path, samples in rows.items()}

    template, system_prompt = eval_prompt(model_args.model_name_or_path, args.question_template, args.system_prompt,
                                          args.use_recorded_prompt)
    model, processor, module = load_policy(model_args, trust_remote_code=args.trust_remote_code)
    check_inputs(module, processor, [s for samples in rows.values() for s in samples], template, system_prompt)
    model.to(device)
    results = {}
    for path, samples in rows.items():
        name = Path(path).stem
        with tqdm(total=len(samples), desc=name, unit="row", disable=args.disable_tqdm) as bar:
            result = evaluate_samples(model, processor, module, samples, template, system_prompt, settings, args.task,
                                      progress=lambda done, total: bar.update(done - bar.n), checked=True)  # fmt: skip
        result.update(how_it_was_read(model_args.model_name_or_path, path, loading_options(model_args), device,
                                      args.image_root))
        if args.output_dir:
            out = write_json(result, Path(args.output_dir) / f"{name}.json")
            logger.info("%s: wrote %s", name, out)
        results[name] = result
        logger.info("%s: %d rows in %.1f s", name, len(samples), result["generation"]["seconds"])
    print(format_table(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
