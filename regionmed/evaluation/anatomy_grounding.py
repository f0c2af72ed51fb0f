"""Grounding of anatomy phrases ("the right lung") on their given boxes, reported apart from findings.

A corpus whose only boxes are anatomy (lungs drawn on a few real chest X-rays, no finding boxes)
still measures grounding here. The measures are those of the finding regions
(:mod:`regionmed.evaluation.grounding`): pointing (lenient, strict), box IoU hit rates, laterality,
and the no-image references on the same phrases (the text prior: the mean train box of the same
organ; uniform chance), under ``grounding/anatomy/...``, ``prior/anatomy/...`` and
``chance/anatomy/...`` so no finding key changes. Only ``given`` anatomy boxes count: an annotated
box is the annotator's guess, not truth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from regionmed.corpus.phrases import has_laterality, swap_laterality
from regionmed.evaluation.grounding import (
    box_iou,
    laterality_accuracy,
    pointing_game,
    same_phrase_alternatives,
    text_prior_pointing,
    uniform_chance_pointing,
)

ANATOMY_COLUMNS = ["image_index", "image_id", "bbox", "phrase", "label"]


def given_anatomy_regions(df: pd.DataFrame) -> pd.DataFrame:
    """One row per anatomy region with a given box: image row index, image id, box, phrase, label."""
    rows = [
        {
            "image_index": i,
            "image_id": row.image_id,
            "bbox": r["bbox"],
            "phrase": r["phrase"],
            "label": r["label"],
        }
        for i, row in enumerate(df.itertuples())
        for r in row.regions
        if r["kind"] == "anatomy" and (r.get("origin") or "given") == "given"
    ]
    return pd.DataFrame(rows, columns=ANATOMY_COLUMNS)


def anatomy_grounding(
    enc: Any, regions: pd.DataFrame, pixels: Any, train: pd.DataFrame
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-item values and image ids of every anatomy grounding measure (module doc), by metric name.

    ``enc.ground(pixels, image_index, phrases)`` gives each phrase's heatmap and box (the
    :class:`~regionmed.evaluation.inference.Encoder`); ``train`` gives the text prior its mean organ
    boxes. Empty when ``regions`` is.
    """
    if not len(regions):
        return {}
    index = regions["image_index"].to_numpy()
    boxes = np.asarray(regions["bbox"].tolist(), dtype=np.float64)
    groups = regions["image_id"].to_numpy()
    phrases = list(regions["phrase"])
    heat, pred = enc.ground(pixels, index, phrases)
    grid = heat.shape[-2:]
    alternatives = same_phrase_alternatives(index, phrases)
    hits = pointing_game(heat, boxes, alternatives)
    train_regions = [r for rs in train["regions"] for r in rs]
    prior = text_prior_pointing(
        phrases, boxes, train_regions, grid, labels=list(regions["label"]), alternatives=alternatives
    )
    chance = uniform_chance_pointing(boxes, grid, alternatives)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for rule in ("lenient", "strict"):
        out[f"grounding/anatomy/{rule}"] = (hits[rule].astype(float), groups)
        out[f"prior/anatomy/{rule}"] = (prior[rule].astype(float), groups)
        out[f"chance/anatomy/{rule}"] = (chance[rule].astype(float), groups)
    iou = box_iou(pred, boxes)
    for t in (0.3, 0.5):
        out[f"grounding/anatomy/iou>{t}"] = ((iou > t).astype(float), groups)
    sided = np.array([has_laterality(p) for p in phrases])
    if sided.any():
        swapped = [swap_laterality(p) for p, s in zip(phrases, sided, strict=True) if s]
        heat_swap, _ = enc.ground(pixels, index[sided], swapped)
        lat = laterality_accuracy(heat[sided], heat_swap, boxes[sided])
        out["grounding/anatomy/laterality"] = (np.asarray(lat["swapped_opposite"], float), groups[sided])
    return out
