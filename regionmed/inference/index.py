"""The retrieval index: embeddings of one corpus split, built at packaging time.

Layout of an index folder::

    index.json        {"format_version", "split", "model_version", "dim", "n_items", "created",
                       "items": [{"id", "kind", "modality", "labels"}, ...]}
    embeddings.npy    float32 [n_items, dim], L2-normalised, row i = items[i]

Two kinds of item per image of the split: ``image`` (the image embedding) and ``report`` (the
embedding of its report). Only ids, kinds, modalities, labels and embeddings are stored, never a
report's text, a path or a patient id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
INDEX_FILE = "index.json"
EMBEDDINGS_FILE = "embeddings.npy"
ITEM_KINDS = ("image", "report")
ITEM_KEYS = ("id", "kind", "modality", "labels")


@dataclass
class RetrievalIndex:
    items: list[dict]
    embeddings: np.ndarray
    split: str = ""
    model_version: str = ""

    def __post_init__(self) -> None:
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        if len(self.items) != len(self.embeddings):
            raise ValueError(f"{len(self.items)} items for {len(self.embeddings)} embeddings")
        for item in self.items:
            if set(item) != set(ITEM_KEYS):
                raise ValueError(f"an index item has keys {sorted(item)}, expected {list(ITEM_KEYS)}")
        kinds = np.array([it["kind"] for it in self.items])
        self._rows = {k: np.flatnonzero(kinds == k) for k in ITEM_KINDS}

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1]) if self.embeddings.ndim == 2 else 0

    def count(self, kind: str | None = None) -> int:
        return len(self.items) if kind is None else len(self._rows.get(kind, ()))

    def search(self, query: np.ndarray, k: int, kind: str = "image") -> list[dict]:
        """Top ``k`` items of ``kind`` by cosine with ``query`` ``[D]`` (best first, ties by row)."""
        rows = self._rows.get(kind)
        if rows is None:
            raise ValueError(f"kind must be one of {ITEM_KINDS}")
        if len(rows) == 0 or k <= 0:
            return []
        scores = self.embeddings[rows] @ np.asarray(query, dtype=np.float32).reshape(-1)
        k = min(k, len(rows))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((top, -scores[top]))]
        return [{**self.items[rows[i]], "score": float(scores[i])} for i in top]

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / EMBEDDINGS_FILE, self.embeddings)
        doc = {
            "format_version": FORMAT_VERSION,
            "split": self.split,
            "model_version": self.model_version,
            "dim": self.dim,
            "n_items": len(self.items),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "items": self.items,
        }
        (out / INDEX_FILE).write_text(json.dumps(doc, indent=0, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, path: str | Path) -> RetrievalIndex:
        path = Path(path)
        doc = json.loads((path / INDEX_FILE).read_text())
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: index format_version {doc.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        emb = np.load(path / EMBEDDINGS_FILE, allow_pickle=False)
        return cls(doc["items"], emb, doc.get("split", ""), doc.get("model_version", ""))

    @staticmethod
    def exists(path: str | Path | None) -> bool:
        return (
            path is not None
            and (Path(path) / INDEX_FILE).is_file()
            and (Path(path) / EMBEDDINGS_FILE).is_file()
        )


def build_index(
    engine, corpus_dir: str | Path, split: str, batch_size: int = 64, limit: int | None = None
) -> RetrievalIndex:
    """Embed every image of ``split`` and its report with ``engine`` (a
    :class:`~regionmed.inference.engine.Engine`)."""
    from regionmed.corpus.images import read_png
    from regionmed.corpus.schema import read_manifest
    from regionmed.inference.uploads import DecodedImage

    df = read_manifest(corpus_dir, split)
    if limit is not None:
        df = df.iloc[:limit]
    if len(df) == 0:
        raise ValueError(f"corpus {corpus_dir} has no images in split {split!r}")
    corpus_dir = Path(corpus_dir)
    image_emb, report_emb = [], []
    for start in range(0, len(df), batch_size):
        chunk = df.iloc[start : start + batch_size]
        prepared = [engine.prepare(DecodedImage(read_png(corpus_dir / p), {})) for p in chunk["image_path"]]
        image_emb.append(engine.encode_images(prepared))
        report_emb.append(engine.encode_texts(list(chunk["report"])))
    meta = [
        {"id": str(r.image_id), "modality": str(r.modality), "labels": [str(x) for x in _as_list(r.labels)]}
        for r in df.itertuples()
    ]
    items = [{**m, "kind": "image"} for m in meta] + [{**m, "kind": "report"} for m in meta]
    emb = np.concatenate([np.concatenate(image_emb), np.concatenate(report_emb)])
    return RetrievalIndex(items, emb, split, engine.version)


def _as_list(value) -> Sequence:
    if value is None:
        return []
    return list(value)
