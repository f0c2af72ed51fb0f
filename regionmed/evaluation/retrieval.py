"""Image-text retrieval metrics (Recall@K, median and mean rank), computed in chunks of queries.

The full ``[Q, G]`` similarity matrix is never built: queries are scored a block of rows at a
time, so memory is ``O(rows x G)`` (bounded by ``max_block_bytes``) and 100k x 100k fits in
about 512 MiB. The matmul is numpy on CPU; a GPU caller can pass smaller blocks of queries itself.

Rank of a query
    ``1 + (number of gallery items that are NOT positives of the query and score >= the best
    positive's score)``. Ties with a negative therefore count against the model ("pessimistic"):
    a collapsed model whose embeddings are all equal gets the worst rank, never rank 1. Several
    positives (duplicate reports, several images per report) are allowed; the best-scoring one
    counts and the other positives never push it down. ``ties="optimistic"`` counts only strictly
    higher negatives and ``ties="average"`` counts tied negatives as one half each.

Positives can be given as
    * ``None``: query ``i`` matches gallery item ``i`` (needs ``Q == G``);
    * an int array or list ``[Q]`` (one gallery index per query) or ``[Q, K]`` padded with ``-1``;
    * a list of iterables of gallery indices, one per query;
    * or, instead of ``positives``, ``query_groups``/``gallery_groups``: any hashable ids, where a
      query's positives are the gallery items with the same id. Use this for large groups (e.g.
      thousands of images sharing the report "Normal study."): it costs no padded index arrays.
A query without any positive gets rank NaN, is left out of the metrics and counted in
``n_without_positive``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from regionmed.arrays import as_numpy, l2_normalize

TIE_MODES = ("pessimistic", "optimistic", "average")
DEFAULT_MAX_BLOCK_BYTES = 512 * 2**20
BYTES_PER_PAIR = 12


def _positives_csr(positives: Any, n_query: int, n_gallery: int) -> tuple[np.ndarray, np.ndarray]:
    """Positives as CSR: ``indices[indptr[q]:indptr[q+1]]`` are the gallery positives of query ``q``."""
    if positives is None:
        if n_query != n_gallery:
            raise ValueError(
                f"positives=None needs as many queries as gallery items ({n_query} != {n_gallery})"
            )
        return np.arange(n_query + 1), np.arange(n_query)
    if not (isinstance(positives, np.ndarray) or hasattr(positives, "detach")):
        positives = list(positives)
        if all(isinstance(p, (int, np.integer)) for p in positives):
            positives = np.asarray(positives, dtype=np.int64).reshape(-1)
    if isinstance(positives, np.ndarray) or hasattr(positives, "detach"):
        arr = as_numpy(positives).astype(np.int64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[0] != n_query:
            raise ValueError(f"positives must be [Q] or [Q, K] with Q={n_query}, got {arr.shape}")
        valid = arr >= 0
        indptr = np.concatenate([[0], np.cumsum(valid.sum(axis=1))])
        indices = arr[valid]
    else:
        rows = [sorted({int(i) for i in p}) for p in positives]
        if len(rows) != n_query:
            raise ValueError(f"positives has {len(rows)} entries for {n_query} queries")
        indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        indices = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(indptr[-1]))
    if indices.size and (indices.min() < 0 or indices.max() >= n_gallery):
        raise ValueError(f"positive index out of range 0..{n_gallery - 1}")
    return indptr, indices


def _group_codes(query_groups: Sequence, gallery_groups: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes shared by both sides; ids seen on one side only get codes that match nothing."""
    codes: dict[Any, int] = {}
    q = np.array([codes.setdefault(g, len(codes)) for g in _hashable(query_groups)], dtype=np.int64)
    g = np.array([codes.setdefault(x, len(codes)) for x in _hashable(gallery_groups)], dtype=np.int64)
    return q, g


def _hashable(values: Iterable) -> list:
    if isinstance(values, np.ndarray) or hasattr(values, "detach"):
        return as_numpy(values).tolist()
    return list(values)


def retrieval_ranks(
    query_emb: Any,
    gallery_emb: Any,
    positives: Any = None,
    *,
    query_groups: Sequence | None = None,
    gallery_groups: Sequence | None = None,
    chunk_size: int = 4096,
    normalize: bool = True,
    ties: str = "pessimistic",
    max_block_bytes: int = DEFAULT_MAX_BLOCK_BYTES,
) -> np.ndarray:
    """Rank (1 = best) of each query's best positive in the gallery, float ``[Q]`` (NaN: no positive).

    Similarity is the dot product (cosine with ``normalize=True``). Queries are processed
    ``min(chunk_size, max_block_bytes // (BYTES_PER_PAIR * G))`` rows at a time: a block holds the
    float32 scores plus a few boolean masks and one float32 temporary (about 12 bytes a pair), so
    ``max_block_bytes`` bounds the working memory (512 MiB: 447 queries a block at G = 100k).
    """
    if ties not in TIE_MODES:
        raise ValueError(f"ties must be one of {TIE_MODES}")
    q = as_numpy(query_emb, np.float32)
    g = as_numpy(gallery_emb, np.float32)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"embeddings must be [Q, D] and [G, D], got {q.shape} and {g.shape}")
    if normalize:
        q, g = l2_normalize(q), l2_normalize(g)
    n_q, n_g = q.shape[0], g.shape[0]
    use_groups = query_groups is not None or gallery_groups is not None
    if use_groups:
        if positives is not None or query_groups is None or gallery_groups is None:
            raise ValueError("give either positives or both query_groups and gallery_groups")
        qcode, gcode = _group_codes(query_groups, gallery_groups)
        if len(qcode) != n_q or len(gcode) != n_g:
            raise ValueError("group arrays must match the number of queries / gallery items")
    else:
        indptr, indices = _positives_csr(positives, n_q, n_g)
    rows = max(1, min(int(chunk_size), max_block_bytes // max(BYTES_PER_PAIR * n_g, 1)))
    gt = np.ascontiguousarray(g.T)
    ranks = np.full(n_q, np.nan)
    for a in range(0, n_q, rows):
        b = min(a + rows, n_q)
        scores = q[a:b] @ gt  # [c, G]
        if use_groups:
            pos = qcode[a:b, None] == gcode[None, :]
        else:
            pos = np.zeros(scores.shape, dtype=bool)
            counts = np.diff(indptr[a : b + 1])
            pos[np.repeat(np.arange(b - a), counts), indices[indptr[a] : indptr[b]]] = True
        has_pos = pos.any(axis=1)
        best = np.where(pos, scores, -np.inf).max(axis=1)[:, None]
        neg = ~pos
        if ties == "optimistic":
            above = (neg & (scores > best)).sum(axis=1).astype(np.float64)
        else:
            above = (neg & (scores >= best)).sum(axis=1).astype(np.float64)
            if ties == "average":
                above -= 0.5 * (neg & (scores == best)).sum(axis=1)
        ranks[a:b] = np.where(has_pos, 1.0 + above, np.nan)
    return ranks


def metrics_from_ranks(ranks: Any, ks: Sequence[int] = (1, 5, 10), prefix: str = "") -> dict[str, float]:
    """``recall@K`` for each K, ``median_rank``, ``mean_rank``, ``mrr`` and counts from per-query ranks."""
    r = np.asarray(ranks, dtype=np.float64)
    valid = r[~np.isnan(r)]
    out: dict[str, float] = {}
    for k in ks:
        out[f"{prefix}recall@{k}"] = float((valid <= k).mean()) if valid.size else float("nan")
    out[f"{prefix}median_rank"] = float(np.median(valid)) if valid.size else float("nan")
    out[f"{prefix}mean_rank"] = float(valid.mean()) if valid.size else float("nan")
    out[f"{prefix}mrr"] = float((1.0 / valid).mean()) if valid.size else float("nan")
    out[f"{prefix}n_queries"] = int(valid.size)
    out[f"{prefix}n_without_positive"] = int(r.size - valid.size)
    return out


def retrieval_metrics(
    query_emb: Any,
    gallery_emb: Any,
    positives: Any = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 4096,
    **kwargs: Any,
) -> dict[str, float]:
    """Recall@K, median/mean rank and MRR of retrieving ``gallery_emb`` items for ``query_emb``.

    ``kwargs`` go to :func:`retrieval_ranks` (``query_groups``, ``gallery_groups``, ``normalize``,
    ``ties``, ``max_block_bytes``). For per-query values to bootstrap, call
    :func:`retrieval_ranks` and use ``ranks <= k``.
    """
    ranks = retrieval_ranks(query_emb, gallery_emb, positives, chunk_size=chunk_size, **kwargs)
    return metrics_from_ranks(ranks, ks)


def bidirectional_retrieval(
    img: Any,
    txt: Any,
    groups: Sequence | None = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = 4096,
    **kwargs: Any,
) -> dict[str, float]:
    """Image→text (``i2t/...``) and text→image (``t2i/...``) metrics for paired rows ``img[i]``/``txt[i]``.

    ``groups[i]`` (optional) is an id of row ``i``'s text, e.g. a hash of the report: rows with the
    same id are all correct matches for each other (duplicate reports). Without it only the pair
    itself is correct.
    """
    if groups is None:
        i2t = retrieval_ranks(img, txt, None, chunk_size=chunk_size, **kwargs)
        t2i = retrieval_ranks(txt, img, None, chunk_size=chunk_size, **kwargs)
    else:
        i2t = retrieval_ranks(
            img, txt, query_groups=groups, gallery_groups=groups, chunk_size=chunk_size, **kwargs
        )
        t2i = retrieval_ranks(
            txt, img, query_groups=groups, gallery_groups=groups, chunk_size=chunk_size, **kwargs
        )
    return {**metrics_from_ranks(i2t, ks, "i2t/"), **metrics_from_ranks(t2i, ks, "t2i/")}
