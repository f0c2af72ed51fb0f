"""What RegionCLIP's calls return: one typed result per call kind, each field with its shape.

As transformers' model outputs (``modeling_outputs``), a result names its fields and says when a
field is ``None``. Unlike them, a result is no dict: ``out["image"]`` and ``"region" in out`` raise
a TypeError that names the attribute, so code written against the old dict output fails at once
instead of reading a ``None`` or a missing key somewhere later. Results are frozen: a caller that
wants more (per-region loss weights, say) passes it beside the output, not inside it.

Shapes: ``B`` images, ``D`` the embedding width (``embed_dim``), ``N`` regions of the whole batch
(every image's regions, flattened), ``K`` hard negatives per region, ``G = gh * gw`` patch cells per
image, ``M`` grounding queries. Embeddings are L2-normalised along ``D``; boxes are normalised
``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple, NoReturn

import torch


class _NotADict:
    """Old-style ``out["key"]`` / ``"key" in out`` raise a TypeError naming the attribute to use."""

    __slots__ = ()

    def __getitem__(self, key: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} is a dataclass, not a dict: read out.{key}, not out[{key!r}]")

    def __contains__(self, key: object) -> NoReturn:
        raise TypeError(
            f"{type(self).__name__} is a dataclass, not a dict: every field is always there; "
            f"test `out.{key} is not None` instead of `{key!r} in out`"
        )

    def __repr__(self) -> str:  # shapes, not values: a repr in a log shows no embeddings
        def shape(value):
            if isinstance(value, torch.Tensor):
                return list(value.shape)
            if isinstance(value, dict):
                return {k: shape(v) for k, v in value.items()}
            return value

        parts = ", ".join(f"{f.name}={shape(getattr(self, f.name))}" for f in fields(self))
        return f"{type(self).__name__}({parts})"


@dataclass(frozen=True, eq=False, repr=False, kw_only=True, slots=True)
class RegionCLIPOutput(_NotADict):
    """:meth:`RegionCLIP.forward`: every embedding the losses need, from one collated batch.

    Always set: the image embeddings, the texts of the encoded levels and the logit scale. The
    region fields are ``None`` for a ``global_only`` model or a batch without ``region_boxes``; the
    cell fields unless ``forward(..., ground_cells=True)`` with regions; the grounding-query fields
    unless, with regions, the batch also holds ``ground_index``; ``box_pred`` unless the model has a box
    head and the batch holds ``box_anchor_offset``.

    Attributes:
        image_global: ``[B, D]`` the global (CLS) image embedding.
        image: ``[B, D]`` the region-aware image embedding (CLS plus the pooled grid proposals);
            the very tensor ``image_global`` for a ``global_only`` model.
        text: level -> ``[B, D]``, one entry per encoded text level (``text_levels`` that the
            batch holds, e.g. ``"report"``, ``"finding_text"``, ``"negation_text"``).
        text_ids: level -> ``[B]`` int64 hash of each text's tokens
            (:func:`regionmed.model.text.token_ids_hash`): equal ids, equal texts.
        logit_scale: ``[]`` the inverse temperature ``1/T``, capped at 100; carries the gradient.
        negation_mask: ``[B]`` bool, True where ``text["negation_text"]`` contradicts the image;
            ``None`` when the batch holds no ``negation_mask``.
        region: ``[N, D]`` each annotated box through the whole region path (``region_proj``).
        region_batch: ``[N]`` int64, the image each region belongs to.
        region_boxes: ``[N, 4]`` the batch's annotated boxes.
        phrase: ``[N, D]`` each region's phrase.
        phrase_ids: ``[N]`` int64 token hash of each phrase (equal phrases, equal ids).
        hard_negative: ``[N, K, D]`` each region's hard-negative phrases; padded rows repeat the
            batch's first distinct text and are masked by ``hard_negative_mask``.
        hard_negative_mask: ``[N, K]`` bool, False = padding.
        cell_region: ``[B, G, D]`` every patch cell of every image embedded as a region through
            ``roi.cell_path`` (the cells :meth:`RegionCLIP.ground`'s heatmap scores).
        cell_boxes: ``[G, 4]`` the cells' boxes, row-major.
        ground_phrase: ``[M, D]`` the grounding queries (every phrase plus location-free ones).
        ground_region: ``[M]`` int64, the region each query was made from.
        ground_group: ``[M, N]`` bool, the regions each query names.
        box_pred: ``[N, 4]`` the box head's box of each annotated region, drawn from its training
            anchor (not clipped to the image); the box loss compares it with ``region_boxes``.
        box_fits: ``[N]`` bool, with ``box_pred``: the regions whose box the head's window holds whole
            (the box loss's regions; :meth:`regionmed.model.box_head.BoxHead.fits`).
        patch_grid: ``[2]`` the patch grid ``(gh, gw)`` the regions were read from, a tuple of ints (its
            cell is the box loss's unit); set with the region fields.
    """

    image_global: torch.Tensor
    image: torch.Tensor
    text: dict[str, torch.Tensor]
    text_ids: dict[str, torch.Tensor]
    logit_scale: torch.Tensor
    negation_mask: torch.Tensor | None = None
    region: torch.Tensor | None = None
    region_batch: torch.Tensor | None = None
    region_boxes: torch.Tensor | None = None
    phrase: torch.Tensor | None = None
    phrase_ids: torch.Tensor | None = None
    hard_negative: torch.Tensor | None = None
    hard_negative_mask: torch.Tensor | None = None
    cell_region: torch.Tensor | None = None
    cell_boxes: torch.Tensor | None = None
    ground_phrase: torch.Tensor | None = None
    ground_region: torch.Tensor | None = None
    ground_group: torch.Tensor | None = None
    box_pred: torch.Tensor | None = None
    box_fits: torch.Tensor | None = None
    patch_grid: tuple[int, int] | None = None

    @property
    def has_regions(self) -> bool:
        """Whether the region fields are set (a region-path model given ``region_boxes``)."""
        return self.region is not None

    @property
    def has_cells(self) -> bool:
        """Whether the cell fields are set (``ground_cells=True`` with regions)."""
        return self.cell_region is not None


class Grounding(NamedTuple):
    """:meth:`RegionCLIP.ground`: where in each image its phrase is. Unpacks as ``heatmap, box``.

    Attributes:
        heatmap: ``[B, gh, gw]`` cosine of each patch cell (as a region) with the phrase.
        box: ``[B, 4]`` the best-scoring candidate box, normalised ``(x0, y0, x1, y1)``.
    """

    heatmap: torch.Tensor
    box: torch.Tensor
