"""LoRA through peft: only adapter weights train, the reference model is the adapter-disabled policy, and
`merge-lora` writes a plain checkpoint whose logits match the adapter model's.

Tolerance of the merge check: float32 logits of the merged model equal the adapter model's to 1e-4 absolute
(measured: about 1e-6; W + scale * B @ A is summed in a different order than W x + scale * B (A x)).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from vlm_r1.config import ModelArguments
from vlm_r1.loading import apply_training_mode, count_parameters, load_policy

from varying_rewards import VARYING_GRPO_FIELDS


def _train(grpo_run, model_dir, data, **overrides):
    return grpo_run(
        model_dir,
        data,
        **VARYING_GRPO_FIELDS,
        learning_rate=1e-2,
        use_peft=True,
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        **overrides,
    )


def _inputs(processor):
    image = Image.new("RGB", (112, 112), (200, 40, 40))
    messages = [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": "Find it."}]}]
    inputs = processor.apply_chat_template(
        [messages], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    answer = processor.tokenizer("<answer>[1, 2, 3, 4]</answer>", return_tensors="pt")["input_ids"]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], answer], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "mm_token_type_ids" in inputs:
        pad = torch.zeros_like(answer)
        inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], pad], dim=1)
    return inputs


@pytest.mark.parametrize("model_type", ["qwen2_vl", "internvl"])
def test_lora_trains_adapters_only_and_merges(tiny_model_dir, rec_rows, tmp_path, grpo_run, model_type, monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlm_r1.merge import main as merge_main

    base_dir = tiny_model_dir(model_type)
    # gradient checkpointing on: LoRA + checkpointing needs input grads enabled (TRL does it)
    monkeypatch.chdir(base_dir.parent)  # the base named relative to the working folder, as users type it
    summary = _train(grpo_run, Path(base_dir.name), rec_rows, beta=0.04, gradient_checkpointing=True)
    monkeypatch.chdir(tmp_path)  # merged from elsewhere below: the adapter records the base's absolute path
    out = tmp_path / "out"
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    # beta > 0 under LoRA: TRL's reference is the policy with adapters disabled; after one update they differ.
    assert any(entry.get("kl", 0) > 0 for entry in summary["log_history"])
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    from vlm_r1.merge import adapter_base
    assert adapter_base(out) == (str(base_dir.resolve()), "main")  # merge-lora loads it at the run's model_revision

    base = AutoModelForImageTextToText.from_pretrained(base_dir).eval()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    adapted = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base_dir), str(out)).eval()
    lora_b = {k: v for k, v in adapted.state_dict().items() if "lora_B" in k}
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b.values())  # B starts at zero: every adapter trained
    assert not any("vision_tower" in k or "visual" in k for k in lora_b)  # vision excluded by default
    for key, value in adapted.get_base_model().state_dict().items():  # the base weights are bit-identical
        if "lora_" not in key:
            plain = key.replace(".base_layer", "")
            assert torch.equal(value, base_state[plain]), key

    processor = AutoProcessor.from_pretrained(out)
    inputs = _inputs(processor)
    with torch.no_grad():
        adapter_logits = adapted(**inputs).logits
        with adapted.disable_adapter():  # what TRL scores the reference with
            disabled_logits = adapted(**inputs).logits
        base_logits = base(**inputs).logits
    assert torch.equal(disabled_logits, base_logits)
    assert (adapter_logits - base_logits).abs().max() > 1e-3  # the adapters do something

    before = sorted(p.name for p in out.iterdir())
    for into in (out, base_dir):  # merged over the adapter or over its base: refused before anything is written
        with pytest.raises(ValueError, match="would be written over it"):
            merge_main(["--adapter", str(out), "--out", str(into)])
    assert sorted(p.name for p in out.iterdir()) == before
    merged_dir = tmp_path / "merged"
    assert merge_main(["--adapter", str(out), "--out", str(merged_dir)]) == 0
    with pytest.raises(ValueError, match="is not empty: the merged model's files would replace"):  # it was overwritten
        merge_main(["--adapter", str(out), "--out", str(merged_dir)])
    assert not (merged_dir / "adapter_config.json").exists()
    assert (merged_dir / "vlm_r1_prompt.json").read_text() == (out / "vlm_r1_prompt.json").read_text()  # copied
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir).eval()
    assert not any("lora" in k for k in merged.state_dict())
    assert set(merged.state_dict()) == set(base_state)
    merged_processor = AutoProcessor.from_pretrained(merged_dir)
    with torch.no_grad():
        merged_logits = merged(**_inputs(merged_processor)).logits
    torch.testing.assert_close(merged_logits, adapter_logits, rtol=0, atol=1e-4)

    moved = tmp_path / "moved_adapter"  # an adapter whose recorded base is not there: the error says what to pass
    shutil.copytree(out, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "runs/base"}))
    with pytest.raises(FileNotFoundError, match="records the base 'runs/base', which is neither a folder.*pass --base"):
        merge_main(["--adapter", str(moved), "--out", str(tmp_path / "not_merged")])
    assert merge_main(["--adapter", str(moved), "--out", str(tmp_path / "merged2"), "--base", str(base_dir)]) == 0

    with pytest.raises(ValueError, match="merge-lora"):  # an adapter folder is not loaded as if it were a model
        load_policy(ModelArguments(model_name_or_path=str(out)))


def test_lora_vision_adds_adapters_to_the_vision_side(tiny_model_dir):
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    from vlm_r1.modules import get_module

    path = tiny_model_dir("internvl")  # InternViT's attention reuses q_proj/k_proj/v_proj: names must not leak
    module = get_module("internvl")
    counts = {}
    for lora_vision in (False, True):
        model = AutoModelForImageTextToText.from_pretrained(path)
        args = ModelArguments(model_name_or_path=str(path), use_peft=True, lora_r=4, lora_alpha=8,
                              lora_vision=lora_vision)
        peft_model = get_peft_model(model, apply_training_mode(model, module, args))
        counts[lora_vision] = count_parameters(peft_model, module)
        trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
        assert trainable and all("lora_" in n for n in trainable)
        in_vision = [n for n in trainable if module.part_of(n) != "language"]
        assert bool(in_vision) == lora_vision
    assert counts[False]["language"][0] == counts[True]["language"][0] > 0
    assert counts[False]["vision"][0] == counts[False]["projector"][0] == 0
    assert counts[True]["vision"][0] > 0 and counts[True]["projector"][0] > 0

    with pytest.raises(ValueError, match="lora_target_modules"):
        model = AutoModelForImageTextToText.from_pretrained(path)
        apply_training_mode(model, module, ModelArguments(use_peft=True, lora_target_modules=["no_such_layer"]))


def test_lora_run_with_vision_adapters(tiny_model_dir, rec_rows, grpo_run):
    summary = _train(
        grpo_run, tiny_model_dir("qwen3_vl"), rec_rows, lora_vision=True, beta=0.04,
        gradient_checkpointing=False,
    )
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    from safetensors.torch import load_file

    weights = load_file(str(Path(summary["checkpoint"]) / "adapter_model.safetensors"))
    assert any("visual" in key for key in weights) and any("language_model" in key for key in weights)


def test_resuming_across_lora_and_full_training_says_what_to_change(tiny_model_dir, rec_rows, tmp_path, grpo_run):
    from vlm_r1.checkpoints import CheckpointError

    base = tiny_model_dir("qwen2_vl")
    _train(grpo_run, base, rec_rows, max_steps=1, save_strategy="steps", save_steps=1)
    checkpoint = str(tmp_path / "out" / "checkpoint-1")
    with pytest.raises(CheckpointError, match="was made by a run with other settings .*use_peft: true -> false"):
        grpo_run(base, rec_rows, "--resume_from_checkpoint", checkpoint, max_steps=2)  # its run record says first
    (tmp_path / "out" / "checkpoint-1" / "vlm_r1_run.json").unlink()  # a checkpoint without one (an older version)
    with pytest.raises(CheckpointError, match="holds a LoRA adapter but this run trains every parameter: add --use_peft"):
        grpo_run(base, rec_rows, "--resume_from_checkpoint", checkpoint, max_steps=2)
    grpo_run(base, rec_rows, max_steps=1, save_strategy="steps", save_steps=1, output_dir=str(tmp_path / "full"))
    (tmp_path / "full" / "checkpoint-1" / "vlm_r1_run.json").unlink()
    with pytest.raises(CheckpointError, match="holds full weights but this run trains LoRA adapters: drop --use_peft"):
        _train(grpo_run, base, rec_rows, max_steps=2, output_dir=str(tmp_path / "full"),
               resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-1"))


def test_an_adapter_refuses_a_base_rebuilt_since_it_was_trained(tiny_model_dir, rec_rows, tmp_path, grpo_run):
    """A LoRA run records its local base's fingerprint; merge-lora and resuming refuse a base rebuilt in place."""
    from vlm_r1.base_record import BASE_RECORD_FILE
    from vlm_r1.checkpoints import CheckpointError
    from vlm_r1.merge import main as merge_main
    from vlm_r1.recipe import OptionError
    from vlm_r1.tiny import make_tiny

    base = make_tiny(tmp_path / "base", "qwen2_vl", seed=0)
    _train(grpo_run, base, rec_rows, max_steps=1, save_strategy="steps", save_steps=1)
    out = tmp_path / "out"
    for folder in (out, out / "checkpoint-1"):
        assert json.loads((folder / BASE_RECORD_FILE).read_text())["base"] == str(base.resolve())
    copy = tmp_path / "copy_of_base"
    shutil.copytree(base, copy)
    assert merge_main(["--adapter", str(out), "--out", str(tmp_path / "m1"), "--base", str(copy)]) == 0  # same files

    make_tiny(base, "qwen2_vl", seed=7)  # rebuilt in place: same path, same shapes, other weights
    rebuilt = "is not the model the adapter in .* was trained on"
    with pytest.raises(CheckpointError, match=rebuilt):
        merge_main(["--adapter", str(out), "--out", str(tmp_path / "m2")])
    assert not (tmp_path / "m2").exists()
    with pytest.raises(CheckpointError, match=rebuilt):
        _train(grpo_run, base, rec_rows, max_steps=2, resume_from_checkpoint=str(out / "checkpoint-1"))
    (out / BASE_RECORD_FILE).unlink()  # the way to apply the adapter to this model anyway, as the error says
    assert merge_main(["--adapter", str(out), "--out", str(tmp_path / "m3")]) == 0
    with pytest.raises(OptionError, match="--revision v2 only applies to a hub id, and the base .* is a local folder"):
        merge_main(["--adapter", str(out), "--out", str(tmp_path / "m5"), "--base", str(copy), "--revision", "v2"])
    adapter = out / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 2])  # its save was interrupted
    with pytest.raises(CheckpointError, match=r"adapter_model.safetensors: .*\(was its save interrupted\?\)"):
        merge_main(["--adapter", str(out), "--out", str(tmp_path / "m4")])
