"""Where a phrase's location words put it in *this* image: the image's own anatomy frames them.

"A consolidation in the right lower zone" is the lower third of this patient's right lung: the box of
that organ in this image, cut by the zone words as the text-only prior cuts its corpus-mean box
(:func:`regionmed.corpus.location_prior.cut_box`; the patient's right is on the image's left). The
organ's box comes, first found first used, from

* the image's own given anatomy regions (``image_anatomy``);
* the annotator model, which placed the organ in this image (``annotator_anatomy``);
* the mean given train box of that organ over images of the same modality (``corpus_anatomy``);

and with no box of any organ for the modality the words cut the whole image (``words``).

Which organ: the one the phrase names ("the left lung", "the left lobe of the liver"); for a side
word alone, that side's organ of the modality's *pair*: two organs "right X" / "left X" that together
fill a good part of the image (the lungs of a chest film, the hemispheres of a head), not a small pair
(the kidneys) that "the left mid abdomen" does not mean. A zone word without a side names that zone
of both organs of the pair: two frames, and only the image can choose between them. A phrase with no
location word has no frame.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from regionmed.corpus.location_prior import cut_box, read_location

Box = tuple[float, float, float, float]
SIDES = ("right", "left")
# A pair frames a bare side word only when its two boxes cover this share of the image: lungs on a
# chest film ~0.4, cerebral hemispheres ~0.5; the kidneys (~0.05) are not what "left" alone means.
PAIR_MIN_COVER = 0.25


@dataclass(frozen=True)
class Frame:
    """Where the words put a phrase: ``zone``, a part of ``organ`` (None: the whole image), whose box in
    this image is ``organ_box`` and came from ``source`` (a :data:`regionmed.corpus.schema.PLACEMENTS`)."""

    zone: Box
    organ: str | None
    organ_box: Box | None
    source: str


@dataclass(frozen=True)
class ImageAnatomy:
    """The organ boxes of one image (label → (box, source)) and its pair (right organ, left organ)."""

    boxes: Mapping[str, tuple[Box, str]]
    pair: tuple[str, str] | None

    def frames(self, phrase: str) -> tuple[Frame, ...]:
        """The frames a phrase's location words name in this image (module docstring)."""
        organ, side, zones = read_location(phrase, self.boxes)
        if organ is not None:
            box, source = self.boxes[organ]
            return (Frame(_box(cut_box(box, side, zones)), organ, box, source),)
        if side is None and zones is None:
            return ()
        if self.pair is None:  # no anatomy to frame the words: halves and thirds of the image
            if side is None:  # a third across the whole image, both sides: a box that says nothing
                return ()
            return (Frame(_box(cut_box((0.0, 0.0, 1.0, 1.0), side, zones)), None, None, "words"),)
        sides = (side,) if side else SIDES
        out = []
        for s in sides:
            name = self.pair[SIDES.index(s)]
            box, source = self.boxes[name]
            out.append(Frame(_box(cut_box(box, None, zones)), name, box, source))
        return tuple(out)

    def pair_boxes(self) -> tuple[Box, Box] | None:
        if self.pair is None:
            return None
        return self.boxes[self.pair[0]][0], self.boxes[self.pair[1]][0]


def _box(values: Iterable[float]) -> Box:
    x0, y0, x1, y1 = (round(float(v), 6) for v in values)
    return (x0, y0, x1, y1)


def find_pair(boxes: Mapping[str, Box]) -> tuple[str, str] | None:
    """The largest pair of organs "right X" / "left X" whose boxes cover :data:`PAIR_MIN_COVER` of the
    image together, or None."""
    best, best_area = None, 0.0
    for name in boxes:
        if not name.startswith("right "):
            continue
        other = "left " + name[len("right ") :]
        if other not in boxes:
            continue
        area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in (boxes[name], boxes[other]))
        if area >= PAIR_MIN_COVER and area > best_area:
            best, best_area = (name, other), area
    return best


class CorpusAnatomy:
    """The mean given train box of each organ, per modality; builds each image's :class:`ImageAnatomy`."""

    def __init__(self, train: pd.DataFrame):
        acc: dict[str, dict[str, list]] = {}
        for modality, regions in zip(train["modality"], train["regions"], strict=True):
            for r in regions:
                if r["kind"] == "anatomy" and r.get("origin", "given") == "given":
                    acc.setdefault(modality, {}).setdefault(r["label"], []).append(r["bbox"])
        self.means: dict[str, dict[str, Box]] = {
            m: {label: _box(np.mean(boxes, axis=0)) for label, boxes in organs.items()}
            for m, organs in acc.items()
        }
        self.spanning = _spanning_labels(train)

    def spans(self, label: str) -> bool:
        """Whether the corpus's own given boxes of a finding label lie across both organs of the pair
        (an enlarged heart between the lungs): such a box is not cut down to one of them."""
        return label in self.spanning

    def organs(self, modality: str) -> dict[str, Box]:
        return dict(self.means.get(modality, {}))

    def for_image(
        self,
        modality: str,
        given: Iterable[dict],
        learned: Mapping[str, Box] | None = None,
    ) -> ImageAnatomy:
        """An image's organ boxes: its given anatomy, else the annotator's (``learned``), else the means."""
        boxes: dict[str, tuple[Box, str]] = {
            k: (v, "corpus_anatomy") for k, v in self.organs(modality).items()
        }
        boxes.update({k: (_box(v), "annotator_anatomy") for k, v in (learned or {}).items()})
        boxes.update(
            {r["label"]: (_box(r["bbox"]), "image_anatomy") for r in given if r["kind"] == "anatomy"}
        )
        return ImageAnatomy(boxes, find_pair({k: b for k, (b, _) in boxes.items()}))


def _spanning_labels(train: pd.DataFrame) -> frozenset[str]:
    """Finding labels whose given train boxes overlap both organs of their image's pair in at least half
    of the images that give that pair."""
    across: dict[str, list[bool]] = {}
    for regions in train["regions"]:
        given = [r for r in regions if r.get("origin", "given") == "given"]
        organs = {r["label"]: _box(r["bbox"]) for r in given if r["kind"] == "anatomy"}
        pair = find_pair(organs)
        if pair is None:
            continue
        for r in given:
            if r["kind"] == "finding":
                box = _box(r["bbox"])
                across.setdefault(r["label"], []).append(all(overlaps(box, organs[o]) for o in pair))
    return frozenset(label for label, flags in across.items() if np.mean(flags) >= 0.5)


def overlaps(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def keep_in_one_of_the_pair(box: Box, anatomy: ImageAnatomy, frames: tuple[Frame, ...]) -> Box:
    """A finding box that overlaps both organs of the pair (one box across the mediastinum), cut down to
    one of them: the organ its frame names, else the one holding the box's centre, else the one it
    overlaps most. Any other box is returned as it is."""
    pair = anatomy.pair_boxes()
    if pair is None or not all(overlaps(box, organ) for organ in pair):
        return box
    named = {f.organ for f in frames} & set(anatomy.pair or ())
    if len(named) == 1:
        organ = anatomy.boxes[named.pop()][0]
    else:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        holding = [o for o in pair if o[0] <= cx <= o[2] and o[1] <= cy <= o[3]]
        organ = holding[0] if len(holding) == 1 else max(pair, key=lambda o: _intersection(box, o))
    return _box((max(box[0], organ[0]), max(box[1], organ[1]), min(box[2], organ[2]), min(box[3], organ[3])))


def _intersection(a: Box, b: Box) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def spans_pair(box: Box, anatomy: ImageAnatomy) -> bool:
    """Whether a box overlaps both organs of the image's pair (both lungs)."""
    pair = anatomy.pair_boxes()
    return pair is not None and all(overlaps(box, organ) for organ in pair)
