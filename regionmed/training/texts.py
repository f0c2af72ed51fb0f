"""The texts a tokenizer is trained on, read from a corpus manifest. Apart from :mod:`regionmed.training.data`
so the tokenizer stage does not import Lightning (5 s of its 8 s)."""

from __future__ import annotations

from pathlib import Path

from regionmed.corpus.schema import read_manifest
from regionmed.model.config import TEXT_LEVELS


def corpus_texts(corpus_dir: str | Path, split: str = "train") -> list[str]:
    """Every text of a split (four levels, region phrases, hard negatives), for the tokenizer."""
    df = read_manifest(corpus_dir, split)
    texts = [t for level in TEXT_LEVELS for t in df[level]]
    for regions in df["regions"]:
        for r in regions:
            texts.append(r["phrase"])
            texts.extend(r["hard_negatives"])
    return texts
