"""Where in its image is a phrase? One interface, four answers (``annotate.localizer``).

A localizer takes :class:`Query` rows (an image file, the phrase to place, its label and kind, and the
:class:`~regionmed.annotation.anatomy.Frame` s its location words name in that image) and returns one
:class:`Placed` box per query, or ``None`` when it has no answer, with what placed it (``placed_by``,
one of :data:`regionmed.corpus.schema.PLACEMENTS`). Confidence is in 0..1: how much of the
localizer's belief lies in the box.

* ``none``: places nothing (mentions only).
* ``prior``: the box the location words name in this image's anatomy (its frame), at a confidence set
  per frame source (``annotate.prior_confidence``): it never looked at the pixels. A phrase whose words
  name no single frame (no location word; a zone without a side) is not placed.
* ``self``: a trained RegionMed model (:mod:`regionmed.annotation.self_localizer`).
* ``detector``: a Hugging Face zero-shot detector, optionally refined by SAM
  (:mod:`regionmed.annotation.detector`).
* ``auto`` (:mod:`regionmed.annotation.stage`) picks one of these for the corpus at hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from regionmed.annotation.anatomy import Frame

LOCALIZERS = ("none", "prior", "self", "detector")


@dataclass(frozen=True)
class Query:
    image_path: Path
    phrase: str
    label: str
    kind: str  # "finding" | "anatomy"
    size: str | None = (
        None  # the phrase's size bucket ("subtle" | "small" | "large"), when it has a size word
    )
    # where the location words put the phrase in this image (annotation/anatomy.py); () names no place
    frames: tuple[Frame, ...] = ()


@dataclass(frozen=True)
class Placed:
    bbox: tuple[float, float, float, float]
    confidence: float
    placed_by: str  # one of regionmed.corpus.schema.PLACEMENTS


class Localizer(Protocol):
    name: str

    def locate(self, queries: Sequence[Query]) -> list[Placed | None]: ...


def clip_box(box: Iterable[float]) -> tuple[float, float, float, float] | None:
    """A box clipped to the image, or None when nothing of positive area is left."""
    x0, y0, x1, y1 = (float(np.clip(v, 0.0, 1.0)) for v in box)
    if x1 <= x0 or y1 <= y0 or not np.isfinite([x0, y0, x1, y1]).all():
        return None
    return (round(x0, 6), round(y0, 6), round(x1, 6), round(y1, 6))


class NoLocalizer:
    name = "none"

    def locate(self, queries: Sequence[Query]) -> list[Placed | None]:
        return [None] * len(queries)


class PriorLocalizer:
    """The location words alone, inside this image's anatomy: the box of the query's one frame (the
    named part of the organ, from the image's given anatomy, the annotator's or the corpus's mean), at
    the confidence of that frame's source. No frame, or a choice of frames (a zone word without a side):
    nothing, since only the image could say where."""

    name = "prior"

    def __init__(self, confidence: Mapping[str, float]):
        self.confidence = dict(confidence)

    def locate(self, queries: Sequence[Query]) -> list[Placed | None]:
        out: list[Placed | None] = []
        for q in queries:
            if len(q.frames) != 1:
                out.append(None)
                continue
            (frame,) = q.frames
            clipped = clip_box(frame.zone)
            out.append(
                None if clipped is None else Placed(clipped, self.confidence[frame.source], frame.source)
            )
        return out
