"""Organs the annotator places in an image without their boxes, used only where they beat the mean.

An image-reading localizer (``self``: the annotator model) can place "the right lung" in an image that
has no lung box, and that box can then frame the report's words there (``annotator_anatomy``) instead
of the corpus's mean box. Whether it should is measured, per modality and organ, on the val images
that do have that organ's box (the annotator never trained on them): the annotator's box is used for
an organ only when, on up to ``annotate.annotator_anatomy_check`` such images, it overlaps the given
box more than the corpus mean does (mean IoU). A model trained on a few boxed images places small
organs (kidneys, the heart) better than their mean, but a large one (a lung) as a box of the median
size around its heatmap's peak, which fits worse than the mean: the check keeps the mean there. No
val image with the organ's box: no evidence, the mean frames the words.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from regionmed.annotation.anatomy import CorpusAnatomy, Frame
from regionmed.annotation.localizers import Localizer, Placed, Query
from regionmed.corpus.location_prior import box_iou_one

Box = tuple[float, float, float, float]


def _organ_query(corpus_dir: Path, image_path: str, organ: str, mean: Box) -> Query:
    """ "the <organ>", searched near the corpus's mean box of it."""
    frame = Frame(mean, organ, mean, "corpus_anatomy")
    return Query(corpus_dir / image_path, f"the {organ}", organ, "anatomy", None, (frame,))


def organ_check(
    df: pd.DataFrame, corpus_dir: Path, localizer: Localizer, anatomy: CorpusAnatomy, n_images: int
) -> dict[str, dict]:
    """Per ``"<modality>/<organ>"``: val images checked, the annotator's and the mean's IoU with the given
    box, and whether the annotator's box is used (module docstring)."""
    val = df[df["split"] == "val"]
    queries, owners = [], []
    for modality, group in val.groupby("modality", sort=True):
        means = anatomy.organs(modality)
        for organ, mean in sorted(means.items()):
            rows = [
                (path, r["bbox"])
                for path, regions in zip(group["image_path"], group["regions"], strict=True)
                for r in regions
                if r["kind"] == "anatomy" and r["label"] == organ and r.get("origin", "given") == "given"
            ][:n_images]
            for path, truth in rows:
                queries.append(_organ_query(corpus_dir, path, organ, mean))
                owners.append((f"{modality}/{organ}", truth, mean))
    placed = localizer.locate(queries) if queries else []
    ious: dict[str, list[tuple[float, float]]] = {}
    for (key, truth, mean), p in zip(owners, placed, strict=True):
        ious.setdefault(key, []).append((box_iou_one(p.bbox, truth) if p else 0.0, box_iou_one(mean, truth)))
    out = {}
    for key, pairs in ious.items():
        learned, mean = np.mean(pairs, axis=0)
        out[key] = {
            "n": len(pairs),
            "annotator_iou": round(float(learned), 4),
            "mean_iou": round(float(mean), 4),
            "used": bool(learned > mean),
        }
    return out


def learned_organs(
    df: pd.DataFrame,
    corpus_dir: Path,
    images: list[int],
    localizer: Localizer,
    anatomy: CorpusAnatomy,
    used: set[str],
) -> dict[int, dict[str, tuple[Box, float]]]:
    """The organs (``"<modality>/<organ>"`` in ``used``) the localizer places in each of ``images`` that
    lacks their given box: image index → organ → (box, confidence)."""
    queries, owners = [], []
    for i in images:
        modality = df.at[i, "modality"]
        given = {r["label"] for r in df.at[i, "regions"] if r["kind"] == "anatomy"}
        for organ, mean in anatomy.organs(modality).items():
            if organ not in given and f"{modality}/{organ}" in used:
                queries.append(_organ_query(corpus_dir, df.at[i, "image_path"], organ, mean))
                owners.append((i, organ))
    out: dict[int, dict] = {}
    for (i, organ), p in zip(owners, localizer.locate(queries) if queries else [], strict=True):
        if p is not None:
            out.setdefault(i, {})[organ] = (p.bbox, p.confidence)
    return out


def learned_organ_region(q: Query, learned: dict[str, tuple[Box, float]]) -> Placed | None:
    """An anatomy phrase whose one frame is the organ the annotator placed in this image: that box (cut by
    the phrase's zone words), at the annotator's confidence."""
    if q.kind != "anatomy" or len(q.frames) != 1:
        return None
    (frame,) = q.frames
    if frame.source != "annotator_anatomy" or frame.organ != q.label or frame.organ not in learned:
        return None
    return Placed(frame.zone, learned[frame.organ][1], "annotator_anatomy")
