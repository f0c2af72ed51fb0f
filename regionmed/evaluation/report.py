"""Human-readable outputs: a markdown comparison report, heatmap overlays, and DVC plot data.

Plot data are plain files of x/y rows that ``dvc plots`` can render: CSV (one column per field)
or JSON (``{"<file stem>": [{...}, ...]}``), chosen by the output path's suffix.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regionmed.arrays import as_numpy
from regionmed.atomic import atomic_write_text

COLUMNS = ("regionmed", "baseline", "difference")


def _ci_text(value: Any, ci: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    text = f"{float(value):.{digits}f}"
    if ci is None:
        return text
    lo, hi = (
        (ci.low, ci.high)
        if hasattr(ci, "low")
        else (ci["low"], ci["high"])
        if isinstance(ci, Mapping)
        else ci
    )
    return f"{text} [{float(lo):.{digits}f}, {float(hi):.{digits}f}]"


def write_markdown_report(
    path: str | Path,
    comparison_rows: Sequence[Mapping[str, Any]],
    ci_rows: Mapping[str, Mapping[str, Any]] | None = None,
    gallery_paths: Sequence[str | Path] = (),
    *,
    title: str = "RegionMed evaluation",
    model_names: tuple[str, str] = ("RegionMed", "baseline"),
    digits: int = 3,
    notes: Sequence[str] = (),
) -> Path:
    """Write a markdown report: a table ``metric | RegionMed [CI] | baseline [CI] | difference [CI]``
    and an image gallery, and return its path.

    ``comparison_rows``: dicts with ``metric`` and any of ``regionmed``, ``baseline``,
    ``difference`` (numbers; a missing difference is computed). ``ci_rows``: metric → column →
    interval, where an interval is a :class:`~regionmed.evaluation.bootstrap.CI`, a dict with
    ``low``/``high`` or a ``(low, high)`` pair. Gallery images are linked relative to the report.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ci_rows = ci_rows or {}
    lines = [f"# {title}", ""]
    lines += [*(f"- {n}" for n in notes), ""] if notes else []
    lines += [f"| metric | {model_names[0]} | {model_names[1]} | difference |", "|---|---|---|---|"]
    for row in comparison_rows:
        m = row["metric"]
        vals = {c: row.get(c) for c in COLUMNS}
        if vals["difference"] is None and vals["regionmed"] is not None and vals["baseline"] is not None:
            vals["difference"] = float(vals["regionmed"]) - float(vals["baseline"])
        cis = ci_rows.get(m, {})
        cells = [_ci_text(vals[c], cis.get(c), digits) for c in COLUMNS]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if gallery_paths:
        lines += ["", "## Gallery", ""]
        for g in gallery_paths:
            rel = os.path.relpath(Path(g), path.parent).replace(os.sep, "/")
            lines.append(f"![{Path(g).stem}]({rel})")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def draw_heatmap_overlay(
    image_uint8: Any,
    heatmap: Any,
    true_box: Any,
    pred_box: Any | None,
    phrase: str,
    out_png: str | Path,
    alpha: float = 0.45,
) -> Path:
    """Save the image with the heatmap stretched over it, the true box (green), the predicted box
    (red, if given) and the phrase as the title. Boxes are normalised ``[x0, y0, x1, y1]``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    img = as_numpy(image_uint8)
    h, w = img.shape[:2]
    heat = as_numpy(heatmap, np.float64)
    fig, ax = plt.subplots(figsize=(4, 4.3), dpi=100)
    try:
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, extent=(0, w, h, 0))
        ax.imshow(heat, cmap="jet", alpha=alpha, interpolation="bilinear", extent=(0, w, h, 0))
        for box, color in ((true_box, "lime"), (pred_box, "red")):
            if box is None:
                continue
            x0, y0, x1, y1 = as_numpy(box, np.float64).reshape(4)
            ax.add_patch(
                Rectangle(
                    (x0 * w, y0 * h), (x1 - x0) * w, (y1 - y0) * h, fill=False, edgecolor=color, linewidth=1.8
                )
            )
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(phrase, fontsize=9, wrap=True)
        ax.axis("off")
        out_png = Path(out_png)
        out_png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out_png, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out_png


def write_plot_rows(rows: Sequence[Mapping[str, Any]], out_path: str | Path) -> Path:
    """Write x/y rows as CSV (``.csv``/``.tsv``) or JSON (``{stem: rows}``, any other suffix)."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    if out.suffix.lower() in (".csv", ".tsv"):
        text = io.StringIO(newline="")
        writer = csv.DictWriter(
            text, fieldnames=fields, delimiter="\t" if out.suffix.lower() == ".tsv" else ","
        )
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(out, text.getvalue())
    else:
        atomic_write_text(out, json.dumps({out.stem: list(rows)}, indent=1) + "\n")
    return out


def plot_roc(
    scores: Any, targets: Any, classnames: Sequence[str], out_path: str | Path, max_points: int = 200
) -> Path:
    """ROC curves as rows ``class, fpr, tpr`` (one curve per class that has both outcomes),
    thinned to at most ``max_points`` points per class."""
    from sklearn.metrics import roc_curve

    s, y = as_numpy(scores, np.float64), as_numpy(targets).astype(bool)
    rows = []
    for j, c in enumerate(classnames):
        if y[:, j].all() or not y[:, j].any():
            continue
        fpr, tpr, _ = roc_curve(y[:, j], s[:, j])
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
        rows += [{"class": c, "fpr": round(float(fpr[i]), 6), "tpr": round(float(tpr[i]), 6)} for i in keep]
    return write_plot_rows(rows, out_path)


def plot_recall_at_k(
    recalls: Mapping[str, Mapping[int, float]] | Mapping[int, float], out_path: str | Path
) -> Path:
    """Recall@K rows ``series, k, recall``: ``recalls`` maps a series name (model or direction) to
    {k: recall}, or is a single {k: recall} (series ``"recall"``)."""
    series = recalls if all(isinstance(v, Mapping) for v in recalls.values()) else {"recall": recalls}
    rows = [
        {"series": name, "k": int(k), "recall": float(v)}
        for name, curve in series.items()
        for k, v in sorted(curve.items())
    ]
    return write_plot_rows(rows, out_path)
