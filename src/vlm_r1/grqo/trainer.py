"""The GRQO training step for transformers' `GroundingDinoForObjectDetection`.

One step = one forward of the policy with `labels` (the model's own supervised loss: Hungarian
matching, focal + L1 + GIoU, per decoder layer when `auxiliary_loss`, plus the encoder's) and then

    loss = L_supervised + alpha * L_GRQO + beta * KL_objectness

* L_GRQO (`objectives.grqo_loss`) is built from the same forward's per-layer outputs
  (`auxiliary_outputs` + final layer): no extra forward.
* KL_objectness (`objectives.objectness_kl`) needs a forward of the frozen reference model on the
  same inputs (no labels, no grad). The reference is a deep copy of the policy at the start,
  refreshed (weights copied) every `ref_refresh_steps` optimizer steps; it never trains.

Either term can be switched off; with both off this is plain supervised fine-tuning (the baseline).
A step whose model outputs (logits, boxes, encoder outputs) hold NaN or +inf is stopped before the
supervised loss (whose matcher would fail on NaN boxes), and a non-finite total loss before the
backward pass: both raise FloatingPointError naming the step.
"""

from __future__ import annotations

import copy
import time

import torch

from vlm_r1.grqo.config import GRQOConfig, check_model_config
from vlm_r1.grqo.costs import CostWeights
from vlm_r1.grqo.data import MODEL_INPUT_KEYS
from vlm_r1.grqo.objectives import grqo_loss, objectness_kl


def batch_to(batch: dict, device) -> dict:
    """Move model inputs and labels of a `data.make_batch` dict to `device`."""
    out = {k: v.to(device) for k, v in batch.items() if k in MODEL_INPUT_KEYS}
    if "labels" in batch:
        out["labels"] = [{k: v.to(device) for k, v in t.items()} for t in batch["labels"]]
    return out


def frozen_copy(model):
    """A detached, eval-mode, no-grad deep copy of `model` (the reference)."""
    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


SLOW_MODULES = (".backbone.", ".text_backbone.")  # the image backbone and the text encoder (BERT)


def build_optimizer(model, cfg: GRQOConfig) -> torch.optim.Optimizer:
    """AdamW with the image backbone and the text encoder (parameters under SLOW_MODULES) at learning_rate *
    backbone_lr_scale, as Grounding DINO's own recipes train them, and everything else at learning_rate."""
    backbone, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if any(module in f".{name}" for module in SLOW_MODULES) else rest).append(p)
    groups = [{"params": rest, "lr": cfg.learning_rate}]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.learning_rate * cfg.backbone_lr_scale})
    return torch.optim.AdamW(groups, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)


class GRQOTrainer:
    """Holds policy, reference and optimizer; `training_step(batch)` does one update and returns logs."""

    def __init__(self, model, cfg: GRQOConfig):
        check_model_config(cfg, model.config)
        self.cfg = cfg
        self.model = model
        model.config.auxiliary_loss = cfg.auxiliary_loss
        model.train()
        self.ref_model = frozen_copy(model) if cfg.use_kl else None
        self.optimizer = build_optimizer(model, cfg)
        self.weights = CostWeights(cls=cfg.cost_class, l1=cfg.cost_bbox, giou=cfg.cost_giou)
        self.kl_top_k = cfg.kl_top_k or model.config.num_queries
        self.step = 0
        self.reference_step = 0  # the step whose weights the reference holds (0: the starting weights)
        self._supervised_loss = model.loss_function  # transformers' loss, called by the forward given labels
        model.loss_function = self._checked_supervised_loss

    def _checked_supervised_loss(self, *args, **kwargs):
        """The model's supervised loss; FloatingPointError instead when a tensor it is given (logits, boxes, encoder
        outputs) holds NaN or +inf (text logits are -inf at padding positions, which is expected)."""
        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                if torch.isnan(value).any() or torch.isposinf(value).any():
                    raise FloatingPointError(f"non-finite model output at step {self.step + 1} (NaN or inf logits or "
                                             "boxes): the weights have diverged; lower learning_rate, or keep "
                                             "max_grad_norm > 0")  # fmt: skip
        return self._supervised_loss(*args, **kwargs)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def refresh_reference(self) -> None:
        """Copy the policy's current weights into the frozen reference."""
        if self.ref_model is not None:
            self.ref_model.load_state_dict(self.model.state_dict())
            self.reference_step = self.step

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss of a batch (already on the device) and its parts as floats."""
        from transformers.models.grounding_dino.modeling_grounding_dino import build_label_maps

        cfg = self.cfg
        inputs = {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}
        out = self.model(**inputs, labels=batch["labels"])
        loss = out.loss
        logs = {"loss_supervised": out.loss.item()}
        logs.update({k: v.item() for k, v in out.loss_dict.items() if k in ("loss_ce", "loss_bbox", "loss_giou")})
        if cfg.use_grqo:
            layers = [out.logits], [out.pred_boxes]
            if cfg.grqo_layers == "all" and out.auxiliary_outputs:
                layers = ([a["logits"] for a in out.auxiliary_outputs] + [out.logits],
                          [a["pred_boxes"] for a in out.auxiliary_outputs] + [out.pred_boxes])  # fmt: skip
            label_maps = build_label_maps(out.logits, batch["input_ids"])
            term, stats = grqo_loss(torch.stack(layers[0]), torch.stack(layers[1]), batch["labels"], label_maps,
                                    self.weights, cfg.grqo_surrogate, cfg.advantage_eps)  # fmt: skip
            loss = loss + cfg.grqo_alpha * term
            logs.update(loss_grqo=term.item(), reward_mean=stats.reward_mean, adv_abs_mean=stats.adv_abs_mean)
        if cfg.use_kl:
            with torch.no_grad():
                ref_out = self.ref_model(**inputs)
            policy, reference = out.enc_outputs_class, ref_out.enc_outputs_class
            kl = objectness_kl(policy, reference, self.kl_top_k, cfg.kl_outcomes)
            loss = loss + cfg.kl_beta * kl
            logs["kl_objectness"] = kl.item()  # the term added, as configured
            if cfg.kl_outcomes != "exact":  # a k3 penalty: log the exact KL beside it
                logs["kl_exact"] = objectness_kl(policy.detach(), reference, self.kl_top_k, "exact").item()
        logs["loss"] = loss.item()
        return loss, logs

    def training_step(self, batch: dict) -> dict[str, float]:
        """One optimizer step on a `data.make_batch` dict; refreshes the reference when due."""
        start = time.perf_counter()
        loss, logs = self.compute_loss(batch_to(batch, self.device))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.step + 1}: {logs}")
        loss.backward()
        if self.cfg.max_grad_norm > 0:
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.ref_model is not None and self.cfg.ref_refresh_steps and self.step % self.cfg.ref_refresh_steps == 0:
            self.refresh_reference()
        logs["step"] = self.step
        logs["step_time_s"] = time.perf_counter() - start
        return logs
