"""GRQO (Group Relative Query Optimisation, DINO-R1) for transformers' Grounding DINO.

A sibling of the GRPO trainer, not a branch of it: a query-based detector samples no text, its
"group" is the decoder queries of one image at one decoder layer. Files, one concept each:

* `costs.py`      DETR/DINO matching costs (focal class, L1, GIoU) and min-cost query rewards
* `objectives.py` group advantages, the GRQO surrogate loss, the objectness KL (exact, or the k3 penalty)
* `trainer.py`    one training step: supervised loss + alpha * GRQO + beta * KL, frozen reference
* `data.py`       detection rows -> Grounding DINO batches; exhaustively labelled synthetic rows
* `coco_eval.py`  detector outputs -> per-image boxes for the shared COCO evaluator (`vlm_r1.evaluation`)
* `tiny.py`       an offline tiny Grounding DINO (from config, a local WordPiece vocabulary)
* `loading.py`    `load_detector`: the one place a detector and its processor are loaded
* `checkpointing.py` output_dir checks, checkpoint-N folders and resuming them
* `config.py`     `GRQOConfig`; `train.py` the entry point (`python -m vlm_r1.grqo.train`, `main(argv)`)

See docs/grqo.md for the method, our reading of the paper and its simplifications.
"""
