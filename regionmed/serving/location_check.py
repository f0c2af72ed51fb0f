"""Do a phrase's location words agree with where the model put its box?

``"a nodule in the right upper zone"`` says two things a box can contradict: the side (the
patient's right is the image's left, the radiological convention of ``regionmed.corpus.phrases``;
no side within ``MIDLINE_BAND`` of the midline) and the vertical third. The demo page highlights
the words the box disagrees with; ``ground`` returns the check with every answer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from regionmed.corpus.phrases import DEFAULT_ZONES, side_of, zone_of

# word → (what it says, the value a box must have); "middle" is its own zone, "mid" reads as it.
SIDE_WORDS = {"right": "right", "left": "left"}
ZONE_WORDS = {
    "upper": "upper",
    "superior": "upper",
    "apical": "upper",
    "top": "upper",
    "middle": "middle",
    "mid": "middle",
    "lower": "lower",
    "inferior": "lower",
    "basal": "lower",
    "bottom": "lower",
}
_WORD = re.compile(r"[A-Za-z]+")


def box_location(box: Sequence[float]) -> dict[str, str | None]:
    """Side (patient's, ``None`` near the midline) and vertical third of a box normalised to its image."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return {"side": side_of(cx), "zone": zone_of(cy, DEFAULT_ZONES)}


def check_location_words(phrase: str, box: Sequence[float]) -> dict[str, Any]:
    """Every location word of ``phrase`` with its character span, what it says and whether ``box``
    agrees. A side word agrees with a midline box (the box says no side, so nothing contradicts)."""
    where = box_location(box)
    words = []
    for m in _WORD.finditer(phrase):
        word = m.group(0).lower()
        if word in SIDE_WORDS:
            axis, says = "side", SIDE_WORDS[word]
            agrees = where["side"] is None or where["side"] == says
        elif word in ZONE_WORDS:
            axis, says = "zone", ZONE_WORDS[word]
            agrees = where["zone"] == says
        else:
            continue
        words.append(
            {
                "word": m.group(0),
                "start": m.start(),
                "end": m.end(),
                "axis": axis,
                "says": says,
                "box_says": where[axis],
                "agrees": agrees,
            }
        )
    return {"box": where, "words": words, "disagrees": any(not w["agrees"] for w in words)}
