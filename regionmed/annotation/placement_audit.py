"""Where did the engine put chest findings? Checks of placed boxes against lungs (a benchmark's and a
test's; no truth of the findings themselves is needed).

* :func:`spans_both` - a finding box that overlaps both lungs lies across the mediastinum: since a
  finding that names both sides is read as one mention per side (docs/mentions.md), every such box is
  one the words did not ask for;
* :func:`centre_inside`, :func:`share_inside`, :func:`inside` - whether a box lies in a lung: its
  centre inside the lung's box, the share of its area inside, both (at least ``share`` of it);
* :func:`lungs_of` - the lungs a check uses for an image: its given lung boxes, else the corpus's mean.

Boxes are ``[x0, y0, x1, y1]`` in 0..1, the patient's right lung on the image's left.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from regionmed.annotation.anatomy import CorpusAnatomy, overlaps
from regionmed.corpus.location_prior import phrase_location

LUNGS = ("right lung", "left lung")
INSIDE_SHARE = 0.9  # a box "lies in" a lung when its centre and this share of its area are inside


def spans_both(box: Sequence[float], lungs: Mapping[str, Sequence[float]]) -> bool:
    return all(name in lungs and overlaps(tuple(box), tuple(lungs[name])) for name in LUNGS)


def share_inside(box: Sequence[float], organ: Sequence[float]) -> float:
    """The share of a box's area that lies in ``organ``."""
    x0, y0, x1, y1 = box
    iw = max(0.0, min(x1, organ[2]) - max(x0, organ[0]))
    ih = max(0.0, min(y1, organ[3]) - max(y0, organ[1]))
    area = (x1 - x0) * (y1 - y0)
    return iw * ih / area if area > 0 else 0.0


def centre_inside(box: Sequence[float], organ: Sequence[float]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return organ[0] <= cx <= organ[2] and organ[1] <= cy <= organ[3]


def inside(box: Sequence[float], organ: Sequence[float], share: float = INSIDE_SHARE) -> bool:
    """The box's centre in ``organ``, and at least ``share`` of its area."""
    return centre_inside(box, organ) and share_inside(box, organ) >= share


def lungs_of(regions: Iterable[dict], modality: str, corpus: CorpusAnatomy) -> dict[str, tuple]:
    """An image's lungs: its given lung boxes, else the corpus's mean lung boxes of its modality."""
    given = {r["label"]: tuple(r["bbox"]) for r in regions if r.get("origin", "given") == "given"}
    means = corpus.organs(modality)
    return {name: given.get(name, means.get(name)) for name in LUNGS if name in given or name in means}


def named_side(phrase: str) -> str | None:
    """The side a region's phrase names, as the text prior reads it."""
    side, _ = phrase_location(phrase)
    return side
