"""The ``vlm-r1`` command. Each subcommand hands its arguments to the module that owns the job.

    vlm-r1 train --config recipes/tiny/rec_grpo.yaml [--any_field value ...]   GRPO (single process; use
                                                                              accelerate launch -m vlm_r1.train for more)
    vlm-r1 sft --config recipes/tiny/rec_sft.yaml [...]                        supervised fine-tuning
    vlm-r1 eval --model_name_or_path CKPT --data a.jsonl [...]                 evaluation, JSON of metrics
    vlm-r1 pipeline [--work_dir DIR]                                           the default job (grpo_rec.sh)
    vlm-r1 make-tiny --out DIR [--model_type qwen2_vl]                         offline tiny model + tokenizer
    vlm-r1 make-data --out DIR [--tasks rec ...] [--n 1000]                    synthetic shapes data
    vlm-r1 rewards                                                             list the registered rewards
    vlm-r1 grqo --config recipes/tiny/grqo_dino.yaml                           DINO-R1 GRQO for Grounding DINO
    vlm-r1 merge-lora --adapter DIR --out DIR                                  LoRA adapter -> plain checkpoint
    vlm-r1 report OUTPUT_DIR                                                   redraw curves and gallery of a run
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def _train(argv: list[str]) -> int:
    from .train import main

    main(argv)
    return 0


def _sft(argv: list[str]) -> int:
    from .sft import main

    main(argv)
    return 0


def _eval(argv: list[str]) -> int:
    from .evaluate import main

    main(argv)
    return 0


def _pipeline(argv: list[str]) -> int:
    from .pipeline import main

    main(argv)
    return 0


def _make_tiny(argv: list[str]) -> int:
    from .tiny import MODEL_TYPES, make_tiny

    parser = argparse.ArgumentParser(prog="vlm-r1 make-tiny", description="Build an offline tiny VLM checkpoint.")
    parser.add_argument("--out", required=True, help="folder to write the checkpoint to")
    parser.add_argument("--model_type", default="qwen2_vl", choices=MODEL_TYPES,
                        help=f"one of {', '.join(MODEL_TYPES)} (default: qwen2_vl)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 <= args.seed < 2**64:  # what torch.manual_seed takes
        parser.error(f"--seed must be in 0 .. 2**64 - 1, got {args.seed}")
    from pathlib import Path

    from .recipe import check_output_dir

    check_output_dir(args.out, "out")
    if Path(args.out).is_dir() and any(Path(args.out).iterdir()):  # a trained run, a data folder, another model
        parser.error(f"--out {args.out} is not empty: a new model's files would replace some of what it holds; "
                     "choose a new folder")
    path = make_tiny(args.out, model_type=args.model_type, seed=args.seed)
    print(f"tiny {args.model_type} checkpoint written to {path}")
    return 0


def _make_data(argv: list[str]) -> int:
    from .synthetic import SPLITS, TASKS, check_image_size_and_seed, split_file, write_split

    parser = argparse.ArgumentParser(prog="vlm-r1 make-data", description="Write synthetic shapes datasets (JSONL).")
    parser.add_argument("--out", required=True, help="folder for images/ and the JSONL files")
    parser.add_argument("--tasks", nargs="+", default=["rec"], choices=TASKS, metavar="TASK",
                        help=f"one or more of {', '.join(TASKS)} (default: rec)")
    parser.add_argument("--splits", nargs="+", default=["train", "test", "ood"], choices=SPLITS, metavar="SPLIT",
                        help=f"one or more of {', '.join(SPLITS)} (default: train test ood)")
    parser.add_argument("--n", type=int, default=1000, help="rows per training split")
    parser.add_argument("--n_test", type=int, default=None, help="rows per test / ood split (default: n)")
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace JSONL files of the same name already in --out (refused otherwise)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.n_test is not None and args.n_test < 1:
        parser.error("--n and --n_test must be >= 1 (an empty JSONL file is refused when loaded)")
    if args.n_test is not None and set(args.splits) <= {"train"}:
        parser.error("--n_test sizes the test and ood splits, and --splits asks for none: drop it, or add a split")
    from .recipe import check_output_dir

    check_output_dir(args.out, "out")
    try:
        check_image_size_and_seed(args.image_size, args.seed)
    except ValueError as e:
        parser.error(f"--{e}")
    targets = [split_file(args.out, task, split) for task in args.tasks for split in args.splits]
    existing = [path.name for path in targets if path.exists()]
    if existing and not args.overwrite:
        parser.error(f"--out {args.out} already holds {', '.join(existing)}: pass --overwrite to replace them, or "
                     "choose another --out")
    for task in args.tasks:
        for split in args.splits:
            n = args.n if split == "train" or args.n_test is None else args.n_test
            path = write_split(args.out, task, split, n, seed=args.seed, image_size=args.image_size)
            print(f"{task} {split}: {n} rows -> {path}")
    return 0


def _rewards(argv: list[str]) -> int:
    from .rewards import list_rewards

    argparse.ArgumentParser(prog="vlm-r1 rewards", description="List the registered rewards.").parse_args(argv)
    for name, func in sorted(list_rewards().items()):
        lines = [line.strip() for line in (func.__doc__ or "").strip().splitlines()]
        summary = " ".join(lines[: lines.index("")] if "" in lines else lines)  # the docstring's first paragraph
        print(f"{name:<24} {summary}")
    return 0


def _report(argv: list[str]) -> int:
    from .report import main

    return main(argv)


def _merge_lora(argv: list[str]) -> int:
    from .merge import main

    return main(argv)


def _grqo(argv: list[str]) -> int:
    from .grqo.train import main

    return main(argv)


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "train": (_train, "GRPO fine-tuning from a recipe YAML and/or flags"),
    "sft": (_sft, "supervised fine-tuning on the same data (warm start and baseline)"),
    "eval": (_eval, "evaluate a checkpoint: REC Acc@0.5/mean IoU, COCO mAP, accuracy; JSON of metrics + predictions"),
    "pipeline": (_pipeline, "the default job: data, warm start, eval before, GRPO, eval after"),
    "make-tiny": (_make_tiny, "build an offline tiny model checkpoint"),
    "make-data": (_make_data, "write synthetic shapes datasets"),
    "rewards": (_rewards, "list the registered rewards"),
    "report": (_report, "redraw the curves and gallery of a finished run"),
    "grqo": (_grqo, "DINO-R1 GRQO fine-tuning of a Grounding-DINO-style detector"),
    "merge-lora": (_merge_lora, "fold a LoRA adapter into its base model (a plain checkpoint)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        width = max(len(name) for name in COMMANDS)
        lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
        print("usage: vlm-r1 COMMAND [ARGS]  (vlm-r1 COMMAND --help for its options)\n\ncommands:\n" + "\n".join(lines))
        if argv and argv[0] not in {"-h", "--help"}:
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    handler, _ = COMMANDS[argv[0]]
    try:
        return handler(argv[1:])
    except (ValueError, FileNotFoundError) as e:  # a refused option, bad rows, a missing file, an unusable
        # checkpoint: the message says it all (any other ValueError is a bug and keeps its traceback)
        from .checkpoints import CheckpointError
        from .data import DataError
        from .recipe import OptionError

        if not isinstance(e, (OptionError, DataError, CheckpointError, FileNotFoundError)):
            raise
        print(f"vlm-r1 {argv[0]}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
