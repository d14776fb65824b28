"""The default job (``vlm-r1 pipeline``, ``bash run_scripts/grpo_rec.sh``): GRPO that visibly learns, on a CPU.

Stages, each cached in ``--work_dir`` so a second run skips what is done. Beside each stage's output a stamp (JSON of
the inputs that decide it: data parameters, checkpoint, recipe path and content hash, arguments) is written; a stage
whose stamp differs from this run's inputs is redone, and so is everything after it.

1. **data**: synthetic REC splits (``vlm_r1.synthetic``): ``train``, in-domain ``test``, and two out-of-domain
   splits: ``ood_pairs`` (held-out colour-shape pairs) and ``ood`` (those pairs, smaller, on stripes, more distractors).
2. **warm start**: a tiny model that already answers. In order of preference: ``--warm_start PATH``; the
   checkpoint shipped under ``data/warm_start/tiny_qwen2_vl_rec`` when the repository has one (made by
   ``run_scripts/make_warm_start.sh``; its ``warm_start.json`` names the image size it was trained at, and another
   ``--image_size`` is refused); one cached in the work dir; otherwise built here: ``make_tiny`` + ``vlm-r1 sft``
   with ``recipes/tiny/rec_sft.yaml``.
3. **before**: greedy evaluation of the warm start on ``test``, ``ood_pairs`` and ``ood`` (every row), with the question template,
   system prompt and loading options (image resolution, dtype, attention) GRPO uses (the GRPO recipe plus ``--grpo_args``).
4. **GRPO**: :func:`vlm_r1.train.main` with ``recipes/tiny/rec_grpo.yaml`` from the warm start.
5. **after**: the same evaluation of the GRPO checkpoint (a LoRA recipe's adapter merged into the warm start first,
   in ``grpo_merged/``), and a table with paired differences (95% bootstrap
   intervals over rows), written to ``<work_dir>/summary.json`` and printed.

Nothing in the table is typed in: every number is measured by this run (see docs/default_job.md for what to expect).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .recipe import only_apply
from .tiny.tokenizer import MODEL_TYPES

logger = logging.getLogger("vlm_r1")

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "recipes" / "tiny"
EVAL_SPLITS = ("test", "ood_pairs", "ood")  # in-domain; held-out colour-shape pairs; pairs + size/background shift
SHIPPED_WARM_START = REPO / "data" / "warm_start" / "tiny_qwen2_vl_rec"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vlm-r1 pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", default="outputs/default_job", help="where data, checkpoints and results go")
    p.add_argument("--warm_start", default="auto",
                   help="auto (shipped, else cached, else built by SFT), a checkpoint folder, or 'build' to force SFT")
    p.add_argument("--model_type", default="qwen2_vl", choices=MODEL_TYPES,
                   help="tiny model family when the warm start is built")
    p.add_argument("--n_train", type=int, default=4000, help="training rows (GRPO prompts; SFT when building)")
    p.add_argument("--n_test", type=int, default=1000, help="rows of each evaluation split (test, ood_pairs, ood)")
    p.add_argument("--image_size", type=int, default=112,
                   help="side of the synthetic images in pixels (the shipped warm start was trained at 112)")
    p.add_argument("--data_seed", type=int, default=0)
    p.add_argument("--sft_recipe", default=str(RECIPES / "rec_sft.yaml"))
    p.add_argument("--grpo_recipe", default=str(RECIPES / "rec_grpo.yaml"))
    p.add_argument("--sft_args", nargs=argparse.REMAINDER, default=[],
                   help="extra `vlm-r1 sft` flags (must come last; e.g. --sft_args --max_steps 100)")
    p.add_argument("--grpo_max_steps", type=int, default=None, help="override the GRPO recipe's max_steps")
    p.add_argument("--grpo_args", nargs="*", default=[],
                   help="extra `vlm-r1 train` flags as KEY=VALUE pairs, e.g. learning_rate=1e-5; a list option takes "
                        "its values separated by spaces, quoted: \"reward_funcs=iou_acc think_format\" "
                        "(question_template, system_prompt and the loading options min_pixels, max_pixels, max_tiles, "
                        "dtype and attn_implementation set here are used by the evaluations too)")
    p.add_argument("--eval_batch_size", type=int, default=64)
    p.add_argument("--max_new_tokens", type=int, default=40)
    p.add_argument("--skip_grpo", action="store_true",
                   help="stop after the 'before' evaluation (GRPO-only options are then refused)")
    p.add_argument("--force", action="store_true", help="redo GRPO and the evaluations even if their stamps match")
    return p


# `vlm-r1 train` options the pipeline sets itself (from --grpo_recipe, --warm_start and --work_dir)
PIPELINE_OWNED = {"config": "--grpo_recipe", "model_name_or_path": "--warm_start",
                  "train_data": "--n_train / --data_seed", "output_dir": "--work_dir",
                  "resume_from_checkpoint": "the same command again (an interrupted stage resumes from its latest "
                                            "checkpoint)"}


# `vlm-r1 sft` options the pipeline sets itself when it builds the warm start
SFT_OWNED = {**PIPELINE_OWNED, "config": "--sft_recipe", "model_name_or_path": "--model_type"}


def check_sft_args(args, work: Path) -> None:
    """Refuse ``--sft_args`` that set what the pipeline sets (SFT_OWNED), and check the rest as `vlm-r1 sft` would,
    before the first stage runs."""
    from .sft import parse_args

    ours = set(build_parser()._option_string_actions) - {"-h", "--help"}
    swallowed = [arg for arg in args.sft_args if arg.partition("=")[0] in ours]
    if swallowed:
        raise ValueError(f"--sft_args takes every argument after it, so {' '.join(swallowed)} went to vlm-r1 sft: "
                         "put the pipeline's own options before --sft_args")
    keys = [option_key(arg) for arg in args.sft_args if arg.startswith("--")]
    for key in keys:
        if key in SFT_OWNED:
            raise ValueError(f"--sft_args --{key}: the pipeline sets {key} itself; use {SFT_OWNED[key]}")
    parse_args(["--config", args.sft_recipe, "--model_name_or_path", "tiny", "--train_data", "train.jsonl",
                "--output_dir", str(built_warm_start_dir(work)), *args.sft_args])  # fmt: skip


def option_key(arg: str) -> str:
    """The option an argument names, as its field is spelt: ``--max-steps=5`` and ``max_steps`` are ``max_steps`` (the
    parsers take both spellings, so a check on one must see the other)."""
    return arg.lstrip("-").partition("=")[0].replace("-", "_")


def list_fields() -> set[str]:
    """The `vlm-r1 train` options that take several values (reward_funcs, reward_weights, ...)."""
    from .config import DataArguments, ModelArguments, VLMGRPOConfig
    from .recipe import RecipeParser

    parser = RecipeParser((DataArguments, ModelArguments, VLMGRPOConfig))
    return {action.dest for action in parser._actions if action.nargs in ("+", "*")}


def key_value_args(pairs: list[str]) -> list[str]:
    """``KEY=VALUE`` pairs (``--grpo_args``) as command-line options ``--KEY VALUE``. The value of an option that
    takes several values is split at spaces (``"reward_funcs=iou_acc think_format"``); other values are kept whole
    (``"question_template=Where is it? {question}"``). A key given twice, or one the pipeline sets, is refused."""
    out, seen, several = [], set(), None
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = option_key(key)
        if not sep or not key:
            raise ValueError(f"--grpo_args takes KEY=VALUE pairs, got {pair!r}")
        if key in PIPELINE_OWNED:
            raise ValueError(f"--grpo_args {key}=...: the pipeline sets {key} itself; use {PIPELINE_OWNED[key]}")
        if key in seen:
            raise ValueError(f"--grpo_args: {key} is given twice; keep one")
        seen.add(key)
        several = list_fields() if several is None else several
        out += [f"--{key}", *(value.split() if key in several else [value])]
    return out


# ---------------------------------------------------------------------------------------------------- stamps
def file_id(path) -> dict:
    """A file's resolved path and sha256 (recipes, JSONL splits: small files)."""
    path = Path(path).resolve()
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def checkpoint_id(path) -> dict:
    """A checkpoint folder's resolved path and the size and mtime of each of its files (a retrained one differs)."""
    path = Path(path).resolve()
    files = {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(path.iterdir()) if f.is_file()}
    return {"path": str(path), "files": files}


def is_fresh(stamp: Path, inputs: dict) -> bool:
    """True when ``stamp`` holds exactly ``inputs`` (written by :func:`write_stamp` when the stage finished)."""
    try:
        return json.loads(stamp.read_text()) == json.loads(json.dumps(inputs))
    except (OSError, ValueError):
        return False


def write_stamp(stamp: Path, inputs: dict) -> None:
    """Write ``stamp`` whole or not at all (a stamp cut short would redo a finished stage)."""
    stamp.parent.mkdir(parents=True, exist_ok=True)
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(json.dumps(inputs, indent=1))
    tmp.replace(stamp)


def run_stage_in(out: Path, inputs: dict, force: bool, run, outputs_in: Path | None = None) -> Path:
    """Run a training stage (``run()``) into ``out``, cached: reused when its DONE stamp holds ``inputs`` and the
    files it finished with, in ``out`` or in ``outputs_in`` (a deleted or rewritten weight file redoes it); resumed
    when an interrupted run was started with the same ``inputs`` (its STARTED stamp; the stage's command resumes its
    latest checkpoint-N); otherwise, or with ``force``, deleted and redone from scratch, so no checkpoint-N made with
    other inputs is ever resumed."""
    done_stamp, started = out / "DONE", out / "STARTED"
    outputs_in = outputs_in or out
    if not force and outputs_in.is_dir() and is_fresh(done_stamp, {**inputs, "outputs": _outputs_id(outputs_in)}):
        return out
    if out.exists() and (force or done_stamp.exists() or not is_fresh(started, inputs)):
        checkpoints = sorted(p.name for p in out.glob("checkpoint-*"))
        if checkpoints and not done_stamp.exists():
            print(f"deleting {out} ({', '.join(checkpoints)}): an interrupted run with other inputs"
                  f"{' (--force)' if force else ''}; this one starts from scratch")  # fmt: skip
        shutil.rmtree(out)
    write_stamp(started, inputs)
    run()
    write_stamp(done_stamp, {**inputs, "outputs": _outputs_id(outputs_in)})
    return out


def _outputs_id(out: Path) -> dict:
    """The files a finished stage left in ``out`` (size and mtime; the stamps themselves aside)."""
    return {name: f for name, f in checkpoint_id(out)["files"].items() if name not in ("DONE", "STARTED")}


# ---------------------------------------------------------------------------------------------------- stages
def data_paths(work: Path) -> dict[str, Path]:
    """Where make_data writes each split's JSONL."""
    from .synthetic import split_file

    return {split: split_file(work / "data", "rec", split) for split in ("train", *EVAL_SPLITS)}


def make_data(work: Path, n_train: int, n_test: int, image_size: int, seed: int) -> dict[str, Path]:
    """The REC splits train / test / ood_pairs / ood under <work>/data, rewritten when their parameters change."""
    from .synthetic import write_split

    data = work / "data"
    sizes = {"train": n_train, **{split: n_test for split in EVAL_SPLITS}}
    paths = data_paths(work)
    stamp = data / "stamp.json"
    params = {"task": "rec", "n": sizes, "image_size": image_size, "seed": seed}

    def written() -> dict:  # the JSONL files and images as they are now (an edited, cut or deleted one is rewritten)
        return {**{split: file_id(path)["sha256"] for split, path in paths.items()}, "images": images_id(data)}

    if all(path.exists() for path in paths.values()) and is_fresh(stamp, {**params, "files": written()}):
        return paths
    stamp.unlink(missing_ok=True)  # an interrupted rewrite must not look finished
    for split, n in sizes.items():  # synthetic.example_rng keeps the splits' random streams apart
        write_split(data, "rec", split, n, seed=seed, image_size=image_size)
    write_stamp(stamp, {**params, "files": written()})
    return paths


def images_id(data: Path) -> str:
    """A hash of the name, size and mtime of each file in ``data/images`` (a deleted or rewritten image changes it)."""
    folder = data / "images"
    listing = sorted(f"{f.name} {f.stat().st_size} {f.stat().st_mtime_ns}" for f in folder.iterdir()) \
        if folder.is_dir() else []
    return hashlib.sha256("\n".join(listing).encode()).hexdigest()


def build_warm_start(work: Path, model_type: str, train_data: Path, recipe: str, extra: list[str]) -> Path:
    """make_tiny + SFT, cached as <work>/warm_start; its DONE file is the stamp (model type, data, recipe, args)."""
    from .sft import main as sft_main
    from .tiny import make_tiny

    out = built_warm_start_dir(work)
    inputs = {"model_type": model_type, "train_data": file_id(train_data), "recipe": file_id(recipe),
              "args": list(extra)}  # fmt: skip

    def run():
        base = make_tiny(work / "tiny_init", model_type=model_type)
        sft_main(["--config", recipe, "--model_name_or_path", str(base), "--train_data", str(train_data),
                  "--output_dir", str(out), *extra, "--resume_from_checkpoint", "auto"])  # fmt: skip

    return run_stage_in(out, inputs, False, run)


def check_shipped_image_size(image_size: int, folder: Path = SHIPPED_WARM_START) -> None:
    """Refuse to pair a warm start whose ``warm_start.json`` names the image size it was trained at (the shipped
    one's does, whether chosen by ``auto`` or named) with images of another size."""
    if not (folder / "warm_start.json").is_file():
        return
    try:
        trained_at = json.loads((folder / "warm_start.json").read_text())["image_size"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{folder / 'warm_start.json'}: no readable image_size ({type(e).__name__}: {e}); it should "
                         'read {"image_size": N}, the side of the images the warm start was trained on') from None
    if image_size != trained_at:
        raise ValueError(f"the warm start {folder} was trained on {trained_at} px images, not {image_size} px: "
                         f"pass --image_size {trained_at}, or --warm_start build to train one at {image_size} px")


def refuse_build_options(args, warm: str) -> None:
    """--sft_recipe / --sft_args (and --model_type) shape a warm start that is built; refuse them for another."""
    defaults = build_parser().parse_args([])
    given = [f"--{name}" for name in ("sft_recipe", "sft_args", "model_type") if getattr(args, name) != getattr(defaults, name)]
    if given:
        raise ValueError(f"{only_apply(given)} when the warm start is built, and this run uses {warm}: "
                         "pass --warm_start build to build one with them")  # fmt: skip


def refuse_grpo_only_options(args) -> None:
    """With --skip_grpo only the evaluations run: refuse GRPO options they would not read."""
    from .config import LOADING_OPTIONS

    read = {"question_template", "system_prompt", *LOADING_OPTIONS}
    unused = ["--grpo_max_steps"] if args.grpo_max_steps is not None else []
    keys = [pair.partition("=")[0].lstrip("-") for pair in args.grpo_args]
    unused += [f"--grpo_args {key}" for key in keys if key not in read]
    if unused:
        raise ValueError(f"{', '.join(unused)}: --skip_grpo runs no GRPO, so these would do nothing (the evaluations "
                         f"read only {', '.join(sorted(read))})")


WORK_DIR_MARK = ".vlm_r1_pipeline"  # written into every work dir: the pipeline rewrites and deletes inside it


def refuse_foreign_work_dir(work: Path) -> None:
    """A folder with files the pipeline did not write (no mark, and no data stamp of an older version) is refused:
    the stages overwrite their files and delete their folders."""
    if work.is_dir() and any(work.iterdir()) and not (work / WORK_DIR_MARK).exists() \
            and not (work / "data" / "stamp.json").exists():
        raise ValueError(f"--work_dir {work} holds files the pipeline did not write, and its stages overwrite and "
                         "delete inside it: use a new or empty folder")


def built_warm_start_dir(work: Path) -> Path:
    return work / "warm_start"


def choose_warm_start(args, work: Path) -> tuple[Path, bool]:
    """The warm start this run uses and whether it is to be built; refuses options that it would not use."""
    if args.warm_start not in {"auto", "build"}:
        path = Path(args.warm_start)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"--warm_start {path}: no config.json there")
        refuse_build_options(args, str(path))
        check_shipped_image_size(args.image_size, path)
        return path, False
    if args.warm_start == "auto" and (SHIPPED_WARM_START / "config.json").exists() and args.model_type == "qwen2_vl":
        refuse_build_options(args, f"the shipped {SHIPPED_WARM_START}")
        check_shipped_image_size(args.image_size)
        return SHIPPED_WARM_START, False
    return built_warm_start_dir(work), True


def grpo_argv(args, warm: Path, train_data: Path, out: Path) -> list[str]:
    """The `vlm-r1 train` command line of the GRPO stage."""
    resolved = [str(Path(p).resolve()) for p in (args.grpo_recipe, warm, train_data, out)]  # the stamp holds this
    # command line: the same work dir written another way must not redo GRPO
    argv = ["--config", resolved[0], "--model_name_or_path", resolved[1], "--train_data", resolved[2],
            "--output_dir", resolved[3]]  # fmt: skip
    extra = key_value_args(args.grpo_args)
    if args.grpo_max_steps is not None:
        if "--max_steps" in extra:
            raise ValueError("max_steps is given twice (--grpo_max_steps and --grpo_args max_steps=...): keep one")
        if "--num_train_epochs" in extra:
            raise ValueError("--grpo_max_steps and --grpo_args num_train_epochs=... both set GRPO's length: keep one")
        argv += ["--max_steps", str(args.grpo_max_steps)]
    return argv + extra + ["--resume_from_checkpoint", "auto"]  # an interrupted stage goes on from its checkpoint


@dataclass(frozen=True)
class GRPOSetup:
    """What the pipeline takes from the parsed GRPO command line: the prompt and loading options, so the evaluations
    see what GRPO trained on; where its report goes; and how many training rows one generation batch takes."""

    question_template: str | None = None
    system_prompt: str | None = None
    model_options: dict = field(default_factory=dict)  # config.LOADING_OPTIONS set away from their defaults
    report_dir: str | None = None  # GRPO's report_dir, where the training reward is read from afterwards
    prompts_per_batch: int = 1  # distinct prompts in one generation batch: fewer training rows train 0 steps
    files_read: tuple[str, ...] = ()  # what else GRPO reads: reward modules' code, eval_data, a DeepSpeed config


def grpo_setup(train_argv: list[str]) -> GRPOSetup:
    """The GRPO run's prompt (question_template, system_prompt), loading options (image resolution, dtype, attention),
    report_dir and prompts per generation batch, parsed (recipe + overrides) as `vlm-r1 train` parses them."""
    from .config import loading_options
    from .train import parse_args

    data_args, model_args, training_args = parse_args(train_argv)
    options = loading_options(model_args)
    return GRPOSetup(data_args.question_template, data_args.system_prompt, options, training_args.report_dir,
                     training_args.prompts_per_batch, files_read(data_args, training_args))


def files_read(data_args, training_args) -> tuple[str, ...]:
    """Files besides the recipe and the training data whose content decides the GRPO stage: the module of each
    ``module:function`` reward (that file only, not what it imports), ``eval_data``, a DeepSpeed config file. A
    module that cannot be found is left for `vlm-r1 train` to refuse."""
    import importlib.util

    names = [*data_args.reward_funcs, data_args.default_reward or ""]
    modules = sorted({name.partition(":")[0] for name in names if ":" in name})
    found = []
    for module in modules:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin and Path(spec.origin).is_file():
            found.append(spec.origin)
    deepspeed = [training_args.deepspeed] if isinstance(training_args.deepspeed, str) else []
    return tuple(found + [path for path in [*(data_args.eval_data or []), *deepspeed] if Path(path).is_file()])


def evaluate_checkpoint(checkpoint: Path, paths: dict[str, Path], out_dir: Path, batch_size: int, max_new_tokens: int,
                        setup: GRPOSetup = GRPOSetup(), force: bool = False) -> dict[str, dict]:  # fmt: skip
    """Greedy evaluation on every EVAL_SPLITS split, cached as <out_dir>/<split>.json with its stamp <split>.stamp.json."""
    from .config import ModelArguments
    from .data import load_rows
    from .evaluate import how_it_was_read
    from .evaluation.runner import GenerationSettings, evaluate_samples, write_json
    from .loading import load_policy

    results, model = {}, None
    for split in EVAL_SPLITS:
        path, stamp = out_dir / f"{split}.json", out_dir / f"{split}.stamp.json"
        inputs = {"checkpoint": checkpoint_id(checkpoint), "data": file_id(paths[split]),
                  "question_template": setup.question_template, "system_prompt": setup.system_prompt,
                  "max_new_tokens": max_new_tokens}  # fmt: skip
        if setup.model_options:  # (absent when none is set)
            inputs["model_options"] = setup.model_options
        if path.exists() and is_fresh(stamp, {**inputs, "result": file_id(path)["sha256"]}) and not force:
            results[split] = json.loads(path.read_text())  # the file this stage wrote, as it wrote it
            continue
        if path.exists() and stamp.exists() and not force:
            print(f"{path}: not the result its stamp records (edited, cut short, or made with other inputs), "
                  "evaluating again")
        stamp.unlink(missing_ok=True)
        if model is None:
            model, processor, module = load_policy(ModelArguments(model_name_or_path=str(checkpoint), **setup.model_options))
        samples = list(load_rows(paths[split]))
        settings = GenerationSettings(batch_size=batch_size, max_new_tokens=max_new_tokens)
        result = evaluate_samples(model, processor, module, samples, setup.question_template, setup.system_prompt,
                                  settings)  # fmt: skip
        result.update(how_it_was_read(str(checkpoint), paths[split], setup.model_options, "cpu", None))
        write_json(result, path)
        write_stamp(stamp, {**inputs, "result": file_id(path)["sha256"]})  # an edited result is evaluated again
        results[split] = result
    return results


def run_grpo(argv: list[str], recipe: str, warm: Path, train_data: Path, out: Path, force: bool = False,
             files_read: tuple[str, ...] = ()) -> Path:
    """:func:`vlm_r1.train.main` with ``argv``, cached as ``out``; its DONE file is the stamp (with the content of
    ``files_read``, :func:`files_read`)."""
    from .train import main as train_main

    inputs = {"warm_start": checkpoint_id(warm), "train_data": file_id(train_data), "recipe": file_id(recipe),
              "argv": argv}  # fmt: skip
    if files_read:  # (absent when there are none)
        inputs["files_read"] = [file_id(path) for path in files_read]
    return run_stage_in(out, inputs, force, lambda: train_main(argv))


def merged_if_adapter(grpo_dir: Path, out: Path, force: bool = False) -> Path:
    """The GRPO stage's model as a plain checkpoint: ``grpo_dir`` itself, or for a LoRA recipe (``use_peft``) its
    adapter merged into the warm start it records, as ``out/model`` (cached like a training stage)."""
    from .checkpoints import is_adapter_folder

    if not is_adapter_folder(grpo_dir):
        return grpo_dir
    from .merge import merge_lora

    def merge():
        print(f"{grpo_dir} holds a LoRA adapter: merging it into its base for the evaluation ({out / 'model'})")
        shutil.rmtree(out / "model", ignore_errors=True)  # a merge cut short leaves a folder merge_lora refuses
        merge_lora(grpo_dir, out / "model")

    run_stage_in(out, {"adapter": checkpoint_id(grpo_dir)}, force, merge, outputs_in=out / "model")
    return out / "model"


def grpo_outcome(grpo_dir: Path, report_dir: str | None = None) -> str:
    """The GRPO run's training reward, first vs last logged steps (from its log history), and its checkpoint."""
    from .report import find_log_history
    from .train import reward_summary

    try:
        start, end = reward_summary(find_log_history(grpo_dir, report_dir)[0])
    except FileNotFoundError:
        start, end = None, None
    reward = f"GRPO training reward {start:.3f} -> {end:.3f} (first/last 5 logged steps); " if start is not None else ""
    return f"{reward}GRPO checkpoint: {grpo_dir}"


# ---------------------------------------------------------------------------------------------------- table
def comparison(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    from .evaluation.compare import hits, paired_bootstrap

    table = {}
    for split in EVAL_SPLITS:
        row = paired_bootstrap(hits(before[split]), hits(after[split]))
        row["mean_iou_before"] = before[split]["metrics"]["rec"]["mean_iou"]
        row["mean_iou_after"] = after[split]["metrics"]["rec"]["mean_iou"]
        row["answered_before"] = before[split]["metrics"]["rec"]["answered"]
        row["answered_after"] = after[split]["metrics"]["rec"]["answered"]
        table[split] = row
    return table


def format_comparison(table: dict[str, dict]) -> str:
    header = ("split", "n", "Acc@0.5 warm start -> GRPO (%)", "change [95% CI]", "mean IoU before -> after")
    rows = []
    for split, r in table.items():
        lo, hi = r["ci95"]
        rows.append((
            split, str(r["n"]), f"{100 * r['before']:.1f} -> {100 * r['after']:.1f}",
            f"{100 * r['delta']:+.1f} pts [{100 * lo:+.1f}, {100 * hi:+.1f}]",
            f"{r['mean_iou_before']:.3f} -> {r['mean_iou_after']:.3f}",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["   ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "   ".join("-" * width for width in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    parser = build_parser()
    args = parser.parse_args(argv)
    work = Path(args.work_dir)
    timings: dict[str, float] = {}

    def stage(name: str):
        print(f"\n==== [{name}] " + "=" * (60 - len(name)), flush=True)
        timings[name] = time.monotonic()

    def done(name: str):
        timings[name] = time.monotonic() - timings[name]
        print(f"==== [{name}] done in {timings[name]:.0f} s", flush=True)

    # every option is checked before the first stage runs: a refusal costs no time and writes nothing
    from .synthetic import check_image_size_and_seed

    try:
        check_image_size_and_seed(args.image_size, args.data_seed, seed_name="data_seed")
        for name in ("n_train", "n_test", "eval_batch_size", "max_new_tokens", "grpo_max_steps"):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
        if args.skip_grpo:
            refuse_grpo_only_options(args)
        warm, build = choose_warm_start(args, work)
        if build:
            check_sft_args(args, work)
        grpo_dir = work / "grpo"
        for rewritten in (grpo_dir, work / "grpo_merged"):  # (a LoRA stage's merge rewrites grpo_merged/)
            if rewritten.resolve() in (warm.resolve(), *warm.resolve().parents):
                raise ValueError(f"--warm_start {warm} lies in {rewritten}, which a later stage deletes and rewrites: "
                                 "copy it elsewhere first, or use another --work_dir")
        train_argv = grpo_argv(args, warm, data_paths(work)["train"], grpo_dir)
        setup = grpo_setup(train_argv)
        if not args.skip_grpo and args.n_train < setup.prompts_per_batch:
            raise ValueError(f"--n_train {args.n_train} is below the {setup.prompts_per_batch} distinct prompts each GRPO "
                             "generation batch takes: GRPO would train 0 steps. Raise --n_train, or lower "
                             "per_device_train_batch_size or steps_per_generation through --grpo_args")
        refuse_foreign_work_dir(work)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))  # one line (and the usage), exit status 2
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_DIR_MARK).touch()
    (work / "summary.json").unlink(missing_ok=True)  # an earlier run's, until this one writes its own

    stage("data")
    paths = make_data(work, args.n_train, args.n_test, args.image_size, args.data_seed)
    done("data")

    stage("warm start")
    if build:
        build_warm_start(work, args.model_type, paths["train"], args.sft_recipe, args.sft_args)
    print(f"warm start: {warm}")
    done("warm start")

    stage("evaluate warm start")
    before = evaluate_checkpoint(warm, paths, work / "eval_before", args.eval_batch_size, args.max_new_tokens,
                                 setup, args.force)  # fmt: skip
    for split, r in before.items():
        print(f"{split}: {json.dumps(r['metrics']['rec'])}")
    done("evaluate warm start")
    summary = {"warm_start": str(warm), "before": {s: r["metrics"] for s, r in before.items()}}
    if args.skip_grpo:
        summary["timings_s"] = timings
        (work / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary

    stage("GRPO")
    run_grpo(train_argv, args.grpo_recipe, warm, paths["train"], grpo_dir, args.force, setup.files_read)
    done("GRPO")

    stage("evaluate GRPO")
    trained = merged_if_adapter(grpo_dir, work / "grpo_merged", args.force)
    after = evaluate_checkpoint(trained, paths, work / "eval_after", args.eval_batch_size, args.max_new_tokens,
                                setup, args.force)  # fmt: skip
    done("evaluate GRPO")

    table = comparison(before, after)
    summary.update(after={s: r["metrics"] for s, r in after.items()}, comparison=table, timings_s=timings)
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print("\n" + format_comparison(table))
    print("\ntimings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(grpo_outcome(grpo_dir, setup.report_dir))
    print(f"summary: {work / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
