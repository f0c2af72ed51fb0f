"""Where in its image is a phrase? One interface, four answers (``annotate.localizer``).

A localizer takes :class:`Query` rows (an image file, the phrase to place, its label and kind) and
returns one :class:`Placed` box per query, or ``None`` when it has no answer. Confidence is in 0..1
and means the same thing for every localizer: how much of the localizer's belief lies in the box.

* ``none``: places nothing (mentions only).
* ``prior``: the box the phrase's location words imply (:mod:`regionmed.corpus.location_prior`,
  the evaluation's text-only prior), at a fixed low confidence: it never looked at the image.
* ``self``: a trained RegionMed model (:mod:`regionmed.annotation.self_localizer`).
* ``detector``: a Hugging Face zero-shot detector, optionally refined by SAM
  (:mod:`regionmed.annotation.detector`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from regionmed.corpus.location_prior import text_prior_box, train_box_means

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


@dataclass(frozen=True)
class Placed:
    bbox: tuple[float, float, float, float]
    confidence: float


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
    """The text-only prior: organ frame from the train regions' mean boxes, halved by side words,
    cut in thirds by zone words; a phrase with no location word gets its label's mean box."""

    name = "prior"

    def __init__(self, train_regions: Iterable[dict], confidence: float):
        self.means = train_box_means(train_regions)
        self.confidence = confidence

    def locate(self, queries: Sequence[Query]) -> list[Placed | None]:
        out: list[Placed | None] = []
        for q in queries:
            if q.kind == "anatomy" and q.label not in self.means["organ"]:
                out.append(None)  # an organ no train region drew: the words alone do not place it
                continue
            box, source = text_prior_box(q.phrase, self.means, q.label)
            if (
                source == "image"
            ):  # no location word and no train box of any finding: the whole image says nothing
                out.append(None)
                continue
            clipped = clip_box(box)
            out.append(None if clipped is None else Placed(clipped, self.confidence))
        return out
