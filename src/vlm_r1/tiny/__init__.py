"""Offline tiny vision-language models that load exactly like real checkpoints.

Nothing here touches a network. `build_tokenizer` trains a byte-level BPE (HF `tokenizers`) on a
small built-in corpus of grounding / counting / classification prompts and answers, then wraps it
as transformers' `Qwen2Tokenizer` with Qwen's special tokens (plus InternVL's) and a Qwen-style
chat template. `make_tiny` builds a randomly initialised model of a real architecture from a small
config (fixed seed), pairs it with that tokenizer and the architecture's own image/video
processors, and writes everything with `save_pretrained`. The folder then loads through
`AutoModelForImageTextToText.from_pretrained` / `AutoProcessor.from_pretrained`, remote code off.

Simplifications, stated: one vocabulary for every model type (only the named special tokens and
the image placeholder in the chat template differ); no default system prompt; word embeddings
are tied; the sizes are far below anything that can reason, they exist to exercise the code path
and to learn toy synthetic tasks on a CPU.
"""

from .models import DEFAULT_SIZES, make_tiny
from .tokenizer import MODEL_TYPES, SPECIAL_TOKENS, build_tokenizer, chat_template

__all__ = ["DEFAULT_SIZES", "MODEL_TYPES", "SPECIAL_TOKENS", "build_tokenizer", "chat_template", "make_tiny"]
