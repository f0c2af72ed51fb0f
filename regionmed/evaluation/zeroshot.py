"""Zero-shot classification from prompt embeddings, and its metrics (overall and by finding size).

Templates are data: ``prompts/zeroshot.yaml`` (see its comments for the placeholders). A class
embedding is the mean of its L2-normalised template embeddings, renormalised (CLIP's prompt
ensembling). Scores are ``logit_scale * cos(image, class)``; pass the multiplicative scale (for a
CLIP-style model ``model.logit_scale.exp()``), it does not change AUROC or the argmax.

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

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from regionmed.evaluation._arrays import as_numpy, l2_normalize

PROMPTS_FILE = Path(__file__).with_name("prompts") / "zeroshot.yaml"
SIZE_BUCKETS = ("subtle", "small", "large")  # mirrors regionmed.corpus.schema.SIZE_BUCKETS


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_prompts(path: str | Path | None = None) -> dict[str, Any]:
    """The prompt file as a dict (a fresh copy each call): templates, normal class, modality names."""
    import copy

    return copy.deepcopy(_load(str(path or PROMPTS_FILE)))


def finding_modalities() -> dict[str, str]:
    """Finding label → modality id (``chest_xray``...), from the atlas."""
    from regionmed.corpus.atlas import MODALITIES

    return {f.label: m.name for m in MODALITIES.values() for f in m.findings}


def _fill(template: str, label: str, modality: str | None, no_article: set[str]) -> str | None:
    if "{modality}" in template and not modality:
        return None
    art = "" if label in no_article else ("an" if label[:1].lower() in "aeiou" else "a")
    return " ".join(template.format(label=label, article=art, modality=modality or "").split())


def build_prompts(
    classnames: Sequence[str],
    templates: Sequence[str] | None = None,
    *,
    modality: str | Mapping[str, str] | None = None,
    prompts: Mapping[str, Any] | None = None,
) -> dict[str, list[str]]:
    """Prompts per class: class name → list of distinct filled templates (file order).

    ``templates`` default to the file's ``templates``; the file's ``normal_class`` ("no finding")
    always uses ``normal_templates``. ``modality`` fills ``{modality}``: a phrase for every class,
    a mapping class → phrase, or ``None`` to use the atlas modality of each finding (templates
    needing ``{modality}`` are then dropped for the normal class and unknown labels).
    """
    p = prompts if prompts is not None else load_prompts()
    no_article = set(p.get("no_article", []))
    names = p.get("modality_names", {})
    auto = finding_modalities() if modality is None else {}
    out: dict[str, list[str]] = {}
    for c in classnames:
        if is_axis_label(c):  # "plane:axial": its own prompt text, in the axis templates
            out[c] = axis_prompts(c, p)
            continue
        if isinstance(modality, str):
            mod = modality
        elif isinstance(modality, Mapping):
            mod = modality.get(c)
        else:
            mod = names.get(auto.get(c, ""), None)
        tpls = p["normal_templates"] if c == p.get("normal_class") else (templates or p["templates"])
        filled = [_fill(t, c, mod, no_article) for t in tpls]
        out[c] = list(dict.fromkeys(f for f in filled if f))
        if not out[c]:
            raise ValueError(f"no template applies to class {c!r}")
    return out


def is_axis_label(label: str) -> bool:
    """Labels written ``axis:class`` (imported corpora, e.g. MedPix's ``plane:axial``) classify
    along an axis: one class per axis per image."""
    return ":" in label


def axis_prompts(label: str, prompts: Mapping[str, Any] | None = None) -> list[str]:
    """Prompts of an ``axis:class`` label: the label's text (the importer's table, e.g. "an axial
    image") in each of the file's ``axis_templates``."""
    from regionmed.corpus.importers.medpix import label_text

    p = prompts if prompts is not None else load_prompts()
    text = label_text(label)
    return list(dict.fromkeys(" ".join(t.format(label=text).split()) for t in p["axis_templates"]))


def label_axes(classnames: Sequence[str]) -> dict[str, list[str]]:
    """``{axis: [its classes]}`` of the ``axis:class`` labels among ``classnames`` (sorted)."""
    axes: dict[str, list[str]] = {}
    for c in sorted(classnames):
        if is_axis_label(c):
            axes.setdefault(c.split(":", 1)[0], []).append(c)
    return axes


def modality_prompts(modality_ids: Sequence[str], prompts: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """Prompts for modality classification: modality id → filled ``modality_templates``."""
    p = prompts if prompts is not None else load_prompts()
    names = p["modality_names"]
    return {m: list(dict.fromkeys(_fill(t, names.get(m, m), None, set()) for t in p["modality_templates"]))
            for m in modality_ids}


def embed_prompt_sets(encode_text_fn: Callable[[list[str]], Any], prompt_sets: Mapping[str, Sequence[str]],
                      batch_size: int = 256) -> np.ndarray:
    """``[C, D]``: per key, the mean of its normalised prompt embeddings, renormalised (key order)."""
    flat = [t for ts in prompt_sets.values() for t in ts]
    owner = np.repeat(np.arange(len(prompt_sets)), [len(ts) for ts in prompt_sets.values()])
    parts = [as_numpy(encode_text_fn(flat[i:i + batch_size]), np.float32) for i in range(0, len(flat), batch_size)]
    emb = l2_normalize(np.concatenate(parts, axis=0))
    sums = np.zeros((len(prompt_sets), emb.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, emb)
    return l2_normalize(sums / np.bincount(owner)[:, None]).astype(np.float32)


def class_embeddings(encode_text_fn: Callable[[list[str]], Any], classnames: Sequence[str],
                     templates: Sequence[str] | None = None, **kwargs: Any) -> np.ndarray:
    """``[C, D]`` class embeddings from :func:`build_prompts` (``kwargs`` go there)."""
    return embed_prompt_sets(encode_text_fn, build_prompts(classnames, templates, **kwargs))


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


def multilabel_metrics(scores: Any, targets: Any, classnames: Sequence[str],
                       threshold: float | None = None) -> dict[str, Any]:
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
    per_acc = {c: float((pred[:, j] & y[:, j]).sum() / npos[j]) if npos[j] else float("nan")
               for j, c in enumerate(classnames)}
    acc = float((pred == y).all(axis=1).mean()) if len(y) else float("nan")
    return {
        "auroc": per,
        "macro_auroc": _macro(per.values()),
        "n_classes_scored": len(per) - len(skipped),
        "n_skipped": len(skipped),
        "skipped": skipped,
        "n_positives": {c: int(n) for c, n in zip(classnames, npos)},
        "accuracy_mode": mode,
        "accuracy": acc,
        "per_class_accuracy": per_acc,
    }


def label_matrix(rows: Sequence[Mapping[str, Any]], classnames: Sequence[str]) -> np.ndarray:
    """``[N, C]`` bool targets: class ``c`` is in the row's ``labels`` list (``"no finding"`` included)."""
    return np.array([[c in set(row["labels"]) for c in classnames] for row in rows], dtype=bool).reshape(
        len(rows), len(classnames))


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


def by_size_bucket(scores: Any, targets: Any, sizes: np.ndarray, classnames: Sequence[str],
                   buckets: Sequence[str] = SIZE_BUCKETS, threshold: float | None = None) -> dict[str, dict]:
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
        out[b] = {"auroc": per, "macro_auroc": _macro(per.values()),
                  "n_skipped": int(np.isnan(list(per.values())).sum()), "recall": recall,
                  "macro_recall": _macro(recall.values()), "n_positives": npos}
    return out


def presence_absence_embeddings(encode_text_fn: Callable[[list[str]], Any], classnames: Sequence[str],
                                prompts: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``([C, D], [C, D])``: ensembled "there is X" and "no X" embeddings of each class."""
    p = prompts if prompts is not None else load_prompts()
    no_article = set(p.get("no_article", []))

    def sets(key: str) -> dict[str, list[str]]:
        return {c: list(dict.fromkeys(_fill(t, c, None, no_article) for t in p[key])) for c in classnames}

    return (embed_prompt_sets(encode_text_fn, sets("presence_templates")),
            embed_prompt_sets(encode_text_fn, sets("absence_templates")))


def presence_vs_absence(image_emb: Any, present_emb: Any, absent_emb: Any, logit_scale: float = 100.0) -> np.ndarray:
    """``[N, C]`` probability that class ``c`` is present: softmax over ("there is c", "no c")."""
    sp = zero_shot_scores(image_emb, present_emb, logit_scale)
    sa = zero_shot_scores(image_emb, absent_emb, logit_scale)
    return 1.0 / (1.0 + np.exp(np.clip(sa - sp, -80, 80)))


def negation_similarity(present_emb: Any, absent_emb: Any) -> np.ndarray:
    """``[C]`` cosine between each class's present and absent prompt embedding (≈1: negation ignored)."""
    a = l2_normalize(as_numpy(present_emb, np.float32))
    b = l2_normalize(as_numpy(absent_emb, np.float32))
    return (a * b).sum(axis=1)
