"""The one place GRQO loads a detector: `load_detector(name_or_path, revision, trust_remote_code=False)`.

Used by `train.run` (training and its evaluation) and the tests alike. A hub id or a local folder must hold a Grounding DINO
checkpoint (config `model_type` "grounding-dino") and its processor; any other model type is refused unless
`trust_remote_code` is asked for (the checkpoint's own code then has to provide Grounding DINO's outputs:
`auxiliary_outputs`, `enc_outputs_class`, text-token logits).
"""

from __future__ import annotations


def load_detector(name_or_path: str, revision: str = "main", trust_remote_code: bool = False):
    """Return `(model, processor)`, the model on the CPU in its saved dtype (float32 unless the checkpoint says otherwise)."""
    from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    config = AutoConfig.from_pretrained(name_or_path, **kwargs)
    if config.model_type != "grounding-dino" and not trust_remote_code:
        raise ValueError(f"{name_or_path}: model_type {config.model_type!r} is not a Grounding DINO checkpoint "
                         "('grounding-dino'); GRQO needs GroundingDinoForObjectDetection")  # fmt: skip
    model = AutoModelForZeroShotObjectDetection.from_pretrained(name_or_path, config=config, **kwargs)
    processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
    return model, processor
