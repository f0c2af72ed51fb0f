"""Approximate nearest neighbours for the retrieval index: one USearch HNSW graph per item kind.

Why USearch (docs/scaling.md#retrieval): a 2 MB wheel with no OpenMP runtime of its own (torch
brings one; two in one process fight over the cores), a saved graph can be memory-mapped
(``Index.restore(path, view=True)``) so that a worker maps a million vectors instead of reading
them, and a single-threaded build is byte-for-byte reproducible.

A graph holds the L2-normalised float32 vectors of one kind (``image`` or ``report``) under the
key = the item's position among the items of that kind, with the cosine metric. Only the
*candidates* come from the graph: their scores are recomputed from ``embeddings.npy``, so a
returned score is the exact cosine, as with exact search.

What is trusted on load: a graph file is checked against the SHA-256, size and count recorded in
``index.json`` when it was saved, then against USearch's own header (dimension, metric, count).
USearch itself accepts a file with flipped bytes in its graph and answers from it (checked with
2.26), so the checksum is what stands between a damaged file and a silently wrong answer; a
sample of the stored vectors must equal ``embeddings.npy``'s rows (a graph left from another build).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

LIBRARY = "usearch"
METRIC = "cos"  # cosine; the vectors are L2-normalised, so it orders as the dot product does
SCALAR = "f32"  # stored as given: no f16/i8 quantisation, so candidates are found in the exact space
GRAPH_FILE = "hnsw_{kind}.usearch"
CHECKED_VECTORS = 32  # vectors of a loaded graph compared with embeddings.npy (a cheap identity check)


class AnnIndexError(RuntimeError):
    """A saved graph that cannot be trusted: missing, damaged, or not the one ``index.json`` records."""


@dataclass(frozen=True)
class HnswSettings:
    """How graphs are built and searched (``serving.ann`` in params.yaml)."""

    min_items: int  # a kind with fewer items is searched exactly (no graph is built for it)
    connectivity: int  # HNSW's M: links per node
    expansion_add: int  # efConstruction: candidates kept while inserting
    expansion_search: int  # ef: candidates kept while searching (at least top_k is used)
    build_threads: int  # 1: reproducible graph; more: faster, and two builds may differ

    @classmethod
    def from_params(cls, ann) -> HnswSettings:
        """From the ``serving.ann`` params section (any object with these attributes)."""
        return cls(**{name: getattr(ann, name) for name in cls.__dataclass_fields__})


def describe(settings: HnswSettings) -> dict:
    """The ``ann`` header of ``index.json``: library, metric and build settings (the graphs' records
    are added under ``kinds``)."""
    from importlib.metadata import version

    return {
        "library": LIBRARY,
        "library_version": version(LIBRARY),
        "metric": METRIC,
        "scalar": SCALAR,
        **asdict(settings),
    }


class KindGraph:
    """The HNSW graph of one kind's vectors; ``search`` answers positions among that kind's items."""

    def __init__(self, index) -> None:
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    @property
    def expansion_search(self) -> int:
        return int(self._index.expansion_search)

    @classmethod
    def build(cls, vectors: np.ndarray, settings: HnswSettings) -> KindGraph:
        from usearch.index import Index

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = Index(
            ndim=vectors.shape[1],
            metric=METRIC,
            dtype=SCALAR,
            connectivity=settings.connectivity,
            expansion_add=settings.expansion_add,
            expansion_search=settings.expansion_search,
        )
        keys = np.arange(len(vectors), dtype=np.uint64)
        index.add(keys, vectors, threads=settings.build_threads, log=False)
        return cls(index)

    def search(self, query: np.ndarray, k: int) -> np.ndarray:
        """Positions of (about) the ``k`` nearest vectors to ``query``, in no promised order."""
        matches = self._index.search(np.asarray(query, dtype=np.float32).reshape(-1), k, threads=1)
        return np.asarray(matches.keys, dtype=np.int64)

    def save(self, folder: Path, kind: str) -> dict:
        """Write the graph beside the index (to a temporary name, then renamed: a server that has the
        old file mapped keeps reading the old one); returns its record for ``index.json``."""
        name = GRAPH_FILE.format(kind=kind)
        tmp = folder / f".{name}.tmp"
        self._index.save(str(tmp))
        record = {"file": name, "count": len(self), "bytes": tmp.stat().st_size, "sha256": _sha256(tmp)}
        os.replace(tmp, folder / name)
        return record

    @classmethod
    def load(cls, folder: Path, record: dict, vectors: np.ndarray, expansion_search: int) -> KindGraph:
        """Memory-map a saved graph after checking it against its ``record`` and a sample of the
        kind's ``vectors`` (the embeddings it must have been built from); raises
        :class:`AnnIndexError` saying what is wrong."""
        try:
            from usearch.index import Index
        except ImportError as exc:
            raise AnnIndexError(f"{LIBRARY} is not installed ({exc})") from None

        path = folder / str(record.get("file", ""))
        if not path.is_file():
            raise AnnIndexError(f"{path}: the HNSW graph that index.json lists is missing")
        size = path.stat().st_size
        if size != record.get("bytes"):
            raise AnnIndexError(f"{path}: {size} bytes, index.json says {record.get('bytes')}")
        if _sha256(path) != record.get("sha256"):
            raise AnnIndexError(f"{path}: SHA-256 differs from the one in index.json (damaged or replaced)")
        try:
            header = Index.metadata(str(path))
            index = Index.restore(str(path), view=True)
        except (ValueError, RuntimeError, OSError) as exc:
            raise AnnIndexError(f"{path}: USearch cannot read it ({exc})") from None
        if header is None or index is None:
            raise AnnIndexError(f"{path}: USearch cannot read it")
        found = (int(header["dimensions"]), int(header["count_present"]), index.metric.name.lower())
        wanted = (vectors.shape[1], len(vectors), METRIC)
        if found != wanted:
            raise AnnIndexError(f"{path}: dim, count, metric {found}, expected {wanted}")
        sample = np.unique(np.linspace(0, len(vectors) - 1, CHECKED_VECTORS).astype(np.int64))
        stored = np.asarray(index.get(sample.astype(np.uint64)), dtype=np.float32)
        if stored.shape != (len(sample), vectors.shape[1]) or not np.array_equal(stored, vectors[sample]):
            raise AnnIndexError(f"{path}: its vectors are not the index's embeddings (built from another)")
        index.expansion_search = expansion_search
        return cls(index)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
