"""The data layer: the VLM-R1 JSONL schema, row validation with ``file:line: field: message``
errors, image loading to RGB, and TRL conversational prompts. See docs/data.md."""

from .errors import DataError, DataWarning, ImageError, Problem
from .images import DEFAULT_MAX_PIXELS, image_root_problem, load_image, load_row_images, probe_image, to_rgb
from .prompts import (PROMPT_FILE, check_question_template, prompt_change_from, read_prompt, save_prompt,
                      to_conversation)
from .rows import (
    BOX_WITHOUT_IMAGE,
    IMAGE_PLACEHOLDER,
    LoadReport,
    Rows,
    Sample,
    SkippedRow,
    check_rows,
    holds_boxes,
    load_rows,
    parse_ground_truth,
    write_skipped_rows,
)

__all__ = [
    "BOX_WITHOUT_IMAGE",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_PLACEHOLDER",
    "DataError",
    "DataWarning",
    "ImageError",
    "LoadReport",
    "Problem",
    "Rows",
    "Sample",
    "SkippedRow",
    "check_question_template",
    "check_rows",
    "holds_boxes",
    "image_root_problem",
    "load_image",
    "load_row_images",
    "load_rows",
    "parse_ground_truth",
    "probe_image",
    "to_conversation",
    "to_rgb",
    "write_skipped_rows",
]
