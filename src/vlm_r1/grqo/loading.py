"""The one place GRQO loads a detector: `load_detector(name_or_path, revision, trust_remote_code=False)`.

Used by `train.run` (training and its evaluation) and the tests alike. A hub id or a local folder must hold a Grounding DINO
checkpoint (config `model_type` "grounding-dino") and its processor; any other model type is refused unless
`trust_remote_code` is asked for (the checkpoint's own code then has to provide Grounding DINO's outputs:
`auxiliary_outputs`, `enc_outputs_class`, text-token logits). `detector_config` reads and checks config.json alone.
"""

from __future__ import annotations


def detector_config(name_or_path: str, revision: str = "main", trust_remote_code: bool = False):
    """The checkpoint's config (config.json only, no weights): `vlm_r1.recipe.OptionError` when it cannot be read or
    is not a Grounding DINO (unless `trust_remote_code`). `train.run` calls it before any data is read."""
    from transformers import AutoConfig

    from vlm_r1.modules import refuse_missing_folder
    from vlm_r1.recipe import OptionError

    refuse_missing_folder(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise OptionError(f"model_name_or_path {name_or_path}: {e}") from e
    if config.model_type != "grounding-dino" and not trust_remote_code:
        raise OptionError(f"{name_or_path}: model_type {config.model_type!r} is not a Grounding DINO checkpoint "
                          "('grounding-dino'); GRQO needs GroundingDinoForObjectDetection")  # fmt: skip
    return config


def is_detector_checkpoint(name_or_path: str, revision: str = "main", trust_remote_code: bool = False) -> bool:
    """Whether config.json says Grounding DINO. False when it cannot be read: the caller's own loading says why."""
    from transformers import AutoConfig

    from vlm_r1.modules import refuse_missing_folder

    try:
        refuse_missing_folder(name_or_path)
    except FileNotFoundError:
        return False
    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return False
    return config.model_type == "grounding-dino"


def load_detector(name_or_path: str, revision: str = "main", trust_remote_code: bool = False):
    """Return `(model, processor)`, the model on the CPU in its saved dtype (float32 unless the checkpoint says otherwise)."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    config = detector_config(name_or_path, **kwargs)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(name_or_path, config=config, **kwargs)
    processor = AutoProcessor.from_pretrained(name_or_path, **kwargs)
    return model, processor
