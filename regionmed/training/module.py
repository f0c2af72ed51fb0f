"""The LightningModule: receives a model, loss weights and optimiser settings; owns no architecture.

Validation measures what training is for, on the val split: image→report retrieval (R@1/5/10
of the region-aware image embedding), and — when the model has the region path — how often a
region's true phrase beats all of its hard negatives, and the pointing game of finding phrases
(lenient: the best-scoring patch cell overlaps the true box).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from regionmed.evaluation.retrieval import retrieval_metrics
from regionmed.model.losses import ClipLoss, cell_overlap_targets, hierarchical_loss
from regionmed.model.regionclip import RegionCLIP

TEXT_LEVELS_OF_LOSS = {
    "global": ("report",),
    "modality": ("modality_text",),
    "anatomy": ("anatomy_text",),
    "finding": ("finding_text",),
    "negation": ("finding_text", "negation_text"),
}
NO_DECAY_NAMES = ("bias", "LayerNorm", "layernorm", "norm", "logit_scale", "embeddings")


@dataclass(frozen=True)
class OptimConfig:
    lr: float
    weight_decay: float
    warmup_steps: int
    total_steps: int
    gradient_clip_val: float = 0.0
    # One fused kernel for the whole update: the per-tensor path was ~40% of a CPU step. Not with
    # fp16 loss scaling, where the fused optimiser unscales internally and clipping would see scaled grads.
    fused: bool = True
    # the box head's parameters in groups of their own at this rate (None: ``lr``), same schedule
    box_head_lr: float | None = None


class RegionMedModule(L.LightningModule):
    def __init__(
        self,
        model: RegionCLIP,
        loss_weights: dict[str, float],
        optim: OptimConfig,
        grounding_centre: float = 0.0,
    ):
        super().__init__()
        self.model, self.optim, self.grounding_centre = model, optim, grounding_centre
        self.loss_weights = {k: v for k, v in loss_weights.items() if v}
        if model.global_only and {"region", "grounding", "box"} & set(self.loss_weights):
            raise ValueError("a global_only model cannot train the region, grounding or box loss")
        if "box" in self.loss_weights and model.box_head is None:
            raise ValueError("the box loss needs a box head (model.roi.box_head)")
        # levels whose text must be encoded for the active losses (fewer texts = faster steps)
        self.text_levels = tuple(
            dict.fromkeys(lv for k in self.loss_weights for lv in TEXT_LEVELS_OF_LOSS.get(k, ()))
        )
        self._val: dict[str, list] = {}

    def setup(self, stage: str) -> None:
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        # local_loss + gather_with_grad: exact global-batch InfoNCE under DDP (see model.losses)
        self.clip_loss = ClipLoss(local_loss=world > 1, gather_with_grad=True, rank=rank, world_size=world)

    def _batch_for(self, batch: dict) -> dict:
        keep = {"pixels", *self.text_levels}
        if "negation" in self.loss_weights:
            keep.add("negation_mask")
        if {"region", "grounding", "box"} & set(self.loss_weights):
            keep |= {"region_boxes", "region_batch", "phrase_index", "hard_negative_index", "text_table"}
        if "grounding" in self.loss_weights:
            keep |= {"ground_index", "ground_region", "ground_group"}
        if "box" in self.loss_weights:
            keep.add("box_anchor_offset")
        return {k: v for k, v in batch.items() if k in keep}

    def on_train_start(self) -> None:
        # a run resumed from a checkpoint goes on inside an epoch, for which Lightning does not call
        # on_train_epoch_start: the dataset still needs that epoch's augmentation stream
        self.on_train_epoch_start()

    def on_train_epoch_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and hasattr(datamodule, "train_set"):
            datamodule.train_set.epoch = self.current_epoch  # a fresh augmentation stream per epoch

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        with attention_kernels(batch["pixels"].device):
            outputs = self.model(
                self._batch_for(batch),
                text_levels=self.text_levels,
                ground_cells="grounding" in self.loss_weights,
            )
        region_weight = None
        if "region_weight" in batch and outputs.has_regions:
            region_weight = batch["region_weight"].to(outputs.region.device)
        total, parts = hierarchical_loss(
            outputs,
            self.loss_weights,
            self.clip_loss,
            region_weight=region_weight,
            grounding_centre=self.grounding_centre,
        )
        bsz = batch["pixels"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=bsz)
        for name, value in parts.items():
            self.log(f"train/loss_{name}", value, batch_size=bsz)
        self.log("train/temperature", 1 / outputs.logit_scale.detach(), batch_size=bsz)
        return total

    # ---- validation ------------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._val = {"image": [], "report": [], "report_text": [], "hardneg_hit": [], "pointing_hit": []}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        with_regions = not self.model.global_only
        val_batch = {k: batch[k] for k in ("pixels", "report")}
        if with_regions:
            val_batch |= {
                k: batch[k]
                for k in ("region_boxes", "region_batch", "phrase_index", "hard_negative_index", "text_table")
            }
        out = self.model(val_batch, text_levels=("report",), ground_cells=with_regions)
        self._val["image"].append(out.image.float().cpu())
        self._val["report"].append(out.text["report"].float().cpu())
        self._val["report_text"] += batch["report_text"]  # identical reports are all positives
        if out.has_regions and len(out.region):
            true = (out.region * out.phrase).sum(-1)
            neg = torch.einsum("nd,nkd->nk", out.region, out.hard_negative).masked_fill(
                ~out.hard_negative_mask, -math.inf
            )
            has_neg = out.hard_negative_mask.any(1)
            hits = (true[:, None] > neg).all(1)[has_neg]
            self._val["hardneg_hit"].append(hits.float().cpu())
            finding = torch.tensor([k == "finding" for k in batch["region_kind"]], dtype=torch.bool)
            if finding.any():
                scores = torch.einsum("nd,ngd->ng", out.phrase, out.cell_region[out.region_batch])
                overlap = cell_overlap_targets(out.region_boxes.float(), out.cell_boxes.float())
                peak_in_box = overlap.gather(1, scores.argmax(1, keepdim=True)).squeeze(1) > 0
                self._val["pointing_hit"].append(peak_in_box[finding].float().cpu())

    def on_validation_epoch_end(self) -> None:
        if not self._val.get("image"):
            return
        image, report = torch.cat(self._val["image"]), torch.cat(self._val["report"])
        metrics = retrieval_metrics(
            image.numpy(),
            report.numpy(),
            query_groups=self._val["report_text"],
            gallery_groups=self._val["report_text"],
            ks=(1, 5, 10),
        )
        for k in (1, 5, 10):
            self.log(f"val/i2t_R@{k}", float(metrics[f"recall@{k}"]))
        self.log("val/chance_R@5", min(1.0, 5 / max(len(image), 1)))
        if self._val["hardneg_hit"]:
            self.log("val/hardneg_acc", float(torch.cat(self._val["hardneg_hit"]).mean()))
        if self._val["pointing_hit"]:
            self.log("val/pointing_lenient", float(torch.cat(self._val["pointing_hit"]).mean()))

    # ---- optimisation ----------------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer) -> None:
        # Clipping here, not through the Trainer: Lightning refuses to clip for a fused optimiser.
        if self.optim.gradient_clip_val > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optim.gradient_clip_val)

    def configure_optimizers(self):
        own_rate = self.optim.box_head_lr is not None
        groups: dict[tuple[bool, bool], list] = {(h, d): [] for h in (False, True) for d in (True, False)}
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                head = own_rate and name.startswith("box_head.")
                decays = not (param.ndim < 2 or any(n in name for n in NO_DECAY_NAMES))
                groups[head, decays].append(param)
        optimizer = torch.optim.AdamW(
            [
                {
                    "params": params,
                    "weight_decay": self.optim.weight_decay if decays else 0.0,
                    "lr": self.optim.box_head_lr if head else self.optim.lr,
                }
                for (head, decays), params in groups.items()
                if params or not head  # the two groups of the rest always (a checkpoint's shape)
            ],
            lr=self.optim.lr,
            fused=self.optim.fused,
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, warmup_cosine(self.optim.warmup_steps, self.optim.total_steps)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def attention_kernels(device: torch.device):
    """Under bf16 autocast on a CPU, the math attention kernel: its backward is 2.5-5x faster than the
    flash kernel's at these sizes (benchmarks/bench_train.py); elsewhere, torch's own choice.
    The kernel is picked in the forward pass and its backward follows it."""
    if (
        device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    ):
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()


def warmup_cosine(warmup: int, total: int):
    """Linear warm-up, then cosine decay to 10% of the peak learning rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def seed_everything(seed: int) -> None:
    L.seed_everything(seed, workers=True, verbose=False)
    np.random.seed(seed)
