"""Region phrases, their location words, and hard negatives, derived from box geometry.

Used by the synthetic generator and by the importers (for boxes that come with a label but no
phrase), so both describe regions the same way. Conventions: images are displayed in the
radiological convention, so the patient's **right** is on the **left** of the image (x < 0.5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

SIDES = ("right", "left")
SIZE_WORDS = {"subtle": "subtle", "small": "small", "large": "large"}
# Findings whose size reads as a grade, and that take no article ("mild cardiomegaly").
SIZE_WORDS_BY_FINDING = {"cardiomegaly": {"subtle": "mild", "small": "moderate", "large": "marked"}}
# A swapped size must name a visibly different size.
SIZE_SWAP = {"subtle": "large", "small": "large", "large": "small"}
# Within this distance of the midline a box has no side.
MIDLINE_BAND = 0.08
VERTICAL_ZONES = {
    "chest": ("upper", "middle", "lower"),
    "head": ("frontal", "parietal", "occipital"),
    "abdomen": ("upper", "mid", "lower"),
}
LOCATION_TEMPLATES = {
    "chest": "the {side} {zone} zone",
    "head": "the {side} {zone} lobe",
    "abdomen": "the {side} {zone} abdomen",
}
DEFAULT_ZONES = ("upper", "middle", "lower")
DEFAULT_TEMPLATE = "the {side} {zone} {body_part}"
# Words that say where, removed from what is left of a phrase after its "in the ..." part.
SIDE_AND_ZONE_WORDS = frozenset(
    [
        "right",
        "left",
        "bilateral",
        "upper",
        "middle",
        "mid",
        "lower",
        "central",
        "midline",
        "frontal",
        "parietal",
        "occipital",
    ]
)


@dataclass(frozen=True)
class Location:
    """Where a region is, in words. ``template`` may use ``{side}``, ``{zone}``, ``{body_part}``."""

    template: str
    side: str | None = None
    zone: str | None = None
    body_part: str = ""

    def text(self) -> str:
        side = self.side or "central"
        return " ".join(
            self.template.format(side=side, zone=self.zone or "", body_part=self.body_part).split()
        )

    def swapped_side(self) -> Location | None:
        if self.side not in SIDES:
            return None
        return replace(self, side=SIDES[1 - SIDES.index(self.side)])


def side_of(cx: float) -> str | None:
    """Patient side of a normalised x centre (radiological convention), None near the midline."""
    if abs(cx - 0.5) < MIDLINE_BAND:
        return None
    return "right" if cx < 0.5 else "left"


def zone_of(cy: float, zones: tuple[str, str, str]) -> str:
    return zones[min(int(cy * 3), 2)]


def location_from_box(bbox: tuple[float, float, float, float], body_part: str) -> Location:
    """A location for any box from its centre: side from x, zone from y thirds."""
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    zones = VERTICAL_ZONES.get(body_part, DEFAULT_ZONES)
    template = LOCATION_TEMPLATES.get(body_part, DEFAULT_TEMPLATE)
    return Location(template=template, side=side_of(cx), zone=zone_of(cy, zones), body_part=body_part)


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def region_phrase(finding: str, size: str | None, location: Location | None) -> str:
    """``"a small nodule in the right upper zone"``; size and location are optional."""
    graded = finding in SIZE_WORDS_BY_FINDING
    words = SIZE_WORDS_BY_FINDING.get(finding, SIZE_WORDS)
    head = f"{words[size]} {finding}" if size else finding
    text = head if graded else f"{article(head)} {head}"
    if location is not None:
        text += f" in {location.text()}"
    return text


def hard_negatives(
    finding: str,
    size: str | None,
    location: Location | None,
    other_findings: list[str],
) -> list[str]:
    """Phrases that differ from the true one in exactly one attribute: side, size or finding.

    ``other_findings`` are candidate findings of the same anatomy; the first one that differs is
    used, so the result is deterministic for the same inputs.
    """
    true = region_phrase(finding, size, location)
    candidates = []
    if location is not None and (swapped := location.swapped_side()) is not None:
        candidates.append(region_phrase(finding, size, swapped))
    if size is not None:
        candidates.append(region_phrase(finding, SIZE_SWAP[size], location))
    for other in other_findings:
        if other != finding:
            candidates.append(region_phrase(other, size, location))
            break
    seen, out = {true}, []
    for c in candidates:
        if c not in seen:
            seen.add(c)
            out.append(c)
    return out


def swap_laterality(text: str) -> str:
    """Swap every ``left``/``right`` in a text (used for laterality checks in evaluation)."""
    return re.sub(
        r"\b(left|right)\b",
        lambda m: {"left": "right", "right": "left"}[m.group(1)],
        text,
    )


def strip_location(phrase: str) -> str:
    """The location-free version of a phrase: ``"a small nodule in the right upper zone"`` →
    ``"a small nodule"``."""
    text = re.split(r"\s+(?:in|of|at)\s+the\s+", phrase, maxsplit=1)[0]
    words = [w for w in text.split() if w.lower() not in SIDE_AND_ZONE_WORDS]
    return " ".join(words) if words else phrase


def has_laterality(phrase: str) -> bool:
    return re.search(r"\b(left|right)\b", phrase) is not None
