"""The retrieval index: embeddings of one corpus split, built at packaging time.

Layout of an index folder::

    index.json        {"format_version", "split", "model_version", "dim", "n_items", "created",
                       "items": [{"id", "kind", "modality", "labels"}, ...]}
    embeddings.npy    float32 [n_items, dim], L2-normalised, row i = items[i]
    hnsw_<kind>.usearch  (optional) the HNSW graph of one kind, listed under "ann" in index.json

Two kinds of item per image of the split: ``image`` (the image embedding) and ``report`` (the
embedding of its report). Only ids, kinds, modalities, labels and embeddings are stored, never a
report's text, a path or a patient id.

Search is per kind. A kind with at least ``serving.ann.min_items`` items gets an HNSW graph when
the index is built (``ann.py``), and is searched through it: the graph proposes ``top_k``
candidates, their exact cosines are computed from ``embeddings.npy``, and the answer is ordered by
score, ties by row, exactly as exact search orders it. A smaller kind, an index without graphs, or a
graph that fails its checks on load (a warning in the log; ``ann_problem``) is searched exactly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from regionmed.atomic import atomic_dir
from regionmed.inference.ann import AnnIndexError, HnswSettings, KindGraph, describe
from regionmed.inference.image_tasks import run_chunked, worker_model
from regionmed.params_pipeline import ClusterParams

logger = logging.getLogger(__name__)

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
    graphs: dict[str, KindGraph] = field(default_factory=dict)  # kind -> its HNSW graph
    hnsw: HnswSettings | None = None  # how the graphs were built (None: no graph)
    ann_problem: str | None = None  # why a saved graph was not used (the kind is searched exactly)

    def __post_init__(self) -> None:
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        if len(self.items) != len(self.embeddings):
            raise ValueError(f"{len(self.items)} items for {len(self.embeddings)} embeddings")
        for item in self.items:
            if set(item) != set(ITEM_KEYS):
                raise ValueError(f"an index item has keys {sorted(item)}, expected {list(ITEM_KEYS)}")
        kinds = np.array([it["kind"] for it in self.items])
        self._rows = {k: np.flatnonzero(kinds == k) for k in ITEM_KINDS}
        # one matrix per kind, a view when its rows are contiguous (build_index writes them so): exact
        # search then reads the (possibly memory-mapped) embeddings without copying them per query
        self._matrix = {k: _rows_of(self.embeddings, rows) for k, rows in self._rows.items()}

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1]) if self.embeddings.ndim == 2 else 0

    def count(self, kind: str | None = None) -> int:
        return len(self.items) if kind is None else len(self._rows.get(kind, ()))

    def search_mode(self, kind: str) -> str:
        """``hnsw`` when ``kind`` is searched through its graph, else ``exact``."""
        return "hnsw" if kind in self.graphs else "exact"

    def search(self, query: np.ndarray, k: int, kind: str = "image") -> list[dict]:
        """Top ``k`` items of ``kind`` by cosine with ``query`` ``[D]`` (best first, ties by row)."""
        rows = self._rows.get(kind)
        if rows is None:
            raise ValueError(f"kind must be one of {ITEM_KINDS}")
        if len(rows) == 0 or k <= 0:
            return []
        matrix, query = self._matrix[kind], np.asarray(query, dtype=np.float32).reshape(-1)
        k = min(k, len(rows))
        graph = self.graphs.get(kind)
        if graph is None:
            scores = matrix @ query
            top = np.argpartition(-scores, k - 1)[:k]
            scores = scores[top]
        else:  # the graph proposes, the embeddings score
            top = graph.search(query, k)
            top = top[(top >= 0) & (top < len(rows))]
            scores = matrix[top] @ query
        order = np.lexsort((top, -scores))
        return [{**self.items[rows[top[i]]], "score": float(scores[i])} for i in order]

    def build_ann(self, settings: HnswSettings) -> RetrievalIndex:
        """An HNSW graph for each kind with at least ``settings.min_items`` items (none for the others)."""
        self.graphs = {
            kind: KindGraph.build(self._matrix[kind], settings)
            for kind in ITEM_KINDS
            if self.count(kind) >= max(settings.min_items, 1)
        }
        self.hnsw = settings if self.graphs else None
        return self

    def save(self, out_dir: str | Path) -> Path:
        """Write the folder whole or not at all: written under a temporary name and renamed
        (regionmed/atomic.py), so a reader never sees new embeddings beside an old ``index.json``, and a
        server that has the old files memory-mapped keeps reading the old index."""
        with atomic_dir(out_dir) as tmp:
            self._save_into(tmp)
        return Path(out_dir)

    def _save_into(self, out: Path) -> None:
        with open(out / EMBEDDINGS_FILE, "wb") as fh:
            np.save(fh, np.ascontiguousarray(self.embeddings))
        doc = {
            "format_version": FORMAT_VERSION,
            "split": self.split,
            "model_version": self.model_version,
            "dim": self.dim,
            "n_items": len(self.items),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "items": self.items,
        }
        if self.graphs:
            kinds = {kind: graph.save(out, kind) for kind, graph in self.graphs.items()}
            doc["ann"] = {**describe(self.hnsw), "kinds": kinds}
        (out / INDEX_FILE).write_text(json.dumps(doc, indent=0, sort_keys=True) + "\n")

    @classmethod
    def load(
        cls, path: str | Path, *, mmap: bool = False, expansion_search: int | None = None
    ) -> RetrievalIndex:
        """Read an index folder. ``mmap``: memory-map the embeddings (the graphs always are);
        ``expansion_search``: the HNSW search breadth (None: the one it was built with)."""
        path = Path(path)
        doc = json.loads((path / INDEX_FILE).read_text())
        if doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: index format_version {doc.get('format_version')!r}, expected {FORMAT_VERSION}"
            )
        emb = np.load(path / EMBEDDINGS_FILE, allow_pickle=False, mmap_mode="r" if mmap else None)
        index = cls(doc["items"], emb, doc.get("split", ""), doc.get("model_version", ""))
        if doc.get("ann"):
            index._load_graphs(path, doc["ann"], expansion_search)
        return index

    def _load_graphs(self, path: Path, ann: dict, expansion_search: int | None) -> None:
        try:
            settings = HnswSettings(**{name: ann[name] for name in HnswSettings.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            self.ann_problem = f"{path}: index.json's ann record lacks {exc}"
            logger.warning("retrieval index: %s; every kind is searched exactly", self.ann_problem)
            return
        ef = expansion_search or settings.expansion_search
        problems = []
        for kind, record in ann.get("kinds", {}).items():
            try:
                if kind not in self._matrix or record.get("count") != self.count(kind):
                    n = self.count(kind)
                    raise AnnIndexError(f"{path}: the {kind} graph has {record.get('count')} items, not {n}")
                self.graphs[kind] = KindGraph.load(path, record, self._matrix[kind], ef)
            except AnnIndexError as exc:
                problems.append(str(exc))
                logger.warning("retrieval index: %s; %s items are searched exactly instead", exc, kind)
        self.hnsw = settings if self.graphs else None
        self.ann_problem = "; ".join(problems) or None

    @staticmethod
    def exists(path: str | Path | None) -> bool:
        return (
            path is not None
            and (Path(path) / INDEX_FILE).is_file()
            and (Path(path) / EMBEDDINGS_FILE).is_file()
        )


def build_index(
    engine,
    corpus_dir: str | Path,
    split: str,
    batch_size: int = 64,
    limit: int | None = None,
    ann: HnswSettings | None = None,
    *,
    cluster: ClusterParams | None = None,
    model_dir: str | Path | None = None,
) -> RetrievalIndex:
    """Embed every image of ``split`` and its report with ``engine`` (a
    :class:`~regionmed.inference.engine.Engine`); with ``ann``, build the HNSW graphs too.

    With ``cluster``, the images are embedded on that Dask cluster in chunks of whole batches, each
    worker with its own copy of the model in ``model_dir`` (the folder ``engine`` was loaded from, on
    the CPU); without, here with ``engine``. Reports are embedded here, a batch at a time, either way.
    """
    from regionmed.corpus.schema import read_manifest

    df = read_manifest(corpus_dir, split)
    if limit is not None:
        df = df.iloc[:limit]
    if len(df) == 0:
        raise ValueError(f"corpus {corpus_dir} has no images in split {split!r}")
    corpus_dir = Path(corpus_dir)
    paths = list(df["image_path"])
    if cluster is None:
        image_emb = image_embeddings(engine, corpus_dir, paths, batch_size)
    else:
        if model_dir is None:
            raise ValueError("build_index on a cluster needs the model's folder (model_dir)")
        image_emb = _cluster_image_embeddings(cluster, Path(model_dir), corpus_dir, paths, batch_size)
    report_emb = [
        engine.encode_texts(list(df["report"].iloc[start : start + batch_size]))
        for start in range(0, len(df), batch_size)
    ]
    meta = [
        {"id": str(r.image_id), "modality": str(r.modality), "labels": [str(x) for x in _as_list(r.labels)]}
        for r in df.itertuples()
    ]
    items = [{**m, "kind": "image"} for m in meta] + [{**m, "kind": "report"} for m in meta]
    emb = np.concatenate([image_emb, np.concatenate(report_emb)])
    index = RetrievalIndex(items, emb, split, engine.version)
    return index.build_ann(ann) if ann is not None else index


def image_embeddings(engine, corpus_dir: Path, paths: Sequence[str], batch_size: int) -> np.ndarray:
    """The index's embeddings of the images at ``paths`` (in ``corpus_dir``), ``batch_size`` at a time,
    prepared as the service prepares an upload."""
    from regionmed.corpus.images import read_png
    from regionmed.inference.uploads import DecodedImage

    out = []
    for start in range(0, len(paths), batch_size):
        batch = paths[start : start + batch_size]
        out.append(
            engine.encode_images([engine.prepare(DecodedImage(read_png(corpus_dir / p), {})) for p in batch])
        )
    return np.concatenate(out)


def embed_index_images(model_dir: str, corpus_dir: str, batch_size: int, paths: list[str]) -> np.ndarray:
    """One index task (on a cluster worker): :func:`image_embeddings` with the worker's copy of the model."""
    from regionmed.inference.engine import Engine

    model, tokenizer = worker_model(model_dir)
    return image_embeddings(Engine(model, tokenizer, version=""), Path(corpus_dir), paths, batch_size)


def _cluster_image_embeddings(
    cluster: ClusterParams, model_dir: Path, corpus_dir: Path, paths: list[str], batch_size: int
) -> np.ndarray:
    from regionmed.cluster import dask_client

    with dask_client(cluster) as client:
        (chunks,) = run_chunked(
            client,
            embed_index_images,
            [paths],
            batch_size,
            name="embed index images",
            shared=(str(model_dir.resolve()), str(corpus_dir.resolve()), batch_size),
        )
    return np.concatenate(chunks)


def _rows_of(embeddings: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``embeddings[rows]``, as a view (no copy) when ``rows`` is a contiguous run."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return embeddings[rows[0] : rows[-1] + 1]
    return embeddings[rows]


def _as_list(value) -> Sequence:
    if value is None:
        return []
    return list(value)
