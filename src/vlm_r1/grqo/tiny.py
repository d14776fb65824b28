"""An offline tiny Grounding DINO that loads exactly like a real checkpoint.

`make_tiny_grounding_dino(out_dir)` writes a folder that `GroundingDinoForObjectDetection.from_pretrained`
and `GroundingDinoProcessor.from_pretrained` load, with nothing downloaded:

* tokenizer: a WordPiece vocabulary of the colour / shape / prompt words, letters and digits,
  laid out at bert-base-uncased's ids for the tokens Grounding DINO hard-codes
  (`[PAD]`=0, `[UNK]`=100, `[CLS]`=101, `[SEP]`=102, `[MASK]`=103, "."=1012, "?"=1029 — the
  model splits a prompt into phrases at these ids), filled with `[unusedN]` elsewhere, wrapped as
  transformers' `BertTokenizer`;
* model: `GroundingDinoForObjectDetection` from config, random init (fixed seed): a 3-stage basic
  ResNet backbone built from `ResNetConfig` (transformers' own, no timm, no pretrained weights),
  a 1-layer BERT text encoder, d_model 32, 1 encoder / 2 decoder layers, 30 queries,
  `auxiliary_loss=True` (per-layer outputs are what GRQO's groups are made of);
* image processor: Grounding DINO's, resizing to `image_size` pixels.

Simplifications: sizes are toy (about 0.2M parameters); the text encoder is random, so class
names are only symbols to it; dropout is off (Grounding DINO's and BERT's) so that a policy and its reference agree exactly
when their weights do.
"""

from __future__ import annotations

from pathlib import Path

# bert-base-uncased ids that Grounding DINO's modelling code hard-codes (SPECIAL_TOKENS + [PAD]).
FIXED_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black", "cyan", "magenta",
           "pink", "brown", "gray", "grey", "violet", "teal", "lime", "navy", "gold", "silver")  # fmt: skip
SHAPES = ("circle", "square", "triangle", "rectangle", "star", "ellipse", "oval", "diamond", "hexagon",
          "pentagon", "cross", "heart", "ring", "shape", "object", "box", "dot", "line")  # fmt: skip
PROMPT_WORDS = ("detect", "find", "locate", "all", "the", "a", "an", "and", "of", "in", "image", "every",
                "small", "large", "big", "tiny", "left", "right", "top", "bottom", "there", "is", "are")  # fmt: skip


def _word_pieces() -> list[str]:
    """The vocabulary's own tokens, sorted: every built-in word whole, and each letter and digit alone and as a
    `##` continuation, so that any other lower-case word still tokenizes. A fixed list, not WordPiece training:
    `tokenizers`' WordPiece trainer breaks count ties in an order that changes from one process to the next, so it
    gave another vocabulary, and so other token ids and another model, at each launch."""
    import string

    characters = string.ascii_lowercase + string.digits
    pieces = {*COLOURS, *SHAPES, *PROMPT_WORDS, *characters, *(f"##{c}" for c in characters)}
    return sorted(pieces - set(FIXED_IDS))


def build_vocab() -> dict[str, int]:
    """BERT-layout vocabulary: the fixed ids above, the word pieces in the free slots, `[unusedN]` filler."""
    learned = _word_pieces()
    size = max(max(FIXED_IDS.values()) + 1, len(learned) + len(FIXED_IDS))
    slots = [None] * size
    for token, i in FIXED_IDS.items():
        slots[i] = token
    free = (i for i, s in enumerate(slots) if s is None)
    for token in learned:
        slots[next(free)] = token
    unused = 0
    for i, s in enumerate(slots):
        if s is None:
            slots[i] = f"[unused{unused}]"
            unused += 1
    return {token: i for i, token in enumerate(slots)}


def build_processor(image_size: int = 128):
    """GroundingDinoProcessor with the offline tokenizer and an image processor at `image_size` px."""
    from transformers import BertTokenizer, GroundingDinoImageProcessor, GroundingDinoProcessor

    tokenizer = BertTokenizer(vocab=build_vocab(), do_lower_case=True)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": image_size, "longest_edge": image_size})
    return GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_config(vocab_size: int, d_model: int = 32, num_queries: int = 30, max_text_len: int = 128):
    """GroundingDinoConfig of the tiny model (d_model must be a multiple of 32: GroupNorm(32, d))."""
    from transformers import BertConfig, GroundingDinoConfig, ResNetConfig

    backbone = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64], depths=[1, 1, 1], layer_type="basic",
                            out_features=["stage2", "stage3"])  # fmt: skip
    text = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=max_text_len, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0)  # fmt: skip
    return GroundingDinoConfig(
        backbone_config=backbone, text_config=text, d_model=d_model, num_queries=num_queries,
        encoder_layers=1, decoder_layers=2, encoder_ffn_dim=2 * d_model, decoder_ffn_dim=2 * d_model,
        encoder_attention_heads=2, decoder_attention_heads=2, num_feature_levels=3,
        encoder_n_points=2, decoder_n_points=2, max_text_len=max_text_len, auxiliary_loss=True,
        dropout=0.0, fusion_droppath=0.0,
    )  # fmt: skip


def make_tiny_grounding_dino(out_dir, *, seed: int = 0, image_size: int = 128, d_model: int = 32,
                             num_queries: int = 30) -> Path:  # fmt: skip
    """Build, seed and save the tiny model + processor into `out_dir`; returns the folder."""
    import torch
    from transformers import GroundingDinoForObjectDetection

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    processor = build_processor(image_size)
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(tiny_config(len(processor.tokenizer), d_model, num_queries))
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
