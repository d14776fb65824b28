"""The tiny offline tokenizer: a byte-level BPE trained here, wrapped as transformers' Qwen2Tokenizer.

It uses Qwen2's own normaliser and pre-tokeniser (so every digit is its own token), Qwen's special
tokens plus InternVL's, and a Qwen-style chat template. One vocabulary serves every model type;
only the template's image placeholder and the named tokens a processor looks up differ.
"""

from __future__ import annotations

import functools
import json

from .corpus import corpus

MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "internvl")

# Special tokens, in id order, appended right after the BPE vocabulary (as Qwen does).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>",
    "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
    "<img>", "</img>", "<IMG_CONTEXT>", "<video>",
    "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>",
)  # fmt: skip

BPE_VOCAB_SIZE = 1024  # byte alphabet (256) + learned merges; the special tokens come on top

# Named special tokens each processor class looks up on its tokenizer.
_NAMED_TOKENS = {
    "qwen": {
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_start_token": "<|vision_start|>",
        "vision_end_token": "<|vision_end|>",
    },
    "internvl": {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    },
}
_PLACEHOLDERS = {  # what one {"type": "image"} / {"type": "video"} part renders to
    "qwen": ("<|vision_start|><|image_pad|><|vision_end|>", "<|vision_start|><|video_pad|><|vision_end|>"),
    "internvl": ("<IMG_CONTEXT>\n", "<video>\n"),
}

_CHAT_TEMPLATE = """\
{%- macro render(content) -%}
    {%- if content is string -%}
        {{- content -}}
    {%- elif content is not none -%}
        {%- for part in content -%}
            {%- if part['type'] == 'image' or 'image' in part or 'image_url' in part -%}
                {{- @IMAGE@ -}}
            {%- elif part['type'] == 'video' or 'video' in part -%}
                {{- @VIDEO@ -}}
            {%- elif 'text' in part -%}
                {{- part['text'] -}}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro -%}
{%- for message in messages -%}
    {{- '<|im_start|>' + message['role'] + '\\n' -}}
    {%- if message['role'] == 'assistant' -%}
        {%- generation -%}
            {{- render(message['content']) + '<|im_end|>' -}}
        {%- endgeneration -%}
        {{- '\\n' -}}
    {%- else -%}
        {{- render(message['content']) + '<|im_end|>\\n' -}}
    {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\\n' -}}
{%- endif -%}
"""


def family(model_type: str) -> str:
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
    return "internvl" if model_type == "internvl" else "qwen"


def chat_template(model_type: str = "qwen2_vl") -> str:
    """The Jinja chat template for `model_type` (Qwen's im_start/im_end turns; no default system)."""
    image, video = ("'" + p.replace("\n", "\\n") + "'" for p in _PLACEHOLDERS[family(model_type)])
    return _CHAT_TEMPLATE.replace("@IMAGE@", image).replace("@VIDEO@", video)


@functools.lru_cache(maxsize=2)
def _train_bpe(vocab_size: int) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    """Train the byte-level BPE with the same normaliser and pre-tokeniser Qwen2Tokenizer uses."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    vocab = tuple(sorted(model["vocab"].items(), key=lambda kv: kv[1]))
    merges = tuple(tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"])
    return vocab, merges


def build_tokenizer(save_dir=None, *, model_type: str = "qwen2_vl", vocab_size: int = BPE_VOCAB_SIZE):
    """A `Qwen2Tokenizer` trained offline: byte-level BPE, one token per digit, Qwen's special tokens.

    eos is `<|im_end|>`, pad is `<|endoftext|>`, padding side is left. `model_type` only picks the
    chat template's image placeholder and the named tokens the processor looks up; the vocabulary
    is the same for every model type. Deterministic; saved with `save_pretrained` if `save_dir`.
    """
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    named_tokens = _NAMED_TOKENS[family(model_type)]
    bpe_vocab, merges = _train_bpe(vocab_size)
    vocab = dict(bpe_vocab)
    for token in SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[tuple(m) for m in merges],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        model_max_length=4096,
        chat_template=chat_template(model_type),
        **named_tokens,
    )
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True)
    if save_dir is not None:
        tokenizer.save_pretrained(str(save_dir))
    return tokenizer
