"""Phrase grounding: pointing game, box IoU, laterality, and no-image baselines on the same phrases.

Geometry. Boxes are ``[x0, y0, x1, y1]`` normalised to 0..1 (x to the right of the image, y
down). A heatmap ``[gh, gw]`` covers the image with cells ``(i, j)`` spanning
``x in [j/gw, (j+1)/gw]``, ``y in [i/gh, (i+1)/gh]``. The peak is the first maximum in row-major
order (``np.argmax``), so a constant heatmap points at the top-left cell.

Pointing game
    * lenient: the peak cell overlaps the true box with positive area;
    * strict: the peak cell contains the true box's centre (cells are half-open ``[lo, hi)``,
      the last row/column closed, so exactly one cell contains any point).

A phrase can name several regions of its image (a location-free "a small nodule" where there are
two): pass ``alternatives`` (:func:`same_phrase_alternatives`) and pointing at any of them counts,
for the model and for the no-image baselines alike.

Images follow the radiological convention: the patient's right is on the image left (x < 0.5).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from regionmed.arrays import as_numpy
from regionmed.corpus.location_prior import (  # noqa: F401 (ZONE_INDEX re-exported)
    ZONE_INDEX,
    cell_hits,
    cell_index,
    text_prior_box,
    train_box_means,
)

MIDLINE_BAND = 0.08  # mirrors regionmed.corpus.phrases.MIDLINE_BAND


def _boxes(x: Any) -> np.ndarray:
    b = as_numpy(x, np.float64).reshape(-1, 4)
    return b


def peak_cells(heatmaps: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of each heatmap's peak: ``([N], [N])``."""
    h = as_numpy(heatmaps, np.float64)
    if h.ndim == 2:
        h = h[None]
    flat = np.nan_to_num(h.reshape(len(h), -1), nan=-np.inf).argmax(axis=1)
    return flat // h.shape[2], flat % h.shape[2]


def same_phrase_alternatives(image_index: Sequence[int], phrases: Sequence[str]) -> list[list[int]]:
    """Per phrase, the *other* rows of the same image with the identical phrase (usually none)."""
    rows: dict[tuple, list[int]] = {}
    for k, key in enumerate(zip(image_index, phrases, strict=True)):
        rows.setdefault(key, []).append(k)
    return [[j for j in rows[key] if j != k] for k, key in enumerate(zip(image_index, phrases, strict=True))]


def _hits_any(
    rows: np.ndarray,
    cols: np.ndarray,
    grid: tuple[int, int],
    boxes: np.ndarray,
    alternatives: Sequence[Sequence[int]] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cell hits of each phrase's peak on its own box or any of its ``alternatives`` boxes."""
    lenient, strict = cell_hits(rows, cols, grid, boxes)
    if alternatives:
        pairs = np.array([(k, j) for k, alt in enumerate(alternatives) for j in alt], dtype=int).reshape(
            -1, 2
        )
        if len(pairs):
            alt_l, alt_s = cell_hits(rows[pairs[:, 0]], cols[pairs[:, 0]], grid, boxes[pairs[:, 1]])
            np.logical_or.at(lenient, pairs[:, 0], alt_l)
            np.logical_or.at(strict, pairs[:, 0], alt_s)
    return lenient, strict


def pointing_game(
    heatmaps: Any, true_boxes: Any, alternatives: Sequence[Sequence[int]] | None = None
) -> dict[str, np.ndarray]:
    """Per phrase, ``lenient`` and ``strict`` hits (bool ``[N]``) of the heatmap peak (module doc)."""
    h = as_numpy(heatmaps)
    rows, cols = peak_cells(h)
    lenient, strict = _hits_any(rows, cols, h.shape[-2:], _boxes(true_boxes), alternatives)
    return {"lenient": lenient, "strict": strict}


def box_iou(pred_boxes: Any, true_boxes: Any) -> np.ndarray:
    """IoU of each predicted box with its own true box, ``[N]`` (0 where the union is empty)."""
    p, t = _boxes(pred_boxes), _boxes(true_boxes)
    iw = np.clip(np.minimum(p[:, 2], t[:, 2]) - np.maximum(p[:, 0], t[:, 0]), 0, None)
    ih = np.clip(np.minimum(p[:, 3], t[:, 3]) - np.maximum(p[:, 1], t[:, 1]), 0, None)
    inter = iw * ih

    def area(b):
        return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)

    union = area(p) + area(t) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou_hit_rates(
    pred_boxes: Any, true_boxes: Any, thresholds: Sequence[float] = (0.3, 0.5)
) -> dict[str, float]:
    """``mean_iou`` and ``iou>t``: the fraction of phrases whose IoU is strictly above each ``t``."""
    iou = box_iou(pred_boxes, true_boxes)
    out = {"mean_iou": float(iou.mean()) if iou.size else float("nan")}
    for t in thresholds:
        out[f"iou>{t}"] = float((iou > t).mean()) if iou.size else float("nan")
    return out


def laterality_accuracy(
    heatmap_true_phrase: Any, heatmap_swapped_phrase: Any, true_boxes: Any, midline_band: float = MIDLINE_BAND
) -> dict[str, Any]:
    """Does swapping left/right in the phrase move the peak across the image midline (x = 0.5)?

    For each phrase (its true box centre ``cx``; its side is ``cx < 0.5`` or ``cx > 0.5``):

    * ``swapped_opposite``: the swapped phrase's peak cell centre is on the other side of 0.5
      from ``cx`` (the headline ``accuracy``);
    * ``true_same_side``: the true phrase's peak cell centre is on the same side as ``cx``;
    * ``flipped``: both at once (the peak follows the word).

    A peak cell centred exactly on 0.5 (odd grid width) is on neither side and fails. Phrases whose
    box centre lies within ``midline_band`` of 0.5 have no side: they get NaN and are left out of
    the means (``n_scored`` counts the rest). Pass only phrases that mention a side.
    """
    ht, hs = as_numpy(heatmap_true_phrase), as_numpy(heatmap_swapped_phrase)
    gw = ht.shape[-1]
    boxes = _boxes(true_boxes)
    side = np.sign((boxes[:, 0] + boxes[:, 2]) / 2 - 0.5)
    scored = np.abs((boxes[:, 0] + boxes[:, 2]) / 2 - 0.5) >= midline_band

    def peak_side(h):
        return np.sign((peak_cells(h)[1] + 0.5) / gw - 0.5)

    st, ss = peak_side(ht), peak_side(hs)
    per = {"swapped_opposite": (ss == -side) & (ss != 0), "true_same_side": (st == side) & (st != 0)}
    per["flipped"] = per["swapped_opposite"] & per["true_same_side"]
    out: dict[str, Any] = {k: np.where(scored, v.astype(float), np.nan) for k, v in per.items()}
    n = int(scored.sum())
    out["accuracy"] = float(np.nanmean(out["swapped_opposite"])) if n else float("nan")
    out["flip_rate"] = float(np.nanmean(out["flipped"])) if n else float("nan")
    out["n_scored"] = n
    return out


def uniform_chance_pointing(
    true_boxes: Any, grid: tuple[int, int], alternatives: Sequence[Sequence[int]] | None = None
) -> dict[str, np.ndarray]:
    """Expected hit of a uniformly random peak cell, per phrase: ``lenient`` = fraction of cells
    overlapping the box (or any of its ``alternatives``), ``strict`` = the fraction of cells holding
    one of their centres (1 / number of cells for a single box)."""
    gh, gw = grid
    b = _boxes(true_boxes)
    rows, cols = np.divmod(np.arange(gh * gw), gw)
    lenient_cells = np.zeros((len(b), gh * gw), dtype=bool)
    strict_cells = np.zeros((len(b), gh * gw), dtype=bool)
    for start in range(0, len(b), 4096):  # the same cell test as pointing_game, for every cell
        chunk = b[start : start + 4096]
        lenient_cells[start : start + 4096], strict_cells[start : start + 4096] = cell_hits(
            rows[None, :], cols[None, :], (gh, gw), chunk[:, None, :]
        )
    if alternatives:
        lenient_cells, strict_cells = lenient_cells.copy(), strict_cells.copy()
        for k, alt in enumerate(alternatives):
            if alt:
                lenient_cells[k] |= lenient_cells[list(alt)].any(0)
                strict_cells[k] |= strict_cells[list(alt)].any(0)
    return {"lenient": lenient_cells.mean(axis=1), "strict": strict_cells.mean(axis=1)}


# ---------------------------------------------------------------------------------------------
# Text-only prior: where the words alone say the region is (the rules live in
# regionmed.corpus.location_prior, shared with the annotate_regions stage's ``prior`` localizer).


def text_prior_pointing(
    phrases: Sequence[str],
    true_boxes: Any,
    train_regions: Iterable[Any],
    grid: tuple[int, int],
    labels: Sequence[str | None] | None = None,
    mode: str = "rules",
    alternatives: Sequence[Sequence[int]] | None = None,
) -> dict[str, np.ndarray]:
    """Pointing game of a no-image model that points at the centre of :func:`text_prior_box`.

    Returns per phrase ``lenient``/``strict`` hits (same rules as :func:`pointing_game`, with the
    peak cell = the cell holding the prior box centre), the prior ``boxes`` ``[N, 4]`` and the
    ``source`` rule of each, so paired differences with a model can be bootstrapped.
    """
    means = train_box_means(train_regions)
    labels = list(labels) if labels is not None else [None] * len(phrases)
    found = [text_prior_box(p, means, lab, mode) for p, lab in zip(phrases, labels, strict=True)]
    boxes = np.array([b for b, _ in found], float).reshape(-1, 4)
    gh, gw = grid
    rows = cell_index((boxes[:, 1] + boxes[:, 3]) / 2, gh)
    cols = cell_index((boxes[:, 0] + boxes[:, 2]) / 2, gw)
    lenient, strict = _hits_any(rows, cols, (gh, gw), _boxes(true_boxes), alternatives)
    return {"lenient": lenient, "strict": strict, "boxes": boxes, "source": np.array([s for _, s in found])}
