"""The ``self`` localizer: a trained RegionMed model places the phrases (self-training).

``ground()`` alone proposes the patch cells, the grid tilings and boxes of 1-3 cells around the best
cells, so its box cannot be larger than 3/8 of the side at the default 8x8 grid: a lung or a large
effusion is out of reach. Here the candidates also *grow to the structure*:

* the connected area of the heatmap above several levels (a share of the way from its mean to its
  peak) that holds the peak cell, as a bounding box;
* multi-scale tilings of the image (``annotate.self_tilings``, n x n boxes for each n).

Every candidate and ``ground()``'s own box are scored by the model's region path against the
phrase (as ``ground()`` scores its own), and the best is kept. Confidence: the share of the
phrase's softmax over the patch cells (the distribution the grounding loss trains) that lies in
the box, so a box that holds where the model looks scores high and a wide guess scores what it covers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from regionmed.annotation.localizers import Placed, Query, clip_box
from regionmed.corpus.images import read_png, to_model_input


def grown_boxes(heat: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Bounding boxes ``[len(levels), 4]`` of the connected area above each level that holds the peak.

    A level ``t`` keeps the cells above ``mean + t * (peak - mean)``; the area is 8-connected.
    """
    gh, gw = heat.shape
    peak = np.unravel_index(int(np.nanargmax(heat)), heat.shape)
    mean, top = float(np.nanmean(heat)), float(np.nanmax(heat))
    boxes = []
    for t in levels:
        mask = heat >= mean + t * (top - mean)
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
        rows, cols = np.nonzero(labels == labels[peak])
        boxes.append([cols.min() / gw, rows.min() / gh, (cols.max() + 1) / gw, (rows.max() + 1) / gh])
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def tiling_boxes(sizes: Sequence[int]) -> np.ndarray:
    """Every box of an n x n tiling for each n in ``sizes`` (plus 2 x 2 blocks of it: halves, quarters)."""
    out = []
    for n in sizes:
        for span in (1, 2):
            if span > n:
                continue
            for i in range(n - span + 1):
                for j in range(n - span + 1):
                    out.append([j / n, i / n, (j + span) / n, (i + span) / n])
    return np.unique(np.asarray(out, dtype=np.float32).reshape(-1, 4), axis=0)


def mass_inside(heat: np.ndarray, box: Sequence[float], scale: float) -> float:
    """Share of ``softmax(scale * heat)`` over the cells that falls in ``box`` (cells partly in count pro rata)."""
    gh, gw = heat.shape
    z = scale * (heat - np.nanmax(heat))
    p = np.exp(z) / np.exp(z).sum()
    x0, y0, x1, y1 = box
    cx = np.clip(np.minimum(np.arange(1, gw + 1) / gw, x1) - np.maximum(np.arange(gw) / gw, x0), 0, None) * gw
    cy = np.clip(np.minimum(np.arange(1, gh + 1) / gh, y1) - np.maximum(np.arange(gh) / gh, y0), 0, None) * gh
    return float(np.clip((p * np.outer(cy, cx)).sum(), 0.0, 1.0))


class SelfLocalizer:
    name = "self"

    def __init__(self, model_dir: str | Path, channels: int, batch_size: int = 64,
                 levels: Sequence[float] = (0.25, 0.5, 0.75), tilings: Sequence[int] = (2, 3, 4),
                 select: str = "region_score"):
        from regionmed.model.io import load_model

        self.model, self.tokenizer = load_model(model_dir)
        if self.model.global_only:
            raise ValueError(f"annotate.self_model_dir {model_dir}: a global-only model has no region path to place phrases")
        self.channels, self.batch_size, self.levels = channels, batch_size, tuple(levels)
        self.select = select
        self.tiles = torch.from_numpy(tiling_boxes(tilings))

    @torch.inference_mode()
    def locate(self, queries: Sequence[Query]) -> list[Placed | None]:
        from regionmed.model.text import encode_text_list

        out: list[Placed | None] = []
        scale = float(self.model.scale())
        cache: dict[Path, np.ndarray] = {}
        for start in range(0, len(queries), self.batch_size):
            chunk = queries[start:start + self.batch_size]
            pixels = torch.from_numpy(np.stack([self._pixels(q.image_path, cache) for q in chunk]))
            emb = encode_text_list(self.model, self.tokenizer, [q.phrase for q in chunk])
            heat, box = self.model.ground(pixels, emb)
            heat_np = heat.float().numpy()
            if self.select == "heatmap":
                level = self.levels[len(self.levels) // 2]
                for k in range(len(chunk)):
                    clipped = clip_box(grown_boxes(heat_np[k], (level,))[0])
                    out.append(None if clipped is None else Placed(clipped, mass_inside(heat_np[k], clipped, scale)))
                cache.clear()
                continue
            cands = [torch.cat([box[k:k + 1].float(), torch.from_numpy(grown_boxes(heat_np[k], self.levels)),
                                self.tiles]) for k in range(len(chunk))]
            region = self.model.encode_regions(pixels, cands).float()
            per = [len(c) for c in cands]
            scores = (region.split(per) if region.numel() else [torch.zeros(0)] * len(chunk))
            for k, (c, s) in enumerate(zip(cands, scores)):
                best = c[int((s @ emb[k].float()).argmax())].tolist()
                clipped = clip_box(best)
                out.append(None if clipped is None else Placed(clipped, mass_inside(heat_np[k], clipped, scale)))
            cache.clear()
        return out

    def _pixels(self, path: Path, cache: dict[Path, np.ndarray]) -> np.ndarray:
        if path not in cache:
            cache[path] = to_model_input(read_png(path), self.channels)
        return cache[path]
