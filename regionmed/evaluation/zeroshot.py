"""Zero-shot classification from prompt embeddings, and its metrics (overall and by finding size).

Class embeddings come from :mod:`regionmed.prompts.templates` (templates kept as data). Scores are
``logit_scale * cos(image, class)``; pass the multiplicative scale (for a CLIP-style model
``model.logit_scale.exp()``), it does not change AUROC or the argmax.

AUROC is per class over all images (one-vs-rest, ties count one half). Metrics that need a
decision use one of three rules, named in the result's ``accuracy_mode``:

* ``"argmax"`` (single-label targets, exactly one positive per row): the top class is predicted;
  ``accuracy`` is top-1 accuracy and ``per_class_accuracy[c]`` the fraction of images of class
  ``c`` whose argmax is ``c`` (the class's recall);
* ``"top_k"`` (multi-label, default): each image predicts its ``k`` highest classes, ``k`` = its
  number of true labels; ``accuracy`` is the fraction of images whose predicted set equals the
  true set, ``per_class_accuracy[c]`` the fraction of images of class ``c`` that predict ``c``;
* ``"threshold"`` (multi-label with ``threshold=t``): a class is predicted where its score is
  ``>= t``; same two quantities as ``"top_k"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from regionmed.arrays import as_numpy, l2_normalize
from regionmed.corpus.schema import SIZE_BUCKETS


def zero_shot_scores(image_emb: Any, class_emb: Any, logit_scale: float = 100.0) -> np.ndarray:
    """``[N, C]`` logits: ``logit_scale * cos(image, class)``."""
    img = l2_normalize(as_numpy(image_emb, np.float32))
    cls = l2_normalize(as_numpy(class_emb, np.float32))
    return float(as_numpy(logit_scale)) * (img @ cls.T)


def auroc(scores: Any, targets: Any) -> float:
    """Binary AUROC (Mann-Whitney; tied scores count one half); NaN without both classes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(targets).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    r = rankdata(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _macro(per_class: Iterable[float]) -> float:
    """The mean over the classes that could be scored (not NaN); NaN when none could."""
    scored = [v for v in per_class if not np.isnan(v)]
    return float(np.mean(scored)) if scored else float("nan")


def macro_auroc_of(scores_and_targets: np.ndarray) -> float:
    """Macro AUROC of ``[n, 2C]`` = scores then 0/1 targets per class (the layout a bootstrap
    resamples by rows); classes without both positives and negatives in the rows are left out."""
    m = np.asarray(scores_and_targets, dtype=np.float64)
    c = m.shape[1] // 2
    return _macro(auroc(m[:, j], m[:, c + j]) for j in range(c))


def _predicted(scores: np.ndarray, targets: np.ndarray, mode: str, threshold: float | None) -> np.ndarray:
    if mode == "threshold":
        return scores >= threshold
    k = targets.sum(axis=1) if mode == "top_k" else np.ones(len(scores), dtype=int)
    order = np.argsort(-scores, axis=1, kind="stable")
    rank_of = np.empty_like(order)
    np.put_along_axis(rank_of, order, np.arange(scores.shape[1])[None, :].repeat(len(scores), 0), axis=1)
    return rank_of < k[:, None]


def accuracy_mode(targets: np.ndarray, threshold: float | None = None) -> str:
    """The decision rule :func:`multilabel_metrics` uses for these targets (see module doc)."""
    if threshold is not None:
        return "threshold"
    return "argmax" if (targets.sum(axis=1) == 1).all() else "top_k"


def multilabel_metrics(
    scores: Any, targets: Any, classnames: Sequence[str], threshold: float | None = None
) -> dict[str, Any]:
    """Per-class and macro AUROC, plus accuracy under :func:`accuracy_mode`.

    Classes without positives or without negatives get AUROC NaN and are left out of
    ``macro_auroc``; ``n_skipped``/``skipped`` say which.
    """
    s = as_numpy(scores, np.float64)
    y = as_numpy(targets).astype(bool)
    if s.shape != y.shape or s.shape[1] != len(classnames):
        raise ValueError(f"scores {s.shape}, targets {y.shape} and {len(classnames)} classnames disagree")
    per = {c: auroc(s[:, j], y[:, j]) for j, c in enumerate(classnames)}
    skipped = [c for c, v in per.items() if np.isnan(v)]
    mode = accuracy_mode(y, threshold)
    pred = _predicted(s, y, mode, threshold)
    npos = y.sum(axis=0)
    per_acc = {
        c: float((pred[:, j] & y[:, j]).sum() / npos[j]) if npos[j] else float("nan")
        for j, c in enumerate(classnames)
    }
    acc = float((pred == y).all(axis=1).mean()) if len(y) else float("nan")
    return {
        "auroc": per,
        "macro_auroc": _macro(per.values()),
        "n_classes_scored": len(per) - len(skipped),
        "n_skipped": len(skipped),
        "skipped": skipped,
        "n_positives": {c: int(n) for c, n in zip(classnames, npos, strict=True)},
        "accuracy_mode": mode,
        "accuracy": acc,
        "per_class_accuracy": per_acc,
    }


def label_matrix(rows: Sequence[Mapping[str, Any]], classnames: Sequence[str]) -> np.ndarray:
    """``[N, C]`` bool targets: class ``c`` is in the row's ``labels`` list (``"no finding"`` included)."""
    return np.array([[c in set(row["labels"]) for c in classnames] for row in rows], dtype=bool).reshape(
        len(rows), len(classnames)
    )


def size_matrix(rows: Sequence[Mapping[str, Any]], classnames: Sequence[str]) -> np.ndarray:
    """``[N, C]`` object array of sets: the size buckets of each image's finding regions of each class.

    ``rows`` are manifest rows (dicts or pandas rows with a ``regions`` list of region dicts).
    """
    index = {c: j for j, c in enumerate(classnames)}
    out = np.empty((len(rows), len(classnames)), dtype=object)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] = set()
    for i, row in enumerate(rows):
        for r in row["regions"]:
            if r.get("kind", "finding") == "finding" and r.get("size") and r["label"] in index:
                out[i, index[r["label"]]].add(r["size"])
    return out


def by_size_bucket(
    scores: Any,
    targets: Any,
    sizes: np.ndarray,
    classnames: Sequence[str],
    buckets: Sequence[str] = SIZE_BUCKETS,
    threshold: float | None = None,
) -> dict[str, dict]:
    """Per size bucket: AUROC of each class on (its positives with a finding of that bucket) vs
    (all its negatives), their macro mean, and the class's recall on those positives under the same
    decision rule as :func:`multilabel_metrics` (computed on all images, then restricted).

    ``sizes[i, j]`` is a set of buckets (see :func:`size_matrix`); an image with two findings of
    one class in different buckets counts as a positive of both buckets.
    """
    s = as_numpy(scores, np.float64)
    y = as_numpy(targets).astype(bool)
    pred = _predicted(s, y, accuracy_mode(y, threshold), threshold)
    out: dict[str, dict] = {}
    for b in buckets:
        in_b = np.vectorize(lambda v, b=b: b in v, otypes=[bool])(sizes) & y
        per, recall, npos = {}, {}, {}
        for j, c in enumerate(classnames):
            keep = in_b[:, j] | ~y[:, j]
            per[c] = auroc(s[keep, j], y[keep, j])
            npos[c] = int(in_b[:, j].sum())
            recall[c] = float(pred[in_b[:, j], j].mean()) if npos[c] else float("nan")
        out[b] = {
            "auroc": per,
            "macro_auroc": _macro(per.values()),
            "n_skipped": int(np.isnan(list(per.values())).sum()),
            "recall": recall,
            "macro_recall": _macro(recall.values()),
            "n_positives": npos,
        }
    return out


def presence_vs_absence(
    image_emb: Any, present_emb: Any, absent_emb: Any, logit_scale: float = 100.0
) -> np.ndarray:
    """``[N, C]`` probability that class ``c`` is present: softmax over ("there is c", "no c")."""
    sp = zero_shot_scores(image_emb, present_emb, logit_scale)
    sa = zero_shot_scores(image_emb, absent_emb, logit_scale)
    return 1.0 / (1.0 + np.exp(np.clip(sa - sp, -80, 80)))


def negation_similarity(present_emb: Any, absent_emb: Any) -> np.ndarray:
    """``[C]`` cosine between each class's present and absent prompt embedding (≈1: negation ignored)."""
    a = l2_normalize(as_numpy(present_emb, np.float32))
    b = l2_normalize(as_numpy(absent_emb, np.float32))
    return (a * b).sum(axis=1)
