"""How long a drift check takes at scale: 100k reference and 100k current 256-d embeddings.

    python benchmarks/bench_drift.py [--rows 100000] [--dim 256] [--repeats 2] [--log] [--tsne]

Per case (``unshifted``: both from one distribution; ``shifted``: the current from one 'modality'
with a contrast change) the image kind's checks are timed as the monitor runs them with the
``monitor:`` section of params.yaml: a seeded sample of ``sample_rows`` per side, PCA to
``pca_components`` fitted on both samples, Evidently's Report (model + MMD embedding drift, four
descriptors, two zero-shot label shares), the HTML written. Wall time, one process, in memory.

``--log``: also the whole monitor stage (``regionmed.monitoring.stage.run``) on a 100k-record embedding
log (JSON Lines written with the service's writer first): reading the window is then part of the time.
``--tsne``: also with Evidently's own t-SNE plot (``monitor.plot: tsne``) instead of the 2-D PCA.

Prints a Markdown table and JSON lines, and writes the rows to benchmarks/results/drift.json
(``--results``). The machine is shared and noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from regionmed.monitoring import stage as monitor_stage
from regionmed.monitoring.drift import check_kind, write_reports
from regionmed.monitoring.reference import Reference
from regionmed.params import load_params
from regionmed.publish.record import Record, results_option

ROOT = Path(__file__).resolve().parents[1]


def population(
    n: int,
    dim: int,
    rng: np.random.Generator,
    centers: np.ndarray,
    modality: int | None = None,
    contrast: float = 1.0,
) -> tuple[np.ndarray, pd.DataFrame]:
    lab = rng.integers(0, len(centers), n) if modality is None else np.full(n, modality)
    emb = centers[lab] + rng.normal(size=(n, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    desc = pd.DataFrame(
        {
            "width": 512,
            "height": 512,
            "mean": rng.normal(0.3, 0.05, n) * contrast,
            "std": rng.normal(0.2, 0.02, n) * contrast,
        }
    )
    return emb.astype(np.float32), desc


def frame(emb: np.ndarray, desc: pd.DataFrame) -> pd.DataFrame:
    df = desc.copy()
    df["embedding"] = list(emb)
    df["ts"] = pd.Timestamp.now(tz="UTC")
    df["endpoint"], df["model_version"] = "encode_image", "bench"
    return df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--log", action="store_true")
    ap.add_argument("--tsne", action="store_true")
    results_option(ap, "drift")
    args = ap.parse_args()
    record = Record("drift")
    params = load_params(ROOT / "params.yaml")
    m = params.monitor
    rng = np.random.default_rng(0)
    centers = (rng.normal(size=(3, args.dim)) * 0.08).astype(np.float32)
    t = time.perf_counter()
    ref_emb, ref_desc = population(args.rows, args.dim, rng, centers)
    cur = {
        "unshifted": population(args.rows, args.dim, rng, centers),
        "shifted": population(args.rows, args.dim, rng, centers, modality=0, contrast=1.5),
    }
    class_emb = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    ref = Reference(
        {"image": ref_emb},
        {"image": ref_desc},
        ["bench"],
        {"finding": ["a", "b", "c"], "modality": ["x", "y", "z"]},
        {"finding": class_emb, "modality": class_emb[[1, 2, 0]]},
        "test",
    )
    print(
        f"data: {args.rows} + 2x{args.rows} rows x {args.dim} in {time.perf_counter() - t:.1f} s",
        file=sys.stderr,
    )
    import evidently  # noqa: F401  (the import, ~4 s, is not part of a check)

    results = []
    variants = [("pca", m)] + ([("tsne", m.model_copy(update={"plot": "tsne"}))] if args.tsne else [])
    with tempfile.TemporaryDirectory() as tmp:
        for plot, settings in variants:
            for case, (emb, desc) in cur.items():
                times, html_s, res = [], [], None
                for _ in range(args.repeats):
                    current = frame(emb, desc)
                    t = time.perf_counter()
                    res = check_kind("image", ref, current, settings, seed=params.seed)
                    times.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    write_reports(
                        [res],
                        {
                            "window": {"start": None, "end": None, "hours": 0, "anchor": "latest"},
                            "current": {
                                "rows_in_window": {},
                                "rows": {},
                                "rows_other_model": {},
                                "log_dir": "",
                            },
                            "reference": {"rows": {}, "split": "", "model_versions": []},
                            "status": "x",
                            "message": "",
                            "min_rows": 0,
                            "sample_rows": 0,
                            "checks": [],
                        },
                        Path(tmp) / case,
                    )
                    html_s.append(time.perf_counter() - t)
                drifted = [c.name.split("/", 1)[1] for c in res.checks if c.drift]
                row = {
                    "case": case,
                    "plot": plot,
                    "rows": args.rows,
                    "dim": args.dim,
                    "sample_rows": settings.sample_rows,
                    "pca": res.components,
                    "check_s": round(statistics.median(times), 2),
                    "html_s": round(statistics.median(html_s), 2),
                    "scores": {c.name.split("/", 1)[1]: round(c.score, 4) for c in res.checks},
                    "drifted": drifted,
                }
                results.append(row)
                print(json.dumps(row), flush=True)
        if args.log:
            from regionmed.monitoring.embedding_log import EmbeddingLogWriter

            emb, desc = cur["shifted"]
            log_dir = Path(tmp) / "log"
            t = time.perf_counter()
            w = EmbeddingLogWriter(log_dir)
            for i in range(0, len(emb), 256):
                rows = desc.iloc[i : i + 256].to_dict("records")
                w.log(
                    endpoint="encode_image",
                    model_version="bench",
                    request="0123456789abcdef",
                    kind="image",
                    embeddings=emb[i : i + 256],
                    descriptors=[
                        {k: float(v) if k in ("mean", "std") else int(v) for k, v in r.items()} for r in rows
                    ],
                )
            w.close()
            write_s = time.perf_counter() - t
            size = sum(p.stat().st_size for p in log_dir.iterdir())
            bench = params.model_copy(update={"monitor": m.model_copy(update={"kinds": ["image"]})})
            t = time.perf_counter()
            s = monitor_stage.run(
                bench,
                log_dir=log_dir,
                reference=ref,
                report_dir=Path(tmp) / "log_report",
                summary_file=Path(tmp) / "drift.json",
                log=lambda *_: None,
            ).summary
            row = {
                "case": "shifted, from a log",
                "rows": args.rows,
                "dim": args.dim,
                "log_mb": round(size / 2**20),
                "write_s": round(write_s, 1),
                "run_monitor_s": round(time.perf_counter() - t, 1),
                "status": s["status"],
            }
            results.append(row)
            print(json.dumps(row), flush=True)

    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS')}\n"
    )
    print("| case | plot | rows per side | sampled | PCA | checks (s) | HTML (s) | drifted |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if "check_s" in r:
            print(
                f"| {r['case']} | {r['plot']} | {r['rows']:,} x {r['dim']} | {r['sample_rows']} | "
                f"{r['pca']} | {r['check_s']} | {r['html_s']} | {', '.join(r['drifted']) or '-'} |"
            )
        else:
            print(
                f"| {r['case']} | pca | {r['rows']:,} x {r['dim']} (log {r['log_mb']} MB, written in "
                f"{r['write_s']} s) | | | run_monitor {r['run_monitor_s']} | | {r['status']} |"
            )
    figures = {"omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "repeats": args.repeats, "rows": results}
    record.write(figures, args.results)


if __name__ == "__main__":
    main()
