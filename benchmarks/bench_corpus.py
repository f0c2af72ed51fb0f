"""Corpus build throughput (images/s) of the synthetic source: default size and 10x, 1 and 2 workers;
with ``--medpix DIR``, the MedPix 2.0 import of that folder instead (e.g. ../shared/data/medpix2-sample).

    python benchmarks/bench_corpus.py [--sizes 4000 40000] [--workers 1 2] [--medpix DIR]

Prints one line per run; compare within one run (the machine is shared and noisy). Writes the
figures to benchmarks/results/corpus_build.json (``--results``).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from regionmed.corpus.build import build_corpus
from regionmed.env import configure_environment
from regionmed.params import load_params
from regionmed.publish.record import Record, results_option

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    configure_environment()
    base = load_params(REPO / "params.yaml")
    default_n = base.corpus.synthetic.n_images
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[default_n, 10 * default_n])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--medpix", type=Path, default=None, help="time the MedPix import of this folder")
    results_option(parser, "corpus_build")
    args = parser.parse_args()
    record = Record("corpus_build")
    rows = []
    source = {"source": "medpix", "importer": {"path": str(args.medpix)}} if args.medpix else {}
    sizes = [None] if args.medpix else args.sizes
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}; image_size {base.corpus.image_size}"
    )
    print(f"{'images':>8} {'workers':>7} {'seconds':>8} {'images/s':>9} {'speedup':>8}")
    for n in sizes:
        single = None
        for workers in args.workers:
            corpus = {**source, **({"synthetic": {"n_images": n}} if n else {})}
            params = load_params(REPO / "params.yaml", {"cluster": {"workers": workers}, "corpus": corpus})
            out = Path(tempfile.mkdtemp(prefix="bench_corpus_"))
            start = time.perf_counter()
            summary = build_corpus(params, out / "corpus", progress=False)
            seconds = time.perf_counter() - start
            shutil.rmtree(out)
            rate = summary.n_kept / seconds
            single = single or rate
            rows.append(
                {
                    "images": summary.n_input,
                    "workers": workers,
                    "seconds": round(seconds, 1),
                    "images_per_s": round(rate),
                    "speedup": round(rate / single, 2),
                }
            )
            print(
                f"{summary.n_input:>8} {workers:>7} {seconds:>8.1f} {rate:>9.0f} {rate / single:>7.2f}x",
                flush=True,
            )
    source = "medpix" if args.medpix else "synthetic"
    figures = {"source": source, "image_size": base.corpus.image_size, "default_images": default_n}
    record.write({**figures, "rows": rows}, args.results)


if __name__ == "__main__":
    main()
