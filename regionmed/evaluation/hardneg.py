"""Hard-negative discrimination: does a region score its true phrase above every one-attribute swap?

The corpus gives each region phrases that differ from the true one in exactly one attribute (the
side, the size or the finding; see ``regionmed.corpus.phrases.hard_negatives``). A region
succeeds when ``cos(region, true phrase) > cos(region, negative)`` for ALL its negatives; a tie
fails. Per swap type, every (region, negative) pair of that type is one trial.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from regionmed.arrays import as_numpy, l2_normalize

SWAP_TYPES = ("laterality", "size", "finding", "location", "other")
_SIDE_ZONE = frozenset(
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
# size words → size bucket (graded findings read "mild/moderate/marked", see corpus.phrases)
_SIZE_WORDS = {
    "subtle": "subtle",
    "small": "small",
    "large": "large",
    "mild": "subtle",
    "moderate": "small",
    "marked": "large",
}
_ARTICLES = frozenset(["a", "an", "the"])


def _swap_sides(text: str) -> str:
    return re.sub(r"\b(left|right)\b", lambda m: {"left": "right", "right": "left"}[m.group(1)], text)


def _parts(phrase: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(what words, where words), articles dropped: "a small nodule in the right upper zone" →
    (("small", "nodule"), ("right", "upper", "zone")). A phrase without an "in/of/at the" clause
    (an anatomy phrase: "the right lung") is all "what": its side is part of the organ's name."""
    text = phrase.lower().strip().rstrip(".")
    m = re.search(r"\s+(?:in|of|at)\s+the\s+", text)
    if m is None:
        return tuple(w for w in text.split() if w not in _ARTICLES), ()
    head = [w for w in text[: m.start()].split() if w not in _ARTICLES]
    loc = [w for w in text[m.end() :].split() if w not in _ARTICLES]
    return tuple(w for w in head if w not in _SIDE_ZONE), tuple(w for w in head if w in _SIDE_ZONE) + tuple(
        loc
    )


def swap_type(true_phrase: str, negative_phrase: str) -> str:
    """Which attribute a negative changes.

    ``laterality``: only left↔right; ``size``: only the size word(s); ``finding``: what the region
    is (the finding, or the organ of an anatomy phrase) with the same size bucket ("mild" reads as
    "subtle", "moderate" as "small", "marked" as "large") and place; ``location``:
    the place, other than a pure side swap; ``other``: several attributes, or the same phrase.
    """
    t, n = true_phrase.lower().strip(), negative_phrase.lower().strip()
    if t != n and _swap_sides(t) == n:
        return "laterality"
    (tw, tl), (nw, nl) = _parts(t), _parts(n)

    def sizes(ws):
        return tuple(_SIZE_WORDS[w] for w in ws if w in _SIZE_WORDS)

    def rest(ws):
        return tuple(w for w in ws if w not in _SIZE_WORDS)

    if tl == nl and tw != nw:
        if rest(tw) == rest(nw):
            return "size"
        if sizes(tw) == sizes(nw):
            return "finding"
    elif tw == nw and tl != nl:
        return "location"
    return "other"


def hard_negative_discrimination(
    region_emb: Any,
    phrase_emb: Any,
    hard_neg_emb: Any,
    mask: Any = None,
    types: Any = None,
    normalize: bool = True,
) -> dict[str, Any]:
    """Per-region success against all its hard negatives, and per-swap-type pairwise success.

    ``region_emb`` ``[N, D]``, ``phrase_emb`` ``[N, D]`` (the true phrases), ``hard_neg_emb``
    ``[N, M, D]`` (padded), ``mask`` ``[N, M]`` True where a negative exists (default: all),
    ``types`` optional ``[N, M]`` swap types (e.g. from :func:`swap_type`).

    Returns ``per_region`` (float ``[N]``: 1/0, NaN for a region without negatives),
    ``margin`` (``[N]``: true score minus the best negative's, NaN without negatives),
    ``accuracy`` (mean over regions with negatives), ``n_regions``, ``pairwise_accuracy``, and,
    with ``types``, ``by_type`` {type: accuracy over its pairs} and ``n_by_type``.
    """
    r = as_numpy(region_emb, np.float32)
    p = as_numpy(phrase_emb, np.float32)
    h = as_numpy(hard_neg_emb, np.float32)
    if h.ndim != 3 or h.shape[0] != r.shape[0]:
        raise ValueError(f"hard_neg_emb must be [N, M, D] with N={r.shape[0]}, got {h.shape}")
    m = np.ones(h.shape[:2], bool) if mask is None else as_numpy(mask).astype(bool)
    if normalize:
        r, p, h = l2_normalize(r), l2_normalize(p), l2_normalize(h)
    s_true = (r * p).sum(axis=1)
    s_neg = np.einsum("nd,nmd->nm", r, h)
    beats = s_true[:, None] > s_neg
    has = m.any(axis=1)
    best_neg = np.where(m, s_neg, -np.inf).max(axis=1) if m.shape[1] else np.full(len(r), -np.inf)
    per_region = np.where(has, (beats | ~m).all(axis=1).astype(float), np.nan)
    out: dict[str, Any] = {
        "per_region": per_region,
        "margin": np.where(has, s_true - best_neg, np.nan),
        "accuracy": float(np.nanmean(per_region)) if has.any() else float("nan"),
        "n_regions": int(has.sum()),
        "pairwise_accuracy": float(beats[m].mean()) if m.any() else float("nan"),
    }
    if types is not None:
        t = np.asarray(types, dtype=object)
        out["by_type"], out["n_by_type"] = {}, {}
        for name in sorted(set(t[m].tolist())):
            sel = m & (t == name)
            out["by_type"][name] = float(beats[sel].mean())
            out["n_by_type"][name] = int(sel.sum())
    return out


def pad_negatives(negatives: Sequence[Sequence[Any]], fill: Any = "") -> tuple[list[list[Any]], np.ndarray]:
    """Ragged per-region negatives → a rectangular list of lists (padded with ``fill``) and its mask."""
    width = max((len(n) for n in negatives), default=0)
    padded = [list(n) + [fill] * (width - len(n)) for n in negatives]
    mask = np.array([[j < len(n) for j in range(width)] for n in negatives], dtype=bool).reshape(
        len(negatives), width
    )
    return padded, mask
