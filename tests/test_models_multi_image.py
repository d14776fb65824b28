"""Rows with one image, several images or none, alone and mixed in one batch.

* `<image>` placeholders stay where the row's text puts them, through the chat template of each family.
* Rewards are per sample: scoring fixed completions through the trainer's own `_calculate_rewards` (boxes converted
  from the model's frame to pixels of the row's first image, then every reward) gives the same numbers for a row
  whether it is scored alone or inside a mixed batch.
* A GRPO run on a dataset that mixes the three kinds of rows trains (generation, the loss forward pass with
  per-sample image slices, KL against the reference model).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from vlm_r1.config import ModelArguments, VLMGRPOConfig
from vlm_r1.data import load_rows
from vlm_r1.loading import load_policy
from vlm_r1.trainer.dataset import to_hf_dataset

BOX = [10, 20, 60, 70]  # ground truth in pixels of the first image


@pytest.fixture(scope="module")
def mixed_jsonl(tmp_path_factory):
    """Four rows: one image, two images with text between them, no image (a counting question: a box needs an
    image), one image after the text."""
    root = tmp_path_factory.mktemp("mixed")
    Image.new("RGB", (112, 112), (200, 30, 30)).save(root / "square.png")
    Image.new("RGB", (224, 112), (30, 200, 30)).save(root / "wide.png")
    Image.new("RGB", (100, 150), (30, 30, 200)).save(root / "tall.png")

    def row(images, text, reward="iou", truth=BOX):
        out = {"conversations": [{"from": "human", "value": text}, {"from": "gpt", "value": truth}], "reward": reward}
        if images is not None:
            out["image"] = images
        return out

    rows = [
        row("square.png", "<image>Find the red square."),
        row(["wide.png", "tall.png"], "Here is <image> and here is <image>. Find the box in the first."),
        row(None, "There is no picture. How many sides has a triangle?", reward="counting", truth=3),
        row("tall.png", "Find the blue thing in <image>"),
    ]
    path = root / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("model_type", ["qwen2_vl", "internvl"])
def test_placeholders_stay_in_place(tiny_model_dir, mixed_jsonl, model_type):
    from trl.data_utils import prepare_multimodal_messages

    _, processor, module = load_policy(ModelArguments(model_name_or_path=str(tiny_model_dir(model_type))))
    dataset = to_hf_dataset(load_rows(mixed_jsonl), "{question}")
    row = dataset[1]
    assert len(row["images"]) == 2 and [tuple(im.size) for im in row["images"]] == [(224, 112), (100, 150)]
    messages = prepare_multimodal_messages(row["prompt"], images=row["images"])
    text = processor.apply_chat_template([messages], add_generation_prompt=True, tokenize=False)[0]
    marker = "<|vision_start|>" if model_type != "internvl" else processor.image_token
    before, first, rest = text.partition(marker)
    assert before.endswith("Here is ") and " and here is " in rest and rest.rstrip().endswith("<|im_start|>assistant")
    assert rest.index(" and here is ") < rest.index(marker) < rest.index(". Find the box in the first.")
    assert dataset[2]["images"] == [] and dataset[2]["image_sizes"] == []


def _trainer(model_dir, dataset, tmp_path):
    from vlm_r1.rewards import get_reward
    from vlm_r1.trainer.grpo import VLMGRPOTrainer

    model_args = ModelArguments(model_name_or_path=str(model_dir))
    model, processor, module = load_policy(model_args)
    args = VLMGRPOConfig(
        output_dir=str(tmp_path / "unused"), use_cpu=True, bf16=False, report_to="none", num_generations=2,
        per_device_train_batch_size=2, max_completion_length=8, gradient_checkpointing=False, beta=0.0,
    )
    funcs = [get_reward(name) for name in ("accuracy", "iou", "answer_format")]
    return VLMGRPOTrainer(
        model=model, reward_funcs=funcs, args=args, train_dataset=dataset, processing_class=processor,
        vlm_module=module,
    )


@pytest.mark.parametrize("model_type", ["qwen2_5_vl", "internvl"])  # resized-pixel frame, 0-1000 frame
def test_rewards_are_per_sample_in_mixed_batches(tiny_model_dir, mixed_jsonl, tmp_path, model_type):
    dataset = to_hf_dataset(load_rows(mixed_jsonl), "{question}")
    trainer = _trainer(tiny_model_dir(model_type), dataset, tmp_path)
    module, processor = trainer.vlm_module, trainer.processing_class
    rows = [dataset[i] for i in range(len(dataset))]

    # For each row, the completion that names the ground truth exactly in the model's frame of its first image.
    def exact(row):
        if not row["image_sizes"]:
            return 3  # the counting row
        size = tuple(row["image_sizes"][0])
        return [round(v, 3) for v in module.from_original(BOX, size, module.model_input_size(processor, size))]

    completions, batch = [], []
    for row in rows:
        for text in (f"<answer>{exact(row)}</answer>", "<answer>[0, 0, 5, 5]</answer>", "no answer"):
            completions.append([{"role": "assistant", "content": text}])
            batch.append(row)
    ids = [processor.tokenizer(c[0]["content"])["input_ids"] for c in completions]
    prompts = [row["prompt"] for row in batch]

    mixed = trainer._calculate_rewards(batch, prompts, completions, ids)
    alone = torch.cat(
        [trainer._calculate_rewards([r], [p], [c], [i]) for r, p, c, i in zip(batch, prompts, completions, ids)]
    )
    assert mixed.shape == (len(completions), 3)
    torch.testing.assert_close(mixed, alone, equal_nan=True, rtol=0, atol=0)
    accuracy, iou, answer_format = mixed.T
    boxed = [0, 1, 2, 3, 4, 5, 9, 10, 11]  # the completions of the three rows with images
    assert iou[[0, 3, 9]].tolist() == pytest.approx([1.0] * 3, abs=1e-3)  # exact box: IoU 1 in every kind of row
    assert iou[[1, 4, 10]].max() < 0.1 and iou[[2, 5, 11]].tolist() == [0.0] * 3
    assert torch.isnan(iou[6:9]).all()  # iou does not apply to the counting row
    torch.testing.assert_close(accuracy[boxed], iou[boxed])  # the rows' `reward` column is iou
    assert accuracy[6:9].tolist() == [1.0, 0.0, 0.0]  # the counting row's accuracy: number_match
    assert answer_format[0::3].tolist() == [1.0] * 4


@pytest.mark.parametrize("model_type", ["qwen2_vl", "internvl"])
def test_grpo_step_on_mixed_rows(tiny_model_dir, mixed_jsonl, grpo_run, model_type):
    """8 completions = 4 distinct prompts (one of each kind) in one generation batch, KL on."""
    summary = grpo_run(
        tiny_model_dir(model_type),
        mixed_jsonl,
        reward_funcs=["accuracy", "answer_format"],
        num_generations=2,
        beta=0.04,
    )
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
