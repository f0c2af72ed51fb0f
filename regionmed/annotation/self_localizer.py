"""The ``self`` localizer: a trained RegionMed model places the phrases (self-training).

``ground()`` alone proposes the patch cells, the grid tilings and boxes of 1-3 cells around the best
cells, so its box cannot be larger than 3/8 of the side at the default 8x8 grid: a lung or a large
effusion is out of reach. Here the candidates also *grow to the structure*:

* the connected area of the heatmap above several levels (a share of the way from its mean to its
  peak) that holds the peak cell, as a bounding box;
* multi-scale tilings of the image (``annotate.self_tilings``, n x n boxes for each n).

Every candidate and ``ground()``'s own box are scored by the model's region path against the
phrase (as ``ground()`` scores its own), and the best is kept (``annotate.self_select:
region_score``). With ``sized``, the model says only *where*: the box is centred where the heatmap
peaks, placed below cell resolution, and is as large as the given train boxes of the phrase's label
and size word ("a small nodule"); a finding smaller than a patch cell cannot be drawn from the cells
alone. Phrases whose label has no given train box fall back to ``region_score``. Confidence: the share of the
phrase's softmax over the patch cells (the distribution the grounding loss trains) that lies in
the box, so a box that holds where the model looks scores high and a wide guess scores what it covers.
With ``location_words``, the query's frames (the part of this image's organ its location words name:
regionmed/annotation/anatomy.py) bound where the heatmap is read; a phrase without one is read anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from regionmed.annotation.localizers import Placed, Query, clip_box
from regionmed.corpus.images import read_png, to_model_input
from regionmed.corpus.location_prior import cell_hits, cell_index


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


def train_box_sizes(train_regions: Iterable[Any]) -> dict[tuple[str, str, str | None], tuple[float, float]]:
    """Median (width, height) of the *given* train boxes by (kind, label, size bucket), and by
    (kind, label, None) over every size; annotated boxes are left out so a round never feeds on itself."""
    acc: dict[tuple[str, str, str | None], list[tuple[float, float]]] = {}
    for r in train_regions:
        if r.get("origin", "given") != "given":
            continue
        x0, y0, x1, y1 = (float(v) for v in r["bbox"])
        for key in {(r["kind"], r["label"], r.get("size")), (r["kind"], r["label"], None)}:
            acc.setdefault(key, []).append((x1 - x0, y1 - y0))
    return {k: tuple(float(v) for v in np.median(np.asarray(wh), axis=0)) for k, wh in acc.items()}


def peak_centre(heat: np.ndarray, scale: float) -> tuple[float, float]:
    """(x, y) where the heatmap peaks, below cell resolution: the ``softmax(scale * heat)``-weighted
    centre of the 3 x 3 cells around the peak cell."""
    gh, gw = heat.shape
    pr, pc = np.unravel_index(int(np.nanargmax(heat)), heat.shape)
    r0, r1, c0, c1 = max(pr - 1, 0), min(pr + 2, gh), max(pc - 1, 0), min(pc + 2, gw)
    w = np.nan_to_num(np.exp(scale * (heat[r0:r1, c0:c1] - np.nanmax(heat))))  # NaN: a cell ruled out
    rows, cols = np.mgrid[r0:r1, c0:c1]
    return float(((cols + 0.5) * w).sum() / w.sum() / gw), float(((rows + 0.5) * w).sum() / w.sum() / gh)


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


def shifted_heatmaps(
    ground, pixels: torch.Tensor, emb: torch.Tensor, shifts: int
) -> tuple[np.ndarray, torch.Tensor]:
    """The heatmap at ``shifts`` times the patch grid's resolution, and ``ground()``'s own box.

    The image is moved down and right by ``k / shifts`` of a patch for k = 0..shifts-1 (edges
    replicated), so each pass cuts it into patches at another offset; a fine cell's score is the
    mean of the patch cells that hold it across passes. ``shifts = 1``: the plain heatmap.
    """
    heat, box = ground(pixels, emb)
    if shifts == 1:
        return heat.float().numpy().copy(), box
    bsz, gh, gw = heat.shape
    height, width = pixels.shape[-2:]
    total = np.zeros((bsz, gh * shifts, gw * shifts))
    count = np.zeros((gh * shifts, gw * shifts))
    fine_r, fine_c = np.arange(gh * shifts), np.arange(gw * shifts)
    for k in range(shifts):
        if k:
            dy, dx = round(k * height / gh / shifts), round(k * width / gw / shifts)
            moved = torch.nn.functional.pad(pixels, (dx, 0, dy, 0), mode="replicate")[..., :height, :width]
            heat = ground(moved, emb)[0]
        rows, cols = (
            (fine_r + k) // shifts,
            (fine_c + k) // shifts,
        )  # the patch cell of this pass holding each fine cell
        fine = np.ix_(
            rows < gh, cols < gw
        )  # fine cells this pass covers (the moved image's last patch is cut)
        total[:, fine[0], fine[1]] += heat.float().numpy()[:, rows[fine[0]], cols[fine[1]]]
        count[fine] += 1
    return (total / count).astype(np.float32), box


def cells_touching(box: Sequence[float], shape: tuple[int, int]) -> np.ndarray:
    """Boolean ``shape`` mask of the grid cells that overlap ``box`` (a positive area of it)."""
    rows, cols = np.indices(shape)
    return cell_hits(rows, cols, shape, np.asarray(box, float))[0]


def centre_allowed(boxes: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """For each box ``[n, 4]``, whether its centre falls in an open cell of the boolean grid ``cells``."""
    gh, gw = cells.shape
    return cells[
        cell_index((boxes[:, 1] + boxes[:, 3]) / 2, gh), cell_index((boxes[:, 0] + boxes[:, 2]) / 2, gw)
    ]


def mass_inside(heat: np.ndarray, box: Sequence[float], scale: float) -> float:
    """Share of ``softmax(scale * heat)`` over the cells that falls in ``box`` (cells partly in count pro
    rata)."""
    gh, gw = heat.shape
    e = np.nan_to_num(np.exp(scale * (heat - np.nanmax(heat))))  # NaN: a cell ruled out
    p = e / e.sum()
    x0, y0, x1, y1 = box
    cx = np.clip(np.minimum(np.arange(1, gw + 1) / gw, x1) - np.maximum(np.arange(gw) / gw, x0), 0, None) * gw
    cy = np.clip(np.minimum(np.arange(1, gh + 1) / gh, y1) - np.maximum(np.arange(gh) / gh, y0), 0, None) * gh
    return float(np.clip((p * np.outer(cy, cx)).sum(), 0.0, 1.0))


class SelfLocalizer:
    name = "self"
    places_organs = True  # it can place the organs that frame the words in an image without their boxes

    def __init__(
        self,
        model_dir: str | Path,
        channels: int,
        batch_size: int = 64,
        levels: Sequence[float] = (0.25, 0.5, 0.75),
        tilings: Sequence[int] = (2, 3, 4),
        select: str = "region_score",
        sizes: dict[tuple[str, str, str | None], tuple[float, float]] | None = None,
        organs: Iterable[str] | None = None,
        location_words: bool = True,
        shifts: int = 1,
    ):
        from regionmed.model.io import load_model

        self.model, self.tokenizer = load_model(model_dir)
        if self.model.global_only:
            raise ValueError(
                f"annotate.self_model_dir {model_dir}: "
                "a global-only model has no region path to place phrases"
            )
        self.channels, self.batch_size, self.levels = channels, batch_size, tuple(levels)
        if select == "sized" and sizes is None:
            raise ValueError(
                "annotate.self_select sized needs the given train boxes' sizes (train_box_sizes)"
            )
        self.select, self.sizes = select, sizes or {}
        # anatomy the given train regions drew (None: any): the model learned to place only those
        # organs, and an organ the corpus never boxes (the whole brain of a brain MRI) is no region
        self.organs = None if organs is None else frozenset(organs)
        self.tiles = torch.from_numpy(tiling_boxes(tilings))
        # the report's location words ("right upper zone"), read as the part of this image's organ they
        # name (the query's frames), bound where the heatmap is searched
        self.location_words = location_words
        self.shifts = shifts
        # what builds this localizer again elsewhere (a cluster worker loads the model from the folder)
        self.settings = {
            "model_dir": str(model_dir),
            "channels": channels,
            "batch_size": batch_size,
            "levels": self.levels,
            "tilings": tuple(tilings),
            "select": select,
            "sizes": sizes,
            "organs": self.organs,
            "location_words": location_words,
            "shifts": shifts,
        }

    def allowed_cells(self, q: Query, shape: tuple[int, int]) -> np.ndarray | None:
        """The grid cells the phrase's frames touch (None: no frame or no bound, any cell)."""
        if not self.location_words or not q.frames:
            return None
        cells = np.zeros(shape, dtype=bool)
        for frame in q.frames:
            cells |= cells_touching(frame.zone, shape)
        return cells if cells.any() else None

    def placeable(self, q: Query) -> bool:
        """A finding, or an organ the given train regions drew (others get no box)."""
        return q.kind != "anatomy" or self.organs is None or q.label in self.organs

    def locate(self, queries: Sequence[Query]) -> list[Placed | None]:
        keep = [i for i, q in enumerate(queries) if self.placeable(q)]
        out: list[Placed | None] = [None] * len(queries)
        for i, placed in zip(keep, self.place([queries[i] for i in keep]), strict=True):
            out[i] = placed
        return out

    @torch.inference_mode()
    def place(self, queries: Sequence[Query]) -> list[Placed | None]:
        """The box of each (placeable) query, in batches of ``batch_size`` from the first: a batch's sums
        depend on what it holds, so the same queries in the same batches give the same boxes."""
        from regionmed.model.text import encode_text_list

        out: list[Placed | None] = []
        scale = float(self.model.scale())
        cache: dict[Path, np.ndarray] = {}
        for start in range(0, len(queries), self.batch_size):
            chunk = queries[start : start + self.batch_size]
            pixels = torch.from_numpy(np.stack([self._pixels(q.image_path, cache) for q in chunk]))
            emb = encode_text_list(self.model, self.tokenizer, [q.phrase for q in chunk])
            heat_np, box = shifted_heatmaps(self.model.ground, pixels, emb, self.shifts)
            allowed = [self.allowed_cells(q, heat_np.shape[1:]) for q in chunk]
            for k, cells in enumerate(allowed):
                if cells is not None:
                    heat_np[k][~cells] = np.nan
            if self.select == "heatmap":
                level = self.levels[len(self.levels) // 2]
                for k in range(len(chunk)):
                    clipped = clip_box(grown_boxes(heat_np[k], (level,))[0])
                    out.append(
                        None
                        if clipped is None
                        else Placed(clipped, mass_inside(heat_np[k], clipped, scale), "heatmap")
                    )
                cache.clear()
                continue
            cands = [
                torch.cat(
                    [
                        box[k : k + 1].float(),
                        torch.from_numpy(grown_boxes(heat_np[k], self.levels)),
                        self.tiles,
                    ]
                )
                for k in range(len(chunk))
            ]
            region = self.model.encode_regions(pixels, cands).float()
            per = [len(c) for c in cands]
            scores = region.split(per) if region.numel() else [torch.zeros(0)] * len(chunk)
            for k, (c, s) in enumerate(zip(cands, scores, strict=True)):
                score = s @ emb[k].float()
                if allowed[k] is not None:  # candidates centred where the location words rule out lose
                    open_ = torch.from_numpy(centre_allowed(c.numpy(), allowed[k]))
                    score = (
                        torch.where(open_, score, score.new_tensor(float("-inf"))) if open_.any() else score
                    )
                best = c[int(score.argmax())].tolist()
                size = self._size(chunk[k]) if self.select == "sized" else None
                if size is not None:
                    (x, y), (w, h) = peak_centre(heat_np[k], scale), size
                    best = [x - w / 2, y - h / 2, x + w / 2, y + h / 2]
                clipped = clip_box(best)
                out.append(
                    None
                    if clipped is None
                    else Placed(clipped, mass_inside(heat_np[k], clipped, scale), "heatmap")
                )
            cache.clear()
        return out

    def _size(self, q: Query) -> tuple[float, float] | None:
        return self.sizes.get((q.kind, q.label, q.size)) or self.sizes.get((q.kind, q.label, None))

    def _pixels(self, path: Path, cache: dict[Path, np.ndarray]) -> np.ndarray:
        if path not in cache:
            cache[path] = to_model_input(read_png(path), self.channels)
        return cache[path]
