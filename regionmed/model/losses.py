"""Contrastive losses, open_clip style, with exact multi-process semantics. Knows nothing of the trainer.

Distributed convention (checked by a real 2-process test): every rank computes its loss on its own
rows against the candidates of *all* ranks, scaled so that the **mean of the ranks' losses equals
the loss of one process holding the whole global batch**, and, with ``gather_with_grad``, so that
each rank's gradient divided by ``world_size`` is that single process's gradient for the rank's
rows. DDP averages gradients over ranks, so training matches the single-process objective.

Identical texts are not negatives of each other: each loss takes optional text ids (a hash of the
tokens, :func:`regionmed.model.text.token_ids_hash`) and masks every *other* candidate with the
same id as the positive. Nine modality sentences shared by 64 images would otherwise be 63
contradictory targets per row.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn  # the differentiable all_gather; torch.distributed does not import it
import torch.nn.functional as F
from torch import nn

from regionmed.model.box_head import box_regression_loss
from regionmed.model.outputs import RegionCLIPOutput
from regionmed.model.roi import pack_by_image

NEG_INF = -1e4  # masked logits; finite so a fully masked row cannot turn into NaN


def gather_features(
    features: torch.Tensor, rank: int, world_size: int, gather_with_grad: bool = True
) -> torch.Tensor:
    """Concatenate equal-sized ``[B, ...]`` tensors from every rank, in rank order.

    With ``gather_with_grad`` the gather is differentiable (its backward sums the gradients sent to
    each rank's slice). Without, other ranks' slices are constants and this rank's own slice is
    put back as the live tensor, so gradients still reach local features.
    """
    if world_size == 1:
        return features
    if gather_with_grad:
        return torch.cat(torch.distributed.nn.functional.all_gather(features), dim=0)
    parts = [torch.zeros_like(features) for _ in range(world_size)]
    dist.all_gather(parts, features.contiguous())
    parts[rank] = features
    return torch.cat(parts, dim=0)


def gather_variable(features: torch.Tensor, rank: int, world_size: int, gather_with_grad: bool = True):
    """Like :func:`gather_features` for per-rank row counts that differ (regions per batch vary).

    Returns ``(gathered [sum N_r, ...], offset of this rank's rows, counts per rank)``.
    """
    n = features.shape[0]
    if world_size == 1:
        return features, 0, [n]
    count = torch.tensor([n], device=features.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    width = max(counts)
    padded = F.pad(features, (0,) * (2 * (features.dim() - 1)) + (0, width - n))
    gathered = gather_features(padded, rank, world_size, gather_with_grad)
    rows = torch.cat([gathered[r * width : r * width + counts[r]] for r in range(world_size)])
    return rows, sum(counts[:rank]), counts


def _duplicate_mask(row_ids: torch.Tensor | None, col_ids: torch.Tensor | None, positive_col: torch.Tensor):
    """``[R, C]`` True where column j has row i's id but is not row i's own positive."""
    if row_ids is None or col_ids is None:
        return None
    same = row_ids[:, None] == col_ids[None, :]
    same[torch.arange(len(row_ids), device=same.device), positive_col] = False
    return same


class ClipLoss(nn.Module):
    """Symmetric InfoNCE between paired image and text embeddings ``[B, D]`` (normalised).

    ``local_loss``: rows are this rank's samples only (against all gathered columns), which costs
    B x world_size logits instead of (B x world_size)^2; with ``gather_with_grad`` both modes give
    the same training signal. All ranks must hold the same batch size.
    """

    def __init__(
        self, local_loss: bool = False, gather_with_grad: bool = True, rank: int = 0, world_size: int = 1
    ):
        super().__init__()
        self.local_loss, self.gather_with_grad = local_loss, gather_with_grad
        self.rank, self.world_size = rank, world_size

    def forward(
        self,
        image: torch.Tensor,
        text: torch.Tensor,
        logit_scale: torch.Tensor,
        ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        bsz = image.shape[0]
        all_image = gather_features(image, self.rank, self.world_size, self.gather_with_grad)
        all_text = gather_features(text, self.rank, self.world_size, self.gather_with_grad)
        all_ids = None if ids is None else gather_features(ids, self.rank, self.world_size, False)
        if self.local_loss:
            rows_img, rows_txt, row_ids = image, text, ids
            labels = torch.arange(bsz, device=image.device) + self.rank * bsz
        else:
            rows_img, rows_txt, row_ids = all_image, all_text, all_ids
            labels = torch.arange(all_image.shape[0], device=image.device)
        per_image = logit_scale * rows_img @ all_text.T
        per_text = logit_scale * rows_txt @ all_image.T
        dup = _duplicate_mask(row_ids, all_ids, labels)
        if dup is not None:
            per_image, per_text = per_image.masked_fill(dup, NEG_INF), per_text.masked_fill(dup, NEG_INF)
        loss = (F.cross_entropy(per_image, labels) + F.cross_entropy(per_text, labels)) / 2
        # local rows: this rank's mean over its rows; the ranks' mean is then the global mean
        return loss


def region_phrase_loss(
    region: torch.Tensor,
    phrase: torch.Tensor,
    hard_negative: torch.Tensor,
    hard_negative_mask: torch.Tensor,
    logit_scale: torch.Tensor,
    phrase_ids: torch.Tensor | None = None,
    rank: int = 0,
    world_size: int = 1,
    gather_with_grad: bool = True,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE from each region ``[N, D]`` to its phrase ``[N, D]``.

    Candidates for region i: every distinct phrase of the global batch (all ranks) once, plus its
    own hard negatives ``[N, K, D]`` (``hard_negative_mask [N, K]`` False = padding). Another
    region's copy of region i's own phrase is no negative (masked by ``phrase_ids``), and a phrase
    shared by many regions counts once as a negative (its first occurrence), so frequent anatomy
    phrases do not outweigh rare findings. Mean over the global batch's regions (see module doc).
    ``weight [N]`` (optional) scales each region's term (annotated regions weigh less than drawn
    ones); the mean stays over the region count, so weights of 1 are the unweighted loss.
    """
    n = region.shape[0]
    all_phrase, offset, counts = gather_variable(phrase, rank, world_size, gather_with_grad)
    total = sum(counts)
    if total == 0:
        return region.sum() * 0.0
    own = torch.arange(n, device=region.device) + offset
    logits = logit_scale * region @ all_phrase.T  # [N, total]
    if phrase_ids is not None:
        all_ids = gather_variable(phrase_ids, rank, world_size, False)[0]
        first = torch.ones(total, dtype=torch.bool, device=region.device)
        same_earlier = (all_ids[:, None] == all_ids[None, :]).triu(diagonal=1)  # [j', j]: j' < j, same id
        first &= ~same_earlier.any(0)
        masked = _duplicate_mask(phrase_ids, all_ids, own) | ~first[None, :]
        masked[torch.arange(n, device=region.device), own] = False
        logits = logits.masked_fill(masked, NEG_INF)
    hard = logit_scale * torch.einsum("nd,nkd->nk", region, hard_negative)
    hard = hard.masked_fill(~hard_negative_mask.bool(), NEG_INF)
    if weight is None:
        ce = F.cross_entropy(torch.cat([logits, hard], dim=1), own, reduction="sum")
    else:
        ce = (
            F.cross_entropy(torch.cat([logits, hard], dim=1), own, reduction="none") * weight.to(logits.dtype)
        ).sum()
    # sum / total x world_size: the ranks' mean is the mean over all regions of the global batch
    return ce * world_size / total


def negation_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    negation: torch.Tensor,
    negation_mask: torch.Tensor,
    logit_scale: torch.Tensor,
    ids: torch.Tensor | None = None,
    rank: int = 0,
    world_size: int = 1,
    gather_with_grad: bool = True,
) -> torch.Tensor:
    """Image→text InfoNCE whose candidates are the texts of the global batch *plus* each image's
    own contradicting text ``negation [B, D]`` (``negation_mask [B]`` False = none): "no nodule"
    for an image with a nodule, "there is evidence of a nodule" for one without. Contrastive
    batches almost never hold such a pair, so nothing else teaches the text tower that "no X" and
    "X" mean opposite things (NegCLIP's observation). Rows are this rank's images (local loss).
    """
    bsz = image.shape[0]
    all_text = gather_features(text, rank, world_size, gather_with_grad)
    labels = torch.arange(bsz, device=image.device) + rank * bsz
    logits = logit_scale * image @ all_text.T
    if ids is not None:
        all_ids = gather_features(ids, rank, world_size, False)
        logits = logits.masked_fill(_duplicate_mask(ids, all_ids, labels), NEG_INF)
    own = (logit_scale * (image * negation).sum(-1)).masked_fill(~negation_mask.bool(), NEG_INF)
    return F.cross_entropy(torch.cat([logits, own[:, None]], dim=1), labels)


def cell_overlap_targets(
    boxes: torch.Tensor, cells: torch.Tensor, centre_weight: float = 0.0
) -> torch.Tensor:
    """The box drawn on the patch grid: ``boxes [N, 4]``, ``cells [G, 4]`` → ``[N, G]``, each row the
    share of the box's area that falls in each cell (sums to 1; a degenerate box puts all on its centre
    cell). ``centre_weight`` w: each row is ``(1 - w) x`` those shares ``+ w x`` the cell holding the
    box's centre, so for w >= 0.5 that cell is the row's peak (the cell strict pointing asks for), where
    the shares alone tie every cell a large box covers whole."""
    iw = (
        torch.minimum(boxes[:, None, 2], cells[None, :, 2])
        - torch.maximum(boxes[:, None, 0], cells[None, :, 0])
    ).clamp(min=0)
    ih = (
        torch.minimum(boxes[:, None, 3], cells[None, :, 3])
        - torch.maximum(boxes[:, None, 1], cells[None, :, 1])
    ).clamp(min=0)
    inter = iw * ih
    total = inter.sum(1, keepdim=True)
    centre = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], dim=1)
    inside = (
        (centre[:, None, 0] >= cells[None, :, 0])
        & (centre[:, None, 0] <= cells[None, :, 2])
        & (centre[:, None, 1] >= cells[None, :, 1])
        & (centre[:, None, 1] <= cells[None, :, 3])
    ).to(inter.dtype)
    fallback = inside / inside.sum(1, keepdim=True).clamp(min=1)
    shares = torch.where(total > 0, inter / total.clamp(min=1e-12), fallback)
    return shares if centre_weight == 0 else (1 - centre_weight) * shares + centre_weight * fallback


def phrase_grounding_loss(
    phrase: torch.Tensor,
    cells: torch.Tensor,
    region_batch: torch.Tensor,
    region_boxes: torch.Tensor,
    cell_boxes: torch.Tensor,
    logit_scale: torch.Tensor,
    group: torch.Tensor | None = None,
    query_region: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    centre_weight: float = 0.0,
) -> torch.Tensor:
    """Where does each phrase point? Cross-entropy from a phrase ``[N, D]`` over the patch cells of its
    own image ``cells [B, G, D]`` (region embeddings of each cell box), against the box drawn on the grid
    (:func:`cell_overlap_targets`). The region-phrase loss only asks *which text* fits a given box;
    this asks *which place* fits a given text, the question phrase grounding answers.

    Local to each rank (a phrase's candidates are its own image's cells, never another rank's), so
    no gather: DDP's mean of the ranks' means is the global mean when ranks hold similar region counts.

    Queries other than the region phrases (optional): ``phrase [M, D]`` with ``query_region [M]``
    (the region whose image each query is asked about) and ``group [M, N]`` (bool: the regions each
    names; a location-free "a small nodule" names both small nodules of its image). A query's target
    is the mean of its regions' targets. Default: query ``n`` is region ``n``'s phrase, naming it alone.
    ``weight`` (optional, per region ``[N]``) scales each query by the weight of the region it was made from.
    ``centre_weight``: the share of each region's target on the cell holding its centre
    (:func:`cell_overlap_targets`).
    """
    if phrase.shape[0] == 0:
        return cells.sum() * 0.0
    images = region_batch if query_region is None else region_batch[query_region]
    # phrases grouped by image against that image's cells, one batched product: gathering
    # cells[images] ([N, G, D]) instead cost an index_put of that size in the backward
    packed, _, slot = pack_by_image(phrase, images, cells.shape[0])  # [B, M, D]
    logits = logit_scale * torch.bmm(packed, cells.transpose(1, 2).to(packed.dtype))[images, slot]
    target = cell_overlap_targets(region_boxes.to(logits.dtype), cell_boxes.to(logits.dtype), centre_weight)
    if group is not None:
        weights = group.to(target.dtype)
        target = weights @ target / weights.sum(1, keepdim=True).clamp(min=1)
    per_query = -(target * F.log_softmax(logits.float(), dim=1)).sum(1)
    if weight is not None:
        per_query = per_query * (weight if query_region is None else weight[query_region]).float()
    return per_query.mean()


OTHER_LOSSES = ("region", "grounding", "negation", "box")  # the losses beyond the text levels
HIERARCHY = {  # text level -> the image embedding (a RegionCLIPOutput field) it is aligned with
    "modality": ("modality_text", "image_global"),
    "anatomy": ("anatomy_text", "image_global"),
    "finding": ("finding_text", "image"),
    "global": ("report", "image"),
}


def hierarchical_loss(
    outputs: RegionCLIPOutput,
    weights: dict[str, float],
    clip_loss: ClipLoss,
    region_loss_kwargs: dict | None = None,
    region_weight: torch.Tensor | None = None,
    grounding_centre: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the level losses over a :meth:`RegionCLIP.forward` output.

    Coarse text goes with the coarse embedding: modality and anatomy text with the global image
    embedding, finding text and the report with the region-aware one, (``region``) each region
    with its phrase, (``grounding``) each phrase with the patch cells of its box, and (``box``) the box
    head's box of each region with the region's box (L1 + GIoU). Only levels with a non-zero weight
    are computed; returns ``(total, parts)``. ``region_weight [N]`` (optional, from the batch) scales
    the region, grounding and box terms per region; ``grounding_centre`` is the grounding target's
    share on each box's centre cell (:func:`cell_overlap_targets`).
    """
    parts: dict[str, torch.Tensor] = {}
    scale = outputs.logit_scale
    for name, weight in weights.items():
        if weight == 0:
            continue
        if name == "region":
            if not outputs.has_regions:
                raise KeyError("region loss asked for, but the outputs hold no regions (global_only?)")
            parts[name] = region_phrase_loss(
                outputs.region,
                outputs.phrase,
                outputs.hard_negative,
                outputs.hard_negative_mask,
                scale,
                outputs.phrase_ids,
                clip_loss.rank,
                clip_loss.world_size,
                clip_loss.gather_with_grad,
                weight=region_weight,
                **(region_loss_kwargs or {}),
            )
            continue
        if name == "negation":
            if outputs.negation_mask is None:
                raise KeyError("negation loss asked for, but the batch held no negation_mask")
            parts[name] = negation_loss(
                outputs.image,
                outputs.text["finding_text"],
                outputs.text["negation_text"],
                outputs.negation_mask,
                scale,
                outputs.text_ids["finding_text"],
                clip_loss.rank,
                clip_loss.world_size,
                clip_loss.gather_with_grad,
            )
            continue
        if name == "grounding":
            if not outputs.has_cells:
                raise KeyError(
                    "grounding loss asked for, but the outputs hold no cell embeddings "
                    "(forward(..., ground_cells=True) on a model with the region path)"
                )
            parts[name] = phrase_grounding_loss(
                outputs.phrase if outputs.ground_phrase is None else outputs.ground_phrase,
                outputs.cell_region,
                outputs.region_batch,
                outputs.region_boxes,
                outputs.cell_boxes,
                scale,
                outputs.ground_group,
                outputs.ground_region,
                weight=region_weight,
                centre_weight=grounding_centre,
            )
            continue
        if name == "box":
            if outputs.box_pred is None:
                raise KeyError(
                    "box loss asked for, but the outputs hold no box predictions "
                    "(a model with roi.box_head, and box_anchor_offset in the batch)"
                )
            gh, gw = outputs.patch_grid
            fits = outputs.box_fits  # only boxes the head's window holds whole (BoxHead.fits)
            parts[name] = box_regression_loss(
                outputs.box_pred[fits],
                outputs.region_boxes[fits],
                (1 / gw, 1 / gh),
                None if region_weight is None else region_weight[fits],
            )
            continue
        if name not in HIERARCHY:
            raise KeyError(f"unknown loss {name!r}; known: {sorted([*HIERARCHY, *OTHER_LOSSES])}")
        level, image_field = HIERARCHY[name]
        parts[name] = clip_loss(
            getattr(outputs, image_field), outputs.text[level], scale, outputs.text_ids[level]
        )
    if not parts:
        raise ValueError("every loss weight is zero")
    total = sum(weights[k] * v for k, v in parts.items())
    return total, parts
