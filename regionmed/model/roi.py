"""Region features from the patch grid: RoIAlign (plain torch), box proposals, and fusion.

RoIAlign here: boxes are normalised ``[x0, y0, x1, y1]`` (fractions of the image), each box is cut
into ``pool x pool`` bins, each bin is the mean of ``sampling_ratio x sampling_ratio`` bilinear
samples at evenly spaced points inside it (computed as separable weights and matrix products). The grid's cell
``j`` covers ``[j/W, (j+1)/W)`` and its value sits at the cell centre (``align_corners=False``); a sample
within half a cell of the border takes the border value (coordinates are clamped, as in torchvision's
``aligned=True``), so a box touching the border is not darkened by zero padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regionmed.model.config import RoiConfig


def roi_align(grid: torch.Tensor, boxes: torch.Tensor, pool_size: int, sampling_ratio: int) -> torch.Tensor:
    """``grid [B, C, gh, gw]``, ``boxes [N, 5]`` = (batch index, x0, y0, x1, y1) → ``[N, C, pool, pool]``."""
    n, channels = boxes.shape[0], grid.shape[1]
    if n == 0:
        if sampling_ratio < 1:
            raise ValueError("sampling_ratio must be >= 1 (the adaptive mode is not supported)")
        return grid.new_zeros(0, channels, pool_size, pool_size)
    b = boxes[:, 0].long()
    packed, _, slot = pack_by_image(boxes[:, 1:].to(grid.dtype), b, grid.shape[0])  # [B, R, 4]
    return roi_align_batched(grid, packed, pool_size, sampling_ratio)[b, slot]


def roi_align_batched(
    grid: torch.Tensor, boxes: torch.Tensor, pool_size: int, sampling_ratio: int
) -> torch.Tensor:
    """``grid [B, C, gh, gw]``, per-image boxes ``[B, R, 4]`` → ``[B, R, C, pool, pool]``.

    Bilinear sampling is separable, and the samples of a bin form a product grid, so a bin is a
    row weighting times a column weighting of the grid (:func:`_axis_weights`): two small batched
    matrix products, forward and backward (``grid_sample``'s CPU backward was ~3 ms a step here).
    """
    if sampling_ratio < 1:
        raise ValueError("sampling_ratio must be >= 1 (the adaptive mode is not supported)")
    gh, gw = grid.shape[-2:]
    boxes = boxes.to(grid.device, _weight_dtype(grid))
    wx = _axis_weights(boxes[..., 0], boxes[..., 2], gw, pool_size, sampling_ratio).to(
        grid.dtype
    )  # [B, R, p, gw]
    wy = _axis_weights(boxes[..., 1], boxes[..., 3], gh, pool_size, sampling_ratio).to(
        grid.dtype
    )  # [B, R, p, gh]
    rows = torch.einsum("bcyx,brjx->brcyj", grid, wx)
    return torch.einsum("briy,brcyj->brcij", wy, rows)


def roi_align_shared(
    grid: torch.Tensor, boxes: torch.Tensor, pool_size: int, sampling_ratio: int
) -> torch.Tensor:
    """The same boxes ``[R, 4]`` in every image (proposals, patch cells) → ``[B, R, C, pool, pool]``;
    the weights are computed once for the batch."""
    if sampling_ratio < 1:
        raise ValueError("sampling_ratio must be >= 1 (the adaptive mode is not supported)")
    gh, gw = grid.shape[-2:]
    boxes = boxes.to(grid.device, _weight_dtype(grid))
    wx = _axis_weights(boxes[:, 0], boxes[:, 2], gw, pool_size, sampling_ratio).to(grid.dtype)  # [R, p, gw]
    wy = _axis_weights(boxes[:, 1], boxes[:, 3], gh, pool_size, sampling_ratio).to(grid.dtype)
    rows = torch.einsum("bcyx,rjx->brcyj", grid, wx)
    return torch.einsum("riy,brcyj->brcij", wy, rows)


def roi_pool_tokens(
    tokens: torch.Tensor, boxes: torch.Tensor, grid_hw: tuple[int, int], pool_size: int, sampling_ratio: int
) -> torch.Tensor:
    """RoIAlign of a token grid for region tokens: ``tokens [B, gh * gw, C]`` (row-major, the ViT's own
    layout) and boxes ``[R, 4]`` (shared) or ``[B, R, 4]`` → ``[B, R, pool * pool * C]``, bins outer.

    The same values as :func:`roi_align_batched` (bins ordered ``(i, j, channel)`` instead of
    ``(channel, i, j)``), as one matrix product with the dense ``[R * pool * pool, gh * gw]``
    interpolation weights: for a small grid (64 cells) that is far cheaper, forward and backward,
    than the separable form's two products over the ``[B, R, C, gh, pool]`` intermediate.
    """
    if sampling_ratio < 1:
        raise ValueError("sampling_ratio must be >= 1 (the adaptive mode is not supported)")
    gh, gw = grid_hw
    boxes = boxes.to(tokens.device, _weight_dtype(tokens))
    wx = _axis_weights(boxes[..., 0], boxes[..., 2], gw, pool_size, sampling_ratio)  # [..., R, p, gw]
    wy = _axis_weights(boxes[..., 1], boxes[..., 3], gh, pool_size, sampling_ratio)  # [..., R, p, gh]
    dense = wy[..., :, None, :, None] * wx[..., None, :, None, :]  # [..., R, p, p, gh, gw]
    dense = dense.flatten(-2).flatten(-4, -2).to(tokens.dtype)  # [..., R * p * p, gh * gw]
    pooled = dense @ tokens  # [B, R * p * p, C]
    return pooled.reshape(tokens.shape[0], boxes.shape[-2], -1)


def _weight_dtype(grid: torch.Tensor) -> torch.dtype:
    # weights in at least float32 (bf16 positions would move samples by up to 1/128 of the image)
    return torch.float64 if grid.dtype == torch.float64 else torch.float32


def _axis_weights(
    lo: torch.Tensor, hi: torch.Tensor, size: int, pool_size: int, sampling_ratio: int
) -> torch.Tensor:
    """Along one axis: box edges ``lo, hi [...]`` (fractions of the image) → ``[..., pool, size]``, the
    weight of each grid line in each bin: the mean over the bin's ``sampling_ratio`` samples of the
    linear-interpolation (tent) weight. Samples sit at the centres of ``pool * sampling_ratio`` equal
    slices of the box; grid line ``k`` at ``(k + 0.5) / size``; positions outside the outer centres
    are clamped to them (the border value, as ``grid_sample``'s ``padding_mode="border"``)."""
    steps = pool_size * sampling_ratio
    frac = (torch.arange(steps, device=lo.device, dtype=lo.dtype) + 0.5) / steps
    pos = lo[..., None] + (hi - lo)[..., None] * frac  # [..., steps]
    pos = (pos * size - 0.5).clamp(0, size - 1)
    lines = torch.arange(size, device=lo.device, dtype=lo.dtype)
    tent = (1 - (pos[..., None] - lines).abs()).clamp(min=0)  # [..., steps, size]
    return tent.unflatten(-2, (pool_size, sampling_ratio)).mean(-2)


def with_batch_index(boxes: list[torch.Tensor]) -> torch.Tensor:
    """Per-image boxes ``[Ni, 4]`` → one ``[sum Ni, 5]`` tensor with the image index first."""
    rows = [
        torch.cat([torch.full((len(bx), 1), i, dtype=bx.dtype, device=bx.device), bx], dim=1)
        for i, bx in enumerate(boxes)
    ]
    return torch.cat(rows) if rows else torch.zeros(0, 5)


def grid_proposals(grid_sizes: list[int], device=None) -> torch.Tensor:
    """The fixed multi-scale proposals: for each ``n``, the ``n x n`` tiling of the image, ``[P, 4]``.

    With the default ``[2, 3, 4]``: 4 + 9 + 16 = 29 boxes, from quadrants down to sixteenths, i.e. from
    a lung down to a lung zone; the same boxes for every image, so training and serving agree.
    """
    out = []
    for n in grid_sizes:
        edges = torch.arange(n + 1, dtype=torch.float32, device=device) / n
        y0, x0 = torch.meshgrid(edges[:-1], edges[:-1], indexing="ij")
        out.append(torch.stack([x0, y0, x0 + 1 / n, y0 + 1 / n], dim=-1).reshape(-1, 4))
    return torch.cat(out)


def cell_boxes(gh: int, gw: int, device=None) -> torch.Tensor:
    """One box per patch cell, row-major, ``[gh * gw, 4]``: each patch token as a region."""
    ys = torch.arange(gh, dtype=torch.float32, device=device)
    xs = torch.arange(gw, dtype=torch.float32, device=device)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x / gw, y / gh, (x + 1) / gw, (y + 1) / gh], dim=-1).reshape(-1, 4)


def peak_boxes(
    heatmap: torch.Tensor, top_k: int = 3, half_extents: tuple[float, ...] = (0.5, 1.0, 1.5)
) -> torch.Tensor:
    """Similarity proposals: boxes centred on the ``top_k`` best cells of each heatmap.

    ``heatmap [B, gh, gw]`` → ``[B, top_k * len(half_extents), 4]``; a half extent of 0.5 is the cell
    itself, 1.5 the 3 x 3 cells around it (clipped to the image).
    """
    bsz, gh, gw = heatmap.shape
    k = min(top_k, gh * gw)
    idx = heatmap.reshape(bsz, -1).topk(k, dim=1).indices  # [B, k]
    cy = (idx // gw).to(heatmap.dtype) + 0.5
    cx = (idx % gw).to(heatmap.dtype) + 0.5
    boxes = []
    for h in half_extents:
        boxes.append(torch.stack([(cx - h) / gw, (cy - h) / gh, (cx + h) / gw, (cy + h) / gh], dim=-1))
    return torch.cat(boxes, dim=1).clamp(0, 1)


def proposal_boxes(
    kind: str, grid_sizes: list[int], heatmap: torch.Tensor | None = None, top_k: int = 3
) -> torch.Tensor:
    """Boxes for when none are given: ``[P, 4]`` for ``grid``; ``[B, P, 4]`` for ``similarity``
    (the grid boxes plus :func:`peak_boxes` of each image's patch-text ``heatmap``)."""
    grid = grid_proposals(grid_sizes, device=None if heatmap is None else heatmap.device)
    if kind == "grid":
        return grid
    if kind != "similarity":
        raise ValueError(f"unknown proposal kind {kind!r}")
    if heatmap is None:
        raise ValueError("similarity proposals need a patch-text heatmap (a text to ground)")
    peaks = peak_boxes(heatmap, top_k)
    return torch.cat([grid.to(peaks.dtype).expand(heatmap.shape[0], -1, -1), peaks], dim=1)


def pack_by_image(values: torch.Tensor, batch_index: torch.Tensor, batch_size: int):
    """Rows of ``values [N, ...]`` grouped per image into ``[B, Rmax, ...]`` plus a validity mask
    ``[B, Rmax]`` and the ``(image, slot)`` of each row, for batched attention over regions."""
    n = values.shape[0]
    counts = torch.bincount(batch_index, minlength=batch_size)
    order = torch.argsort(batch_index, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(batch_index)
    slot[order] = torch.arange(n, device=values.device) - starts[batch_index[order]]
    width = int(counts.max()) if n else 0
    packed = values.new_zeros(batch_size, max(width, 1), *values.shape[1:])
    packed[batch_index, slot] = values
    mask = torch.zeros(batch_size, max(width, 1), dtype=torch.bool, device=values.device)
    mask[batch_index, slot] = True
    return packed, mask, slot


class RoiProcessor(nn.Module):
    """Region tokens from boxes, fused with the image context; and a region-aware image feature.

    A region token is the RoIAlign of the patch grid (its ``pool x pool`` cells, flattened and
    projected, so the layout inside the box survives), plus an embedding of the box geometry
    (phrases name places: "right upper zone", and patch tokens carry position only weakly), plus
    optionally the crop branch's feature. It then attends over ``[global token + patch tokens]`` of
    its own image; a learned sigmoid gate mixes the pooled token and the attended one per channel.
    """

    def __init__(self, config: RoiConfig, hidden: int):
        super().__init__()
        self.config = config
        p = config.pool_size
        width = self.width = config.fusion_dim or hidden  # region features are [..., width]
        # a narrower fusion sees the patch grid and the global token through one shared projection
        self.feature_in = nn.Linear(hidden, width) if width != hidden else None
        self.cell_proj = nn.Linear(p * p * width, width)
        self.box_embed = nn.Sequential(nn.Linear(8, width), nn.GELU(), nn.Linear(width, width))
        self.crop_proj = nn.Linear(hidden, width) if config.crop_branch else None
        self.query_norm = nn.LayerNorm(width)
        self.context_norm = nn.LayerNorm(width)
        self.cross_attn = nn.MultiheadAttention(width, config.fusion_heads, batch_first=True)
        self.fuse_gate = nn.Linear(2 * width, width)
        self.out_norm = nn.LayerNorm(width)
        # gated attention pooling over an image's regions (attention-MIL style)
        attn_dim = max(width // 2, 8)
        self.pool_v = nn.Linear(width, attn_dim)
        self.pool_u = nn.Linear(width, attn_dim)
        self.pool_w = nn.Linear(attn_dim, 1)
        self.mix_gate = nn.Linear(hidden + width, hidden)
        self.mix_proj = nn.Linear(width, hidden)

    def region_features(
        self,
        grid: torch.Tensor,
        global_feat: torch.Tensor,
        box_sets: list[torch.Tensor],
        crop_feats: list[torch.Tensor | None] | None = None,
        attend: list[bool] | None = None,
    ) -> list[torch.Tensor]:
        """``grid [B, C, gh, gw]``, ``global [B, C]`` and box sets, each ``[R, 4]`` (the same boxes in
        every image) or ``[B, R, 4]`` (per image, padded) → fused region features ``[B, R, width]``
        per set (``width`` = ``fusion_dim``, or ``C``).

        Region tokens never see each other (attention runs from each token to its image's context
        only), so padding rows are harmless and the sets share one attention call. ``attend[k]``
        False (default True): set ``k`` skips the cross-attention and the gate and returns its
        normalised tokens (``cell_path: direct``).
        """
        cfg = self.config
        grid_hw = tuple(grid.shape[-2:])
        patches = grid.flatten(2).transpose(1, 2)  # [B, G, C], the ViT's token layout
        if self.feature_in is not None:
            patches = self.feature_in(patches)
            global_feat = self.feature_in(global_feat)
        # cell_proj reads bins as (channel, i, j), as it always has; roi_pool_tokens gives (i, j, channel)
        p, width = cfg.pool_size, self.width
        proj_weight = self.cell_proj.weight.unflatten(1, (width, p, p)).permute(0, 2, 3, 1).flatten(1)
        tokens = []
        for k, boxes in enumerate(box_sets):
            shared = boxes.dim() == 2
            pooled = roi_pool_tokens(
                patches, boxes, grid_hw, cfg.pool_size, cfg.sampling_ratio
            )  # [B, R, p*p*C]
            geometry = self.box_embed(_box_geometry(boxes).to(patches.dtype))
            token = F.linear(pooled, proj_weight, self.cell_proj.bias) + (
                geometry[None] if shared else geometry
            )
            if self.crop_proj is not None:
                crop = None if crop_feats is None else crop_feats[k]
                if crop is None:
                    raise ValueError("crop_branch is on: region_features needs the crops' features")
                token = token + self.crop_proj(crop)
            tokens.append(token)
        attend = [True] * len(tokens) if attend is None else attend
        if len(attend) != len(tokens):
            raise ValueError(f"attend has {len(attend)} flags for {len(tokens)} box sets")
        out: list[torch.Tensor | None] = [
            None if a else self.out_norm(t) for t, a in zip(tokens, attend, strict=True)
        ]
        attending = [t for t, a in zip(tokens, attend, strict=True) if a]
        if attending:
            sizes = [t.shape[1] for t in attending]
            token = torch.cat(attending, dim=1)  # [B, R_all, C]
            context = torch.cat([global_feat[:, None], patches], dim=1)  # [B, 1+G, C]
            kv = self.context_norm(context)
            attended, _ = self.cross_attn(self.query_norm(token), kv, kv, need_weights=False)
            gate = torch.sigmoid(self.fuse_gate(torch.cat([token, attended], dim=-1)))
            fused = iter(torch.split(self.out_norm(gate * token + (1 - gate) * attended), sizes, dim=1))
            out = [next(fused) if o is None else o for o in out]
        return out

    def image_feature(
        self, global_feat: torch.Tensor, region_feats: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Gated attention pooling of each image's regions ``[B, R, width]`` (``mask [B, R]``: False =
        padding), gated into its global feature: ``[B, C]``.

        An image without regions keeps its global feature plus the gate's response to a zero summary.
        """
        score = self.pool_w(
            torch.tanh(self.pool_v(region_feats)) * torch.sigmoid(self.pool_u(region_feats))
        ).squeeze(-1)
        if mask is None:
            weights = torch.softmax(score, dim=1)
        else:
            weights = torch.softmax(score.masked_fill(~mask, -1e4), dim=1) * mask
        summary = torch.einsum("br,brc->bc", weights.to(region_feats.dtype), region_feats)
        gate = torch.sigmoid(self.mix_gate(torch.cat([global_feat, summary], dim=-1)))
        return global_feat + gate * self.mix_proj(summary)


def _box_geometry(boxes: torch.Tensor) -> torch.Tensor:
    """``[..., 4]`` corners → ``[..., 8]``: corners, centre and size, centred on 0."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    feats = [x0, y0, x1, y1, (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
    return torch.stack(feats, dim=-1) - 0.5
