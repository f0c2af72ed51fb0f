"""The box head: a phrase's box drawn from a window of the image around a point, finer than the patch grid.

The heatmap of :meth:`RegionCLIP.ground` has one score per patch cell (16 px at the default 128 px and
8 x 8 grid), and boxes assembled from cells are no better than a cell: a 5 px finding got a 16 px box.
The head looks at a window of ``window`` cells centred on an anchor point (the heatmap's peak at
inference; the true box centre moved by up to ``anchor_jitter`` cells in training):

- the window's pixels, resampled to ``crop_size x crop_size`` (RoIAlign of the normalised image), through
  three small convolutions down to a ``crop_size / 4`` map;
- plus the patch features RoIAligned onto the same map (the context the image encoder saw);
- modulated by the phrase (FiLM: a per-channel scale and shift from the phrase embedding, so "a small
  nodule" and "a large mass" are drawn at their own sizes);
- one more convolution, then two outputs: the box's centre as the soft-argmax of a one-channel map over
  the window (the expected position under a softmax over the map's cells, so finer than a cell; with
  ``centre_stride: 2`` that map is upsampled and joined with the half-resolution pixel features first),
  and its width and height from a small MLP, as log-ratios to a patch cell.

Why the centre is a map and not a regressed offset: a convolution finds the finding where it is in the
window, whatever its place in the image. The regressed offset (the first form of this head) drew sizes
well and centres badly on the default corpus: from the true centre as its anchor, its centre was off by
a median 3 px on findings of 5-18 px (IoU > 0.5: 0.20; the true centre with its size: 0.91), pulled
toward the middle of the image.

The phrase embedding and the patch features are detached: the box loss trains the head alone and
leaves the encoders' spaces to the contrastive losses (with the patch features attached, the box loss cost
zero-shot finding AUROC 0.875 -> 0.800 on the default corpus, docs/experiments.md). Plain PyTorch; knows
nothing of training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from regionmed.model.config import BoxHeadConfig
from regionmed.model.roi import pack_by_image, roi_align_batched

MAX_LOG_SIZE = 4.0  # box sides between e^-4 and e^4 patch cells


class BoxHead(nn.Module):
    def __init__(self, config: BoxHeadConfig, image_channels: int, hidden: int, embed_dim: int):
        super().__init__()
        self.config = config
        ch, side = config.channels, config.crop_size // 4
        # Kernel 4 for the stride-2 steps: output cell k then reads input cells 2k-1..2k+2, centred
        # where soft_argmax and the context's RoIAlign put cell k ((k + 0.5) / n). A kernel of 3 centres
        # it on input 2k, half an input cell early per step: 1.5 crop samples (2.25 px at the default
        # size) between the pixel map, the context map and the positions the centre is decoded at.
        self.pixels_half = nn.Sequential(  # the crop -> a map at half its resolution
            nn.Conv2d(image_channels, ch // 2, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(ch // 2, ch, 4, stride=2, padding=1),
            nn.GELU(),
        )
        self.pixels_quarter = nn.Conv2d(ch, ch, 4, stride=2, padding=1)  # -> a quarter, beside the context
        self.context = nn.Conv2d(hidden, ch, 1)
        self.film = nn.Linear(embed_dim, 2 * ch)
        self.mix = nn.Conv2d(ch, ch, 3, padding=1)
        if config.centre_stride == 2:  # the centre map at half the crop's resolution (a U-Net's step up)
            self.skip = nn.Conv2d(ch, ch, 1)
            self.fine = nn.Conv2d(ch, ch, 3, padding=1)
        self.centre = nn.Conv2d(ch, 1, 1)
        self.regress = nn.Sequential(nn.Linear(ch * side * side, 128), nn.GELU(), nn.Linear(128, 2))
        # a fresh head draws one cell centred on the anchor (a flat centre map: the window's middle);
        # FiLM starts as the identity
        for layer in (self.film, self.regress[-1], self.centre):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def fits(self, boxes: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """``[M]`` bool: which boxes ``[M, 4]`` the window holds whole (each side at most ``window``
        cells). The head is trained on those alone and trusted only for those: of a box larger than its
        window (a lung) it sees no edge, and learned instead to guess where such organs usually lie,
        a guess it then applied to findings too (docs/model.md)."""
        gh, gw = grid_hw
        limit = boxes.new_tensor([self.config.window / gw, self.config.window / gh])
        return ((boxes[:, 2:] - boxes[:, :2]) <= limit + 1e-6).all(dim=-1)

    def windows(self, anchor: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """``anchor [M, 2]`` (x, y) → the windows ``[M, 4]`` the head reads (may reach past the image:
        RoIAlign takes the border value there)."""
        gh, gw = grid_hw
        half = anchor.new_tensor([self.config.window / 2 / gw, self.config.window / 2 / gh])
        return torch.cat([anchor - half, anchor + half], dim=-1)

    def forward(
        self,
        normed: torch.Tensor,
        grid: torch.Tensor,
        phrase: torch.Tensor,
        image_index: torch.Tensor,
        anchor: torch.Tensor,
    ) -> torch.Tensor:
        """``normed [B, C, H, W]`` (normalised pixels), ``grid [B, hidden, gh, gw]`` (patch features),
        per query its ``phrase [M, D]``, ``image_index [M]`` and ``anchor [M, 2]`` → boxes ``[M, 4]``
        (normalised x0, y0, x1, y1; not clipped to the image)."""
        if anchor.shape[0] == 0:
            return anchor.new_zeros(0, 4)
        bsz, grid_hw = normed.shape[0], tuple(grid.shape[-2:])
        anchor = anchor.to(torch.float32)
        windows = self.windows(anchor, grid_hw)
        packed, _, slot = pack_by_image(windows, image_index, bsz)
        size, side = self.config.crop_size, self.config.crop_size // 4
        crops = roi_align_batched(normed, packed, size, 2)[image_index, slot]  # [M, C, size, size]
        context = roi_align_batched(grid.detach(), packed, side, 2)[
            image_index, slot
        ]  # [M, hidden, side, side]
        half = self.pixels_half(crops)  # [M, ch, size / 2, size / 2]
        feats = self.pixels_quarter(half) + self.context(context)
        scale, shift = self.film(phrase.detach().to(feats.dtype)).chunk(2, dim=-1)
        feats = F.gelu(feats * (1 + scale[..., None, None]) + shift[..., None, None])
        mixed = F.gelu(self.mix(feats))
        centre_map = mixed
        if self.config.centre_stride == 2:
            # bilinear with align_corners=False keeps every cell centre at (k + 0.5) / n
            up = F.interpolate(mixed, scale_factor=2, mode="bilinear", align_corners=False)
            centre_map = F.gelu(self.fine(up + self.skip(half)))
        offset = soft_argmax(self.centre(centre_map)[:, 0].float())  # [M, 2] in -1..1 of the window
        log_size = self.regress(mixed.flatten(1)).float()
        return decode_boxes(offset, log_size, anchor, grid_hw, self.config.window)


def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
    """``[M, h, w]`` maps → ``[M, 2]`` (x, y): the mean position of each map's softmax, each axis in -1..1
    from the first cell's centre side of the window to the last (cell centres at ``(k + 0.5) / n``)."""
    m, h, w = logits.shape
    prob = logits.reshape(m, -1).softmax(dim=1).reshape(m, h, w)
    xs = (torch.arange(w, device=logits.device, dtype=prob.dtype) + 0.5) / w * 2 - 1
    ys = (torch.arange(h, device=logits.device, dtype=prob.dtype) + 0.5) / h * 2 - 1
    return torch.stack([(prob.sum(1) * xs).sum(-1), (prob.sum(2) * ys).sum(-1)], dim=-1)


def decode_boxes(
    offset: torch.Tensor,
    log_size: torch.Tensor,
    anchor: torch.Tensor,
    grid_hw: tuple[int, int],
    window: float,
) -> torch.Tensor:
    """Boxes ``[M, 4]`` from the head's outputs: centre = anchor + ``offset`` (-1..1 per axis) x half the
    window, side = exp(``log_size``) patch cells."""
    gh, gw = grid_hw
    cell = anchor.new_tensor([1 / gw, 1 / gh])
    centre = anchor + offset * cell * (window / 2)
    half = log_size.clamp(-MAX_LOG_SIZE, MAX_LOG_SIZE).exp() * cell / 2
    return torch.cat([centre - half, centre + half], dim=-1)


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU of paired boxes ``[M, 4]`` (x0, y0, x1, y1): IoU minus the share of the enclosing box that
    neither covers; in -1..1, and it still has a gradient when the boxes do not overlap."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lo, hi = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-9)
    enclosing = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(-1)
    return iou - (enclosing - union) / enclosing.clamp(min=1e-9)


def box_regression_loss(
    pred: torch.Tensor, target: torch.Tensor, cell: tuple[float, float], weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over boxes of L1 on (centre x, centre y, width, height) in patch cells plus ``1 - GIoU``
    (DETR's pair: L1 fits the coordinates, GIoU the overlap, whatever the box's size).
    ``weight [M]`` (optional) scales each box's term; the mean stays over the box count."""
    if pred.shape[0] == 0:
        return pred.sum() * 0.0
    target = target.to(pred.dtype)
    unit = pred.new_tensor([cell[0], cell[1], cell[0], cell[1]])

    def centre_size(b: torch.Tensor) -> torch.Tensor:
        return torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], dim=-1) / unit

    per_box = (centre_size(pred) - centre_size(target)).abs().sum(-1) + 1 - generalized_iou(pred, target)
    if weight is not None:
        per_box = per_box * weight.to(per_box.dtype)
    return per_box.mean()
