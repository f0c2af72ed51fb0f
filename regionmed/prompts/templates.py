"""Prompts from templates, and their ensembled embeddings.

Templates are data: ``zeroshot.yaml`` beside this module (see its comments for the placeholders).
A class embedding is the mean of its L2-normalised template embeddings, renormalised (CLIP's prompt
ensembling). Every embedding function takes ``encode_text_fn`` (strings → ``[N, D]``), so this
module loads no model: the evaluation, the service's engine and the drift reference pass their own.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from regionmed.arrays import as_numpy, l2_normalize

PROMPTS_FILE = Path(__file__).with_name("zeroshot.yaml")


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def load_prompts(path: str | Path | None = None) -> dict[str, Any]:
    """The prompt file as a dict (a fresh copy each call): templates, normal class, modality names."""
    return copy.deepcopy(_load(str(path or PROMPTS_FILE)))


def finding_modalities() -> dict[str, str]:
    """Finding label → modality id (``chest_xray``...), from the atlas."""
    from regionmed.corpus.atlas import MODALITIES

    return {f.label: m.name for m in MODALITIES.values() for f in m.findings}


def fill(
    template: str, label: str, modality: str | None = None, no_article: set[str] = frozenset()
) -> str | None:
    """One template filled (whitespace collapsed); ``None`` when it needs a modality and has none."""
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
        filled = [fill(t, c, mod, no_article) for t in tpls]
        out[c] = list(dict.fromkeys(f for f in filled if f))
        if not out[c]:
            raise ValueError(f"no template applies to class {c!r}")
    return out


def is_axis_label(label: str) -> bool:
    """Labels written ``axis:class`` (imported corpora, e.g. MedPix's ``plane:axial``) classify
    along an axis: one class per axis per image."""
    return ":" in label


def label_text(label: str, prompts: Mapping[str, Any] | None = None) -> str:
    """The prompt text of an ``axis:class`` label: the file's ``label_texts``, else a plain fallback."""
    p = prompts if prompts is not None else load_prompts()
    axis, _, value = label.partition(":")
    return (
        p.get("label_texts", {}).get(label) or f"an image, {axis.replace('_', ' ')} {value.replace('_', ' ')}"
    )


def axis_prompts(label: str, prompts: Mapping[str, Any] | None = None) -> list[str]:
    """Prompts of an ``axis:class`` label: its :func:`label_text` in each of the file's ``axis_templates``."""
    p = prompts if prompts is not None else load_prompts()
    text = label_text(label, p)
    return list(dict.fromkeys(" ".join(t.format(label=text).split()) for t in p["axis_templates"]))


def label_axes(classnames: Sequence[str]) -> dict[str, list[str]]:
    """``{axis: [its classes]}`` of the ``axis:class`` labels among ``classnames`` (sorted)."""
    axes: dict[str, list[str]] = {}
    for c in sorted(classnames):
        if is_axis_label(c):
            axes.setdefault(c.split(":", 1)[0], []).append(c)
    return axes


def modality_prompts(
    modality_ids: Sequence[str], prompts: Mapping[str, Any] | None = None
) -> dict[str, list[str]]:
    """Prompts for modality classification: modality id → filled ``modality_templates``."""
    p = prompts if prompts is not None else load_prompts()
    names = p["modality_names"]
    return {
        m: list(dict.fromkeys(fill(t, names.get(m, m)) for t in p["modality_templates"]))
        for m in modality_ids
    }


def embed_prompt_sets(
    encode_text_fn: Callable[[list[str]], Any],
    prompt_sets: Mapping[str, Sequence[str]],
    batch_size: int = 256,
) -> np.ndarray:
    """``[C, D]``: per key, the mean of its normalised prompt embeddings, renormalised (key order)."""
    flat = [t for ts in prompt_sets.values() for t in ts]
    owner = np.repeat(np.arange(len(prompt_sets)), [len(ts) for ts in prompt_sets.values()])
    parts = [
        as_numpy(encode_text_fn(flat[i : i + batch_size]), np.float32)
        for i in range(0, len(flat), batch_size)
    ]
    emb = l2_normalize(np.concatenate(parts, axis=0))
    sums = np.zeros((len(prompt_sets), emb.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, emb)
    return l2_normalize(sums / np.bincount(owner)[:, None]).astype(np.float32)


def class_embeddings(
    encode_text_fn: Callable[[list[str]], Any],
    classnames: Sequence[str],
    templates: Sequence[str] | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """``[C, D]`` class embeddings from :func:`build_prompts` (``kwargs`` go there)."""
    return embed_prompt_sets(encode_text_fn, build_prompts(classnames, templates, **kwargs))


def presence_absence_embeddings(
    encode_text_fn: Callable[[list[str]], Any],
    classnames: Sequence[str],
    prompts: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``([C, D], [C, D])``: ensembled "there is X" and "no X" embeddings of each class."""
    p = prompts if prompts is not None else load_prompts()
    no_article = set(p.get("no_article", []))

    def sets(key: str) -> dict[str, list[str]]:
        return {c: list(dict.fromkeys(fill(t, c, None, no_article) for t in p[key])) for c in classnames}

    return (
        embed_prompt_sets(encode_text_fn, sets("presence_templates")),
        embed_prompt_sets(encode_text_fn, sets("absence_templates")),
    )
