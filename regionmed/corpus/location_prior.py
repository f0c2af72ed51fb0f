"""Where a phrase's words alone say its region is: the text-only prior's rules.

Shared by the evaluation (the no-image baseline every grounding metric is compared with) and the
``annotate_regions`` stage (its ``prior`` localizer), so both read location words the same way.
Boxes are ``[x0, y0, x1, y1]`` normalised to 0..1; the patient's right is on the image left.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

ZONE_INDEX = {"upper": 0, "frontal": 0, "middle": 1, "mid": 1, "parietal": 1, "lower": 2, "occipital": 2}


def _get(r: Any, key: str) -> Any:
    return r[key] if isinstance(r, Mapping) else getattr(r, key)


def train_box_means(train_regions: Iterable[Any]) -> dict[str, dict[str, np.ndarray]]:
    """Mean boxes in train: ``organ`` (anatomy regions by label), ``label`` (finding regions by
    label), ``location`` (finding regions by the location text after "in the"), ``all`` (findings)."""
    acc: dict[str, dict[str, list]] = {"organ": {}, "label": {}, "location": {}, "all": {}}
    for r in train_regions:
        box, label, kind = np.asarray(_get(r, "bbox"), float), _get(r, "label"), _get(r, "kind")
        if kind == "anatomy":
            acc["organ"].setdefault(label, []).append(box)
            continue
        acc["label"].setdefault(label, []).append(box)
        acc["all"].setdefault("", []).append(box)
        loc = _location_text(_get(r, "phrase"))
        if loc:
            acc["location"].setdefault(loc, []).append(box)
    return {k: {name: np.mean(v, axis=0) for name, v in d.items()} for k, d in acc.items()}


def _location_text(phrase: str) -> str:
    parts = re.split(r"\s+in\s+the\s+", phrase.lower(), maxsplit=1)
    return parts[1].strip() if len(parts) == 2 else ""


def _longest_match(text: str, names: Iterable[str]) -> str | None:
    hits = [n for n in names if re.search(rf"\b{re.escape(n.lower())}\b", text)]
    return max(hits, key=len) if hits else None


def text_prior_box(phrase: str, means: Mapping[str, Mapping[str, np.ndarray]], label: str | None = None,
                   mode: str = "rules") -> tuple[np.ndarray, str]:
    """The box a phrase's words imply, and which rule gave it.

    ``mode="rules"``: the frame is the mean train box of an organ named in the location part of the
    phrase (the whole phrase for anatomy phrases such as "the left kidney"), else the whole image;
    a side word picks the frame's half (patient right = image left) unless the organ's own name
    carries that side, and a zone word (upper/middle/lower, frontal/parietal/occipital) its vertical
    third. A phrase with none of these gets its finding label's mean train box (``label`` or the
    longest train label in the phrase), else the mean of all train findings, else the whole image.
    ``mode="empirical"``: the mean train box of findings with the same location text, falling back
    to the rules.
    """
    text = phrase.lower()
    loc = _location_text(text)
    if mode == "empirical" and loc in means["location"]:
        return np.asarray(means["location"][loc], float), "location"
    where = loc or text
    organ = _longest_match(where, means["organ"])
    words = set(re.findall(r"[a-z]+", where))
    side = next((s for s in ("right", "left") if s in words and not (organ and s in organ.split())), None)
    zone = next((ZONE_INDEX[w] for w in re.findall(r"[a-z]+", where) if w in ZONE_INDEX), None)
    if organ is None and side is None and zone is None:
        lab = label if label in means["label"] else _longest_match(text, means["label"])
        if lab is not None:
            return np.asarray(means["label"][lab], float), "label"
        if "" in means["all"]:
            return np.asarray(means["all"][""], float), "all"
        return np.array([0.0, 0.0, 1.0, 1.0]), "image"
    x0, y0, x1, y1 = means["organ"][organ] if organ else (0.0, 0.0, 1.0, 1.0)
    if side is not None:
        xm = (x0 + x1) / 2
        x0, x1 = (x0, xm) if side == "right" else (xm, x1)
    if zone is not None:
        h = (y1 - y0) / 3
        y0, y1 = y0 + zone * h, y0 + (zone + 1) * h
    return np.array([x0, y0, x1, y1], float), "organ" if organ else "words"


def box_iou_one(a, b) -> float:
    """IoU of two boxes ``[x0, y0, x1, y1]`` (0 when the union is empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
