"""RegionCLIP: a CLIP whose image embedding is region-aware, and the baseline CLIP as the same code.

Pixels in, embeddings out. The model takes float pixels in 0..1 ``[B, C, H, W]`` and normalises them
itself (mean/std from the config), so training and serving cannot disagree on it.

Two image embeddings share one projection head (``image_proj``) and so one space:
- global: the CLS feature;
- region-aware: the CLS feature plus a gated attention pool of region features over the fixed
  multi-scale grid proposals. Proposals, not the annotated boxes, in training as at serving, so the
  embedding means the same thing with and without annotations. Annotated boxes feed the region
  features (``region_proj``) that the region-phrase loss aligns with phrases.

``global_only=True`` builds no region modules at all: ``encode_image`` is the global embedding and
the parameter names of the shared part are the same, so weights move between the two modes with
``load_state_dict(..., strict=False)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig

from regionmed.model.box_head import BoxHead
from regionmed.model.config import TEXT_LEVELS, ModelConfig
from regionmed.model.encoders import ImageEncoder, TextEncoder
from regionmed.model.outputs import Grounding, RegionCLIPOutput
from regionmed.model.roi import (
    RoiProcessor,
    cell_boxes,
    grid_proposals,
    pack_by_image,
    peak_boxes,
    roi_align_batched,
    with_batch_index,
)
from regionmed.model.text import encode_unique, token_ids_hash

MAX_LOGIT_SCALE = 100.0


class RegionCLIP(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        vocab_size: int | None = None,
        pad_token_id: int = 0,
        global_only: bool = False,
        hf_configs: dict[str, PretrainedConfig] | None = None,
    ):
        super().__init__()
        hf_configs = hf_configs or {}
        self.config, self.global_only, self.pad_token_id = config, global_only, pad_token_id
        self.image_encoder = ImageEncoder(config.vision, hf_config=hf_configs.get("vision"))
        self.text_encoder = TextEncoder(
            config.text, vocab_size, pad_token_id, hf_config=hf_configs.get("text")
        )
        vh, th, dim = self.image_encoder.hidden, self.text_encoder.hidden, config.embed_dim
        self.image_proj = nn.Linear(vh, dim, bias=False)
        self.text_proj = nn.Linear(th, dim, bias=False)
        self.roi = None if global_only else RoiProcessor(config.roi, vh)
        self.region_proj = None if global_only else nn.Linear(self.roi.width, dim, bias=False)
        box = config.roi.box_head
        self.box_head = None if global_only or box is None else BoxHead(box, config.vision.channels, vh, dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / config.init_temperature)))
        # not persistent: they come from the config, which is saved beside the weights
        self.register_buffer("pixel_mean", torch.tensor(config.vision.pixel_mean), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(config.vision.pixel_std), persistent=False)
        self.set_gradient_checkpointing(config.gradient_checkpointing)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        self.image_encoder.set_gradient_checkpointing(enabled)
        self.text_encoder.set_gradient_checkpointing(enabled)

    def scale(self) -> torch.Tensor:
        """The logit scale ``1/T``, capped at 100 (clamped in log space, so no NaN and no runaway)."""
        return self.logit_scale.clamp(max=math.log(MAX_LOGIT_SCALE)).exp()

    # ---- image side -------------------------------------------------------------------------
    def _features(self, pixels: torch.Tensor):
        normed = (pixels - self.pixel_mean) / self.pixel_std
        global_feat, grid = self.image_encoder(normed)
        return normed, global_feat, grid

    def _region_feats(
        self, normed, global_feat, grid, box_sets: list[torch.Tensor], attend: list[bool] | None = None
    ) -> list[torch.Tensor]:
        """Fused region features ``[B, R, C]`` for each box set (``[R, 4]`` shared or ``[B, R, 4]``);
        ``attend[k]`` False: set ``k`` skips the cross-attention (see :class:`RoiProcessor`)."""
        crop_feats = None
        if self.config.roi.crop_branch:
            size, bsz = self.config.roi.crop_size, normed.shape[0]
            crop_feats = []
            for boxes in box_sets:
                per_image = boxes.expand(bsz, -1, -1) if boxes.dim() == 2 else boxes
                crops = roi_align_batched(normed, per_image, size, 2)  # each box resized to crop_size
                feats = self.image_encoder(crops.flatten(0, 1))[0]
                crop_feats.append(feats.reshape(bsz, per_image.shape[1], -1))
        return self.roi.region_features(grid, global_feat, box_sets, crop_feats, attend)

    def _proposals(self, device) -> torch.Tensor:
        return grid_proposals(self.config.roi.grid_sizes, device=device)

    def _cells_attend(self) -> bool:
        return self.config.roi.cell_path == "fusion"

    def _proposals_attend(self, proposals: torch.Tensor, cells: torch.Tensor) -> bool:
        """With ``grid_sizes == [patch grid]`` the proposals *are* the cells and take the cell path;
        other proposals take the whole region path. Training and ``encode_image`` both ask here."""
        return self._cells_attend() or not torch.equal(proposals, cells)

    def encode_image_global(self, pixels: torch.Tensor) -> torch.Tensor:
        _, global_feat, _ = self._features(pixels)
        return F.normalize(self.image_proj(global_feat), dim=-1)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """Region-aware image embedding ``[B, D]`` (the global one when ``global_only``)."""
        if self.global_only:
            return self.encode_image_global(pixels)
        normed, global_feat, grid = self._features(pixels)
        proposals = self._proposals(pixels.device)
        attend = self._proposals_attend(proposals, cell_boxes(*grid.shape[-2:], device=pixels.device))
        (feats,) = self._region_feats(normed, global_feat, grid, [proposals], [attend])
        return F.normalize(self.image_proj(self.roi.image_feature(global_feat, feats)), dim=-1)

    def encode_regions(self, pixels: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """Per-image boxes ``[Ni, 4]`` (normalised x0, y0, x1, y1) → region embeddings ``[sum Ni, D]``."""
        self._require_regions("encode_regions")
        normed, global_feat, grid = self._features(pixels)
        boxes5 = with_batch_index([b.to(pixels.device, torch.float32) for b in boxes])
        packed, mask, _ = pack_by_image(boxes5[:, 1:], boxes5[:, 0].long(), pixels.shape[0])
        (feats,) = self._region_feats(normed, global_feat, grid, [packed])
        return F.normalize(self.region_proj(feats[mask]), dim=-1)

    @torch.no_grad()
    def ground(self, pixels: torch.Tensor, text_emb: torch.Tensor) -> Grounding:
        """Where in each image is its phrase? → :class:`Grounding` ``(heatmap [B, gh, gw], box [B, 4])``.

        The heatmap: every patch cell scored as a region by the cell path the grounding loss trained
        (``roi.cell_path``: through the whole region head, or its token before the cross-attention),
        cosine with the phrase; raw patch tokens never met a phrase in training and point much worse.
        The box: the best-scoring candidate among the cells, the multi-scale grid proposals and, with
        ``proposals: similarity``, boxes centred on the heatmap's top cells, all scored by the whole
        region path of :meth:`encode_regions`; with ``roi.box_head``, the box head's box at the
        heatmap's peak cell instead (its anchor; :mod:`regionmed.model.box_head`) wherever the head's
        window holds that box whole (a finding; not a lung, whose edges the window does not see).
        ``global_only`` (no region head): the cells' projected patch tokens, and the peak cell as the box.
        """
        normed, global_feat, grid = self._features(pixels)
        bsz, _, gh, gw = grid.shape
        cells = cell_boxes(gh, gw, device=pixels.device)
        text_emb = F.normalize(text_emb.to(grid.dtype), dim=-1)
        if self.global_only:
            tokens = F.normalize(self.image_proj(grid.flatten(2).transpose(1, 2)), dim=-1)
            heat = torch.einsum("bgd,bd->bg", tokens, text_emb)
            return Grounding(heat.reshape(bsz, gh, gw), cells[heat.argmax(1)])

        def score(boxes: torch.Tensor) -> torch.Tensor:  # [B, P, 4] -> [B, P]
            return torch.einsum(
                "bpd,bd->bp", self._score_boxes(normed, global_feat, grid, [boxes])[0], text_emb
            )

        proposals = self._proposals(pixels.device)
        fused_cells, proposal_scores = (
            torch.einsum("bpd,bd->bp", f, text_emb)
            for f in self._score_boxes(normed, global_feat, grid, [cells, proposals])
        )
        heat = fused_cells
        if not self._cells_attend():
            (direct,) = self._score_boxes(normed, global_feat, grid, [cells], [False])
            heat = torch.einsum("bpd,bd->bp", direct, text_emb)
        candidates = [cells.expand(bsz, -1, -1), proposals.expand(bsz, -1, -1)]
        scores = [fused_cells, proposal_scores]
        if self.config.roi.proposals == "similarity":
            peaks = peak_boxes(heat.reshape(bsz, gh, gw))
            candidates.append(peaks)
            scores.append(score(peaks))
        all_boxes, all_scores = torch.cat(candidates, dim=1), torch.cat(scores, dim=1)
        box = all_boxes[torch.arange(bsz), all_scores.argmax(1)]
        if self.box_head is not None:  # its box where its window holds it whole, else the candidate's
            anchor = cells[heat.argmax(1)].reshape(bsz, 2, 2).mean(1)  # the peak cell's centre
            index = torch.arange(bsz, device=pixels.device)
            drawn = self.box_head(normed, grid, text_emb, index, anchor)
            fits = self.box_head.fits(drawn, (gh, gw))
            box = torch.where(fits[:, None], drawn.clamp(0, 1).to(box.dtype), box)
        return Grounding(heat.reshape(bsz, gh, gw), box)

    def _train_boxes(self, normed, grid, batch: dict, phrase: torch.Tensor) -> torch.Tensor:
        """The box head's box of each given region, from its jittered anchor (see :meth:`forward`)."""
        gh, gw = grid.shape[-2:]
        boxes = batch["region_boxes"].to(torch.float32)
        cell = boxes.new_tensor([1 / gw, 1 / gh])
        offset = batch["box_anchor_offset"].to(boxes)
        anchor = (boxes[:, :2] + boxes[:, 2:]) / 2 + offset * cell * self.box_head.config.anchor_jitter
        return self.box_head(normed, grid, phrase, batch["region_batch"], anchor)

    def _score_boxes(
        self, normed, global_feat, grid, box_sets: list[torch.Tensor], attend: list[bool] | None = None
    ) -> list[torch.Tensor]:
        feats = self._region_feats(normed, global_feat, grid, box_sets, attend)
        return [F.normalize(self.region_proj(f), dim=-1) for f in feats]

    def _require_regions(self, what: str) -> None:
        if self.global_only:
            raise RuntimeError(f"{what} needs the region path, and this is a global_only model")

    # ---- text side ------------------------------------------------------------------------------
    def _encode_text_raw(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[0] == 0:  # the HF towers cannot reshape an empty batch
            return self.text_proj.weight.new_zeros(0, self.config.embed_dim)
        return F.normalize(self.text_proj(self.text_encoder(input_ids, attention_mask)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, L]`` → normalised text embeddings ``[B, D]`` (distinct rows encoded once)."""
        return encode_unique(self._encode_text_raw, [(input_ids, attention_mask)], self.pad_token_id)[0]

    # ---- training ------------------------------------------------------------------------------
    def forward(
        self, batch: dict, text_levels: tuple[str, ...] | None = None, ground_cells: bool = False
    ) -> RegionCLIPOutput:
        """Everything the losses need, from a collated batch (see ``regionmed.training.data``).

        ``batch``: ``pixels``; per text level ``{"input_ids", "attention_mask"}``; for regions
        ``region_boxes [N, 4]``, ``region_batch [N]``, ``phrase_index [N]`` and
        ``hard_negative_index [N, K]`` (-1 = padding) into the distinct texts ``text_table``;
        optional ``negation_mask [B]`` and grounding queries ``ground_index [M]`` (into
        ``text_table``), ``ground_region [M]`` (the region each was made from) and
        ``ground_group [M, N]`` (the regions each names); with a box head, ``box_anchor_offset [N, 2]``
        (-1..1 per axis) places each region's training anchor at its box centre plus the offset times
        ``roi.box_head.anchor_jitter`` cells, and the head draws each region's box from there.
        ``text_levels``: which levels to encode (default: all present), e.g. only ``("report",)``.
        ``ground_cells``: also embed every patch cell of every image as a region (for the grounding
        loss). :class:`RegionCLIPOutput` says which fields each case sets, and their shapes.
        """
        pixels = batch["pixels"]
        bsz = pixels.shape[0]
        levels = [lv for lv in (text_levels or TEXT_LEVELS) if lv in batch]
        use_regions = not self.global_only and "region_boxes" in batch
        token_batches = [(batch[lv]["input_ids"], batch[lv]["attention_mask"]) for lv in levels]
        if use_regions:
            token_batches.append((batch["text_table"]["input_ids"], batch["text_table"]["attention_mask"]))
        encoded = encode_unique(self._encode_text_raw, token_batches, self.pad_token_id)
        # with regions, encoded and token_batches end with the text table: strict=False stops at the levels
        shared = {
            "text": dict(zip(levels, encoded, strict=False)),
            "text_ids": {lv: token_ids_hash(*tb) for lv, tb in zip(levels, token_batches, strict=False)},
            "logit_scale": self.scale(),
            "negation_mask": batch.get("negation_mask"),
        }
        normed, global_feat, grid = self._features(pixels)
        shared["image_global"] = F.normalize(self.image_proj(global_feat), dim=-1)
        if self.global_only:
            return RegionCLIPOutput(image=shared["image_global"], **shared)
        proposals = self._proposals(pixels.device)
        cells = cell_boxes(*grid.shape[-2:], device=pixels.device)
        # with grid_sizes == [patch grid], the proposals are the cells: embed them once
        cells_are_proposals = torch.equal(cells, proposals)
        ground_cells = ground_cells and use_regions
        box_sets, attend = [proposals], [self._proposals_attend(proposals, cells)]
        if ground_cells and not cells_are_proposals:
            box_sets.append(cells)
            attend.append(self._cells_attend())
        if use_regions:
            given, _, given_slot = pack_by_image(
                batch["region_boxes"].to(pixels.dtype), batch["region_batch"], bsz
            )
            box_sets.append(given)
            attend.append(True)
        feats = self._region_feats(
            normed, global_feat, grid, box_sets, attend
        )  # one attention pass for every set
        image = F.normalize(self.image_proj(self.roi.image_feature(global_feat, feats[0])), dim=-1)
        if not use_regions:
            return RegionCLIPOutput(image=image, **shared)
        regions = {}
        if ground_cells:  # before the regions, as ever: the order autograd sums region_proj's gradient in
            cell_feats = feats[0] if cells_are_proposals else feats[1]
            regions |= {"cell_region": F.normalize(self.region_proj(cell_feats), dim=-1), "cell_boxes": cells}
        given_feats = feats[-1][batch["region_batch"], given_slot]  # back to one row per region
        table, table_ids = encoded[-1], token_ids_hash(*token_batches[-1])
        hard_index = batch["hard_negative_index"]
        regions |= {
            "region": F.normalize(self.region_proj(given_feats), dim=-1),
            "region_batch": batch["region_batch"],
            "region_boxes": batch["region_boxes"],
            "phrase": table[batch["phrase_index"]],
            "phrase_ids": table_ids[batch["phrase_index"]],
            "hard_negative": table[hard_index.clamp(min=0)],
            "hard_negative_mask": hard_index >= 0,
            "patch_grid": tuple(grid.shape[-2:]),
        }
        if self.box_head is not None and "box_anchor_offset" in batch:
            regions |= {
                "box_pred": self._train_boxes(normed, grid, batch, regions["phrase"]),
                "box_fits": self.box_head.fits(batch["region_boxes"], tuple(grid.shape[-2:])),
            }
        if "ground_index" in batch:  # grounding queries beyond the phrases (location-free ones)
            regions |= {
                "ground_phrase": table[batch["ground_index"]],
                "ground_region": batch["ground_region"],
                "ground_group": batch["ground_group"],
            }
        return RegionCLIPOutput(image=image, **shared, **regions)
