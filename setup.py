"""Packaging for vlm-r1: reinforcement fine-tuning of vision-language models with verifiable rewards."""
from setuptools import find_packages, setup

setup(
    name="vlm-r1",
    version="0.1.0",
    description="GRPO fine-tuning of vision-language models with rule-based, verifiable rewards",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    package_dir={"": "src"},
    packages=find_packages("src"),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.6",
        "torchvision",
        "transformers>=5.0,<6",
        "trl>=1.16,<2",
        "peft>=0.17",
        "accelerate>=1.10",
        "datasets>=3.0",
        "pycocotools>=2.0.8",
        "qwen-vl-utils>=0.0.10",
        "pillow>=10",
        "numpy",
        "scipy",
        "tokenizers",
        "matplotlib",
        "pyyaml",
        "tqdm",
    ],
    extras_require={
        "deepspeed": ["deepspeed>=0.16"],
        "flash-attn": ["flash-attn"],
        "vllm": ["vllm"],
        "dev": ["pytest", "hypothesis", "tensorboard", "faster-coco-eval"],
    },
    entry_points={"console_scripts": ["vlm-r1=vlm_r1.cli:main"]},
)
