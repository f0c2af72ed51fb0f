"""Where a phrase's words alone say its region is: the text-only prior's rules, and box geometry.

Shared by the evaluation (the no-image baseline every grounding metric is compared with) and the
``annotate_regions`` stage (its ``prior`` and ``self`` localizers, its box quality), so both read
location words, and score a cell against a box, the same way.
Boxes are ``[x0, y0, x1, y1]`` normalised to 0..1; the patient's right is on the image left. A grid
``(gh, gw)`` has cells ``(i, j)`` spanning ``x in [j/gw, (j+1)/gw]``, ``y in [i/gh, (i+1)/gh]``.
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


def zone_rows(text: str) -> tuple[int, int] | None:
    """The first and last vertical third the zone words of ``text`` name ("mid and lower" -> (1, 2))."""
    rows = [ZONE_INDEX[w] for w in re.findall(r"[a-z]+", text.lower()) if w in ZONE_INDEX]
    return (min(rows), max(rows)) if rows else None


def phrase_location(phrase: str) -> tuple[str | None, tuple[int, int] | None]:
    """The side (the first of right/left its words name) and the zone rows that :func:`text_prior_box`
    reads from a phrase: from its location part after "in the", else from all of it."""
    text = phrase.lower()
    where = _location_text(text) or text
    words = set(re.findall(r"[a-z]+", where))
    return next((s for s in ("right", "left") if s in words), None), zone_rows(where)


def text_prior_box(
    phrase: str, means: Mapping[str, Mapping[str, np.ndarray]], label: str | None = None, mode: str = "rules"
) -> tuple[np.ndarray, str]:
    """The box a phrase's words imply, and which rule gave it.

    ``mode="rules"``: the frame is the mean train box of an organ named in the location part of the
    phrase (the whole phrase for anatomy phrases such as "the left kidney"), else the whole image;
    a side word picks the frame's half (patient right = image left) unless the organ's own name
    carries that side, and a zone word (upper/middle/lower, frontal/parietal/occipital) its vertical
    third (several zone words: from the first third they name to the last, "mid and lower zones").
    A phrase with none of these gets its finding label's mean train box (``label`` or the longest
    train label in the phrase), else the mean of all train findings, else the whole image.
    ``mode="empirical"``: the mean train box of findings with the same location text, falling back
    to the rules.
    """
    text = phrase.lower()
    loc = _location_text(text)
    if mode == "empirical" and loc in means["location"]:
        return np.asarray(means["location"][loc], float), "location"
    organ, side, zones = read_location(phrase, means["organ"])
    if organ is None and side is None and zones is None:
        lab = label if label in means["label"] else _longest_match(text, means["label"])
        if lab is not None:
            return np.asarray(means["label"][lab], float), "label"
        if "" in means["all"]:
            return np.asarray(means["all"][""], float), "all"
        return np.array([0.0, 0.0, 1.0, 1.0]), "image"
    frame = means["organ"][organ] if organ else (0.0, 0.0, 1.0, 1.0)
    return cut_box(frame, side, zones), "organ" if organ else "words"


def read_location(
    phrase: str, organs: Iterable[str]
) -> tuple[str | None, str | None, tuple[int, int] | None]:
    """What a phrase's location words say, as :func:`text_prior_box` reads them: the longest of ``organs``
    named in its location part (after "in the"; the whole phrase when it has none, "the left kidney"),
    the side (the first of right/left named, unless it is part of that organ's own name) and the zone
    rows (:func:`zone_rows`)."""
    text = phrase.lower()
    where = _location_text(text) or text
    organ = _longest_match(where, organs)
    words = set(re.findall(r"[a-z]+", where))
    side = next((s for s in ("right", "left") if s in words and not (organ and s in organ.split())), None)
    return organ, side, zone_rows(where)


def cut_box(frame: Iterable[float], side: str | None, zones: tuple[int, int] | None) -> np.ndarray:
    """The part of ``frame`` a side and zone rows name: the patient's right half is the image's left one;
    zone rows are vertical thirds (first to last)."""
    x0, y0, x1, y1 = (float(v) for v in frame)
    if side is not None:
        xm = (x0 + x1) / 2
        x0, x1 = (x0, xm) if side == "right" else (xm, x1)
    if zones is not None:
        h = (y1 - y0) / 3
        y0, y1 = y0 + zones[0] * h, y0 + (zones[1] + 1) * h
    return np.array([x0, y0, x1, y1], float)


def box_iou_one(a, b) -> float:
    """IoU of two boxes ``[x0, y0, x1, y1]`` (0 when the union is empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def cell_index(v: np.ndarray, n: int) -> np.ndarray:
    """The cell holding coordinate ``v`` (half-open cells, the last one closed)."""
    return np.clip(np.floor(np.asarray(v) * n), 0, n - 1).astype(int)


def cell_hits(
    rows: np.ndarray, cols: np.ndarray, grid: tuple[int, int], boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per cell ``(rows, cols)`` and box ``[..., 4]`` (broadcast): ``lenient``, the cell overlaps the box
    with positive area; ``strict``, the cell holds the box's centre. The pointing game's rules."""
    gh, gw = grid
    x0, y0, x1, y1 = cols / gw, rows / gh, (cols + 1) / gw, (rows + 1) / gh
    bx0, by0, bx1, by1 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    lenient = (np.minimum(x1, bx1) > np.maximum(x0, bx0)) & (np.minimum(y1, by1) > np.maximum(y0, by0))
    cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
    strict = (cell_index(cx, gw) == cols) & (cell_index(cy, gh) == rows)
    return lenient, strict
