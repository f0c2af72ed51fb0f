"""How good are the engine's boxes where the truth is known (regions hidden by ``hide_given_fraction``)?

Each annotated finding region is matched to the hidden finding region of its image with the same
label (the one it overlaps most, when a label occurs twice). Per match: pointing (the annotated
box's centre inside the true box), IoU > 0.3 and IoU > 0.5, reported overall and by the true
region's size bucket, with 95% bootstrap intervals over matches. A hidden finding with no
annotated region of its label counts as a miss for ``recall``.
"""

from __future__ import annotations

import numpy as np

from regionmed.corpus.location_prior import box_iou_one, cell_hits, cell_index
from regionmed.corpus.schema import SIZE_BUCKETS


def match_hidden(annotated: dict[str, list[dict]], hidden: dict[str, list[dict]]) -> list[dict]:
    """One row per hidden finding region: its size, and the matched annotated box (or None)."""
    rows = []
    for image_id, truth in hidden.items():
        mine = [
            r
            for r in annotated.get(image_id, [])
            if r["kind"] == "finding" and r.get("origin") == "annotated"
        ]
        for t in truth:
            if t["kind"] != "finding":
                continue
            same = [r for r in mine if r["label"] == t["label"]]
            best = max(same, key=lambda r: box_iou_one(r["bbox"], t["bbox"]), default=None)
            rows.append(
                {"size": t["size"], "truth": t["bbox"], "box": None if best is None else best["bbox"]}
            )
    return rows


def _rate(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict:
    if len(values) == 0:
        return {"value": None, "low": None, "high": None, "n": 0}
    boots = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    return {
        "value": round(float(values.mean()), 4),
        "low": round(float(np.quantile(boots, 0.025)), 4),
        "high": round(float(np.quantile(boots, 0.975)), 4),
        "n": len(values),
    }


def box_quality(
    annotated: dict[str, list[dict]],
    hidden: dict[str, list[dict]],
    seed: int,
    n_boot: int = 1000,
    grid: int | None = None,
) -> dict:
    """Recall, pointing, IoU>0.3, IoU>0.5 (of matched regions), and with ``grid`` (cells per side)
    cell pointing, overall and by size bucket."""
    rows = match_hidden(annotated, hidden)
    rng = np.random.default_rng(seed)
    out: dict = {"n_hidden_findings": len(rows)}
    for bucket in ("all", *SIZE_BUCKETS):
        part = [r for r in rows if bucket == "all" or r["size"] == bucket]
        matched = [r for r in part if r["box"] is not None]
        ious = np.array([box_iou_one(r["box"], r["truth"]) for r in matched])
        centre_in = np.array([_centre_inside(r["box"], r["truth"]) for r in matched], dtype=float)
        out[bucket] = {
            "recall": _rate(np.array([r["box"] is not None for r in part], dtype=float), n_boot, rng),
            "pointing": _rate(centre_in, n_boot, rng),
            "iou>0.3": _rate((ious > 0.3).astype(float), n_boot, rng),
            "iou>0.5": _rate((ious > 0.5).astype(float), n_boot, rng),
            "mean_iou": round(float(ious.mean()), 4) if len(ious) else None,
        }
        if grid:
            cell_in = np.array(
                [_centre_cell_overlaps(r["box"], r["truth"], grid) for r in matched], dtype=float
            )
            out[bucket]["cell_pointing"] = _rate(cell_in, n_boot, rng)
    if grid:
        out["grid"] = grid
    return out


def _centre_inside(box, truth) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return truth[0] <= cx <= truth[2] and truth[1] <= cy <= truth[3]


def _centre_cell_overlaps(box, truth, grid: int) -> bool:
    """The evaluation's lenient pointing, with the drawn box's centre cell as the peak."""
    row, col = cell_index((box[1] + box[3]) / 2, grid), cell_index((box[0] + box[2]) / 2, grid)
    return bool(cell_hits(row, col, (grid, grid), np.asarray(truth, float))[0])
