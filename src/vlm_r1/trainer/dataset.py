"""Turn validated rows (:class:`vlm_r1.data.Sample`) into the dataset TRL's GRPOTrainer reads.

The Arrow table holds only plain columns (paths, sizes, texts); the conversational ``prompt`` and the decoded
``images`` are built when a row is read (``with_transform``), so a large dataset never sits decoded in memory.
Columns the rewards see: ``solution`` (JSON ground truth), ``reward`` (the row's accuracy reward or None),
``image_sizes`` (original width, height per image) and ``source`` (file:line, for error messages and reports).
"""

from __future__ import annotations

from collections.abc import Sequence

from datasets import Dataset

from ..data import Sample, load_row_images, to_conversation


def to_hf_dataset(
    samples: Sequence[Sample], question_template: str, system_prompt: str | None = None
) -> Dataset:
    table = Dataset.from_dict(
        {
            "problem": [s.problem for s in samples],
            "image_paths": [list(s.images) for s in samples],
            "image_sizes": [[list(size) for size in s.image_sizes] for s in samples],
            "solution": [s.solution for s in samples],
            "reward": [s.reward for s in samples],
            "source": [s.source for s in samples],
        }
    )

    def materialise(batch: dict[str, list]) -> dict[str, list]:
        batch = dict(batch)
        batch["prompt"] = [
            to_conversation(problem, question_template=question_template, system_prompt=system_prompt)
            for problem in batch["problem"]
        ]
        batch["images"] = [load_row_images(paths, source) for paths, source in zip(batch["image_paths"], batch["source"])]
        return batch

    return table.with_transform(materialise)
