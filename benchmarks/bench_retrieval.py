"""Retrieval at scale: exact search vs the HNSW graphs of the retrieval index, on synthetic vectors.

    python benchmarks/bench_retrieval.py [--sizes 100000 1000000] [--dim 256] [--queries 1000]
        [--connectivity 16] [--expansion-add 128] [--efs 16 32 64 128 256] [--build-threads 1]
        [--served] [--served-requests 300] [--work .state/bench_retrieval] [--results PATH]
    python benchmarks/bench_retrieval.py --memory-only .state/bench_retrieval/index_1000000 --efs 256

- Data: a Gaussian mixture on the sphere (real embeddings are clustered, not uniform): 1,000
  centres uniform on the unit sphere, cluster sizes drawn from a Dirichlet, each point the
  unit centre plus Gaussian noise of norm 0.6-1.2, L2-normalised (cosine with its centre ~0.65-0.85).
  Queries are more points of the same mixture, not in the index. All items are of kind ``image``.
- Exact: :class:`RetrievalIndex` without graphs (one matrix-vector product per query); the ground
  truth top-10 of every query. HNSW: ``RetrievalIndex.build_ann`` (the code ``package`` runs), saved,
  and loaded memory-mapped as the service loads it, once per ``ef`` in ``--efs``.
- recall@10: the share of each query's exact top 10 that HNSW returns, averaged over the queries.
- Latency: one query at a time through ``RetrievalIndex.search`` (the service's call: candidates,
  exact re-scoring, result dicts), p50/p99 in ms.
- Memory: the folder's files; RSS of a fresh process that loads the index memory-mapped (as the
  service does), after 1,000 HNSW queries, then (graphs dropped) after 20 exact queries, in MiB:
  ``RssAnon`` is the process's own memory, ``RssFile`` the pages of mapped files it has read (page
  cache, shared by the processes that map the same files, reclaimable).
- ``--served``: a real ``bentoml serve`` of the service on 127.0.0.1 with a tiny untrained model of
  ``embed_dim`` = ``--dim`` and ``REGIONMED_INDEX_DIR`` at the synthetic index (with, then without
  its graphs), ``/retrieve`` by text one request at a time; the latency includes encoding the text.

Writes benchmarks/results/bench_retrieval.json (``--results``); prints one JSON line per size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from regionmed.env import configure_environment
from regionmed.inference.ann import HnswSettings
from regionmed.inference.index import INDEX_FILE, RetrievalIndex
from regionmed.publish.record import Record, results_option

REPO = Path(__file__).resolve().parents[1]
CLUSTERS = 1000
K = 10
CHUNK = 50_000


def mixture(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray, weights: np.ndarray):
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        which = rng.choice(len(centres), m, p=weights)
        spread = rng.uniform(0.6, 1.2, (m, 1)) / np.sqrt(dim)
        x = centres[which] + spread * rng.standard_normal((m, dim))
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def dataset(n: int, n_queries: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.dirichlet(np.full(CLUSTERS, 2.0))
    return mixture(n, dim, rng, centres, weights), mixture(n_queries, dim, rng, centres, weights)


def exact_top(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The ground truth: each query's top-K row numbers, by a chunked matrix product."""
    best_s = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), K), dtype=np.int64)
    for start in range(0, len(vectors), CHUNK):
        s = queries @ vectors[start : start + CHUNK].T
        s = np.concatenate([best_s, s], axis=1)
        i = np.concatenate(
            [best_i, np.arange(start, start + s.shape[1] - K)[None].repeat(len(queries), 0)], 1
        )
        top = np.argpartition(-s, K - 1, axis=1)[:, :K]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return best_i


def timed_search(index: RetrievalIndex, queries: np.ndarray) -> tuple[list[list[int]], dict]:
    found, seconds = [], []
    for q in queries:
        t0 = time.perf_counter()
        results = index.search(q, K, "image")
        seconds.append(time.perf_counter() - t0)
        found.append([int(r["id"]) for r in results])
    ms = np.asarray(seconds) * 1000
    return found, {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return round(float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])), 4)


RSS_PROBE = """
import json, sys, numpy as np
from regionmed.inference.index import RetrievalIndex
def rss():
    fields = dict(l.split(":", 1) for l in open("/proc/self/status") if ":" in l)
    return {k: int(fields[k].split()[0]) // 1024 for k in ("VmRSS", "VmHWM", "RssAnon", "RssFile")}
out = {"start_mib": rss()}
index = RetrievalIndex.load(sys.argv[1], mmap=True, expansion_search=int(sys.argv[2]))
out["after_load_mib"] = rss()
queries = np.load(sys.argv[3])
for q in queries: index.search(q, 10, "image")
out["after_hnsw_queries_mib"] = rss()
index.graphs.clear()
for q in queries[:20]: index.search(q, 10, "image")
out["after_exact_queries_mib"] = rss()
print(json.dumps(out))
"""


def memory(folder: Path, ef: int, queries_file: Path) -> dict:
    files = {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(folder.iterdir()) if p.is_file()}
    proc = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(folder), str(ef), str(queries_file)],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    return {"files_mib": files, "rss_process": json.loads(proc.stdout.strip().splitlines()[-1])}


def run_size(n: int, args, work: Path) -> dict:
    t0 = time.perf_counter()
    vectors, queries = dataset(n, args.queries, args.dim)
    row = {"n": n, "dim": args.dim, "queries": args.queries, "generate_s": round(time.perf_counter() - t0, 1)}
    t0 = time.perf_counter()
    truth = exact_top(vectors, queries)
    row["ground_truth_s"] = round(time.perf_counter() - t0, 1)
    items = [{"id": str(i), "kind": "image", "modality": "CXR", "labels": []} for i in range(n)]
    exact = RetrievalIndex(items, vectors, "synthetic", "bench")
    found, row["exact"] = timed_search(exact, queries[: args.exact_queries])
    row["exact"]["recall@10"] = recall(found, truth[: args.exact_queries])
    settings = HnswSettings(
        min_items=1,
        connectivity=args.connectivity,
        expansion_add=args.expansion_add,
        expansion_search=max(args.efs),
        build_threads=args.build_threads,
    )
    t0 = time.perf_counter()
    exact.build_ann(settings)
    row["build_s"] = round(time.perf_counter() - t0, 1)
    folder = work / f"index_{n}"
    t0 = time.perf_counter()
    exact.save(folder)
    row["save_s"] = round(time.perf_counter() - t0, 1)
    row["hnsw"] = {"connectivity": args.connectivity, "expansion_add": args.expansion_add, "by_ef": []}
    del exact, vectors
    for ef in args.efs:
        t0 = time.perf_counter()
        index = RetrievalIndex.load(folder, mmap=True, expansion_search=ef)
        load_s = round(time.perf_counter() - t0, 2)
        found, lat = timed_search(index, queries)
        row["hnsw"]["by_ef"].append({"ef": ef, "recall@10": recall(found, truth), **lat, "load_s": load_s})
        del index
    good = [r for r in row["hnsw"]["by_ef"] if r["recall@10"] >= 0.99]
    row["hnsw"]["ef_for_0.99"] = good[0]["ef"] if good else None
    np.save(work / "queries.npy", queries)
    row["memory"] = memory(folder, row["hnsw"]["ef_for_0.99"] or max(args.efs), work / "queries.npy")
    if args.served:
        from bench_retrieval_served import served

        row["served"] = served(folder, args, work, row["hnsw"]["ef_for_0.99"] or max(args.efs))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--exact-queries", type=int, default=200, help="queries timed by exact search")
    ap.add_argument("--connectivity", type=int, default=16)
    ap.add_argument("--expansion-add", type=int, default=128)
    ap.add_argument("--efs", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--build-threads", type=int, default=1)
    ap.add_argument("--served", action="store_true", help="also through `bentoml serve` (2 servers per size)")
    ap.add_argument("--served-requests", type=int, default=300)
    ap.add_argument("--work", type=Path, default=REPO / ".state" / "bench_retrieval")
    ap.add_argument(
        "--memory-only",
        type=Path,
        metavar="INDEX_DIR",
        help="only the memory probe of an index folder a run left in --work (at ef max(--efs)); prints it",
    )
    results_option(ap, "bench_retrieval")
    args = ap.parse_args()
    configure_environment()
    if args.memory_only:
        print(json.dumps(memory(args.memory_only, max(args.efs), args.work / "queries.npy")))
        return
    record = Record("bench_retrieval")
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        rows.append(run_size(n, args, args.work))
        print(json.dumps(rows[-1]), flush=True)
    figures = {
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "clusters": CLUSTERS,
        "k": K,
        "index_file": INDEX_FILE,
        "rows": rows,
    }
    record.write(figures, args.results)


if __name__ == "__main__":
    main()
