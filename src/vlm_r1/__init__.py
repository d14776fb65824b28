"""vlm-r1: reinforcement fine-tuning of vision-language models with rule-based, verifiable rewards."""

__version__ = "0.1.0"
