"""What the validate_corpus stage adds to a pipeline run, and how it scales with rows.

    python benchmarks/bench_validation.py [--rows 100000] [--repeats 3] [--skip-default] [--dvc]

1. The default corpus (params.yaml: 4000 synthetic images): `regionmed corpus build` and
   `regionmed validate` each timed as the CLI process DVC runs (fresh interpreter, so GX's ~2 s
   import is included), the same process pair `--repeats` times; the ratio is taken per pair.
   Also each stage's own figure in-process (build_corpus() as the build CLI reports it;
   validate_corpus() with GX's import included, the interpreter and CLI imports excluded).
2. A manifest of `--rows` rows without images (the default manifest replicated with new ids,
   hashes and patients; `file_check_fraction: 0` since there are no files; build.json and
   rejected.jsonl written to match): `regionmed validate` timed as a CLI process.

3. With ``--dvc``: the same pair as DVC stages in a clean copy of the repository
   (``dvc repro build_corpus`` then ``dvc repro validate_corpus``): what each stage adds to
   ``dvc repro``, DVC's own work included (caching the corpus's 4000 files, checking deps).

Prints a Markdown table and writes the figures to benchmarks/results/validation.json
(``--results``). The machine is shared and noisy: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from regionmed.corpus.schema import BUILD_SUMMARY_FILE, MANIFEST_FILE, REJECTED_FILE
from regionmed.env import configure_environment
from regionmed.params import deep_merge
from regionmed.publish.record import Record, results_option

REPO = Path(__file__).resolve().parents[1]


def cli(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "regionmed", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    return time.perf_counter() - start, proc


def params_file(work: Path, overrides: dict) -> Path:
    params = deep_merge(yaml.safe_load((REPO / "params.yaml").read_text()), overrides)
    path = work / f"params_{len(list(work.glob('params_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def validate(work: Path, params: Path, corpus: Path, tag: str) -> tuple[float, dict]:
    """CLI wall seconds, and the result JSON with the run's timings under ``timings_s``."""
    seconds, proc = cli(
        [
            "validate",
            "--params",
            str(params),
            "--corpus",
            str(corpus),
            "--metrics",
            str(work / f"{tag}.json"),
            "--report",
            str(work / f"{tag}.html"),
            "--timings",
            str(work / f"{tag}_timings.json"),
        ],
        REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"validate failed on {corpus}:\n{proc.stderr[-3000:]}")
    result = json.loads((work / f"{tag}.json").read_text())
    result["timings_s"] = json.loads((work / f"{tag}_timings.json").read_text())
    return seconds, result


def replicate(corpus: Path, out: Path, rows: int) -> None:
    """A manifest of ``rows`` rows from a real one: ids, paths, hashes and patients made unique per copy."""
    table = pq.read_table(corpus / MANIFEST_FILE)
    copies, n = [], 0
    for k in range(-(-rows // table.num_rows)):
        t = table.slice(0, min(table.num_rows, rows - n))
        n += t.num_rows
        for name in ("image_id", "patient_id"):
            t = t.set_column(
                t.schema.get_field_index(name), name, pc.binary_join_element_wise(t[name], f"r{k}", "-")
            )
        t = t.set_column(
            t.schema.get_field_index("image_path"),
            "image_path",
            pc.binary_join_element_wise("images/", t["image_id"], ".png", ""),
        )
        hashes = [f"{k:08x}{h[8:]}" for h in t["sha256"].to_pylist()]
        t = t.set_column(t.schema.get_field_index("sha256"), "sha256", pa.array(hashes, pa.string()))
        copies.append(t)
    out.mkdir(parents=True)
    pq.write_table(pa.concat_tables(copies), out / MANIFEST_FILE, compression="zstd")
    (out / REJECTED_FILE).write_text("")
    (out / BUILD_SUMMARY_FILE).write_text(
        json.dumps(
            {"n_input": rows, "n_kept": rows, "n_rejected": 0, "reject_fraction": 0.0, "source": "synthetic"}
        )
    )


def dvc_pairs(work: Path, repeats: int) -> list[dict]:
    sys.path.insert(0, str(REPO / "tests"))
    from helpers.pipeline_copy import clean_copy, run

    print("\n| dvc run | dvc repro build_corpus s | dvc repro validate_corpus s | validate / build |")
    print("|---|---:|---:|---:|")
    rows = []
    for i in range(repeats):
        repo = clean_copy(work / f"dvc_repo_{i}")
        start = time.perf_counter()
        run(["dvc", "repro", "build_corpus"], repo)
        build_s = time.perf_counter() - start
        start = time.perf_counter()
        run(["dvc", "repro", "validate_corpus"], repo)
        val_s = time.perf_counter() - start
        print(f"| {i + 1} | {build_s:.1f} | {val_s:.1f} | {val_s / build_s:.1%} |", flush=True)
        rows.append({"run": i + 1, "build_s": round(build_s, 1), "validate_s": round(val_s, 1)})
        rows[-1]["ratio"] = round(val_s / build_s, 3)
    return rows


def main() -> None:
    configure_environment()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-default", action="store_true")
    parser.add_argument("--dvc", action="store_true", help="also time the two stages under `dvc repro`")
    results_option(parser, "validation")
    args = parser.parse_args()
    record = Record("validation")
    figures: dict = {"pairs": []}
    work = Path(tempfile.mkdtemp(prefix="bench_validation_"))
    corpus = work / "corpus"
    params = params_file(work, {"corpus": {"out_dir": str(corpus)}})
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}; {work}"
    )
    print(
        "| run | build CLI s | validate CLI s | CLI ratio | build_corpus() s | validate_corpus() s | "
        "in-process ratio | frames s | GX import s | suites s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios, inner = [], []
    for i in range(1 if args.skip_default else args.repeats):
        build_s, proc = cli(["corpus", "build", "--params", str(params), "--no-progress"], REPO)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr[-3000:])
        val_s, result = validate(work, params, corpus, "default")
        t = result["timings_s"]
        suites = sum(v for k, v in t.items() if k.startswith("suite:"))
        build_inner = float(re.search(r" in ([0-9.]+) s ", proc.stderr).group(1))  # the CLI's own figure
        ratios.append(val_s / build_s)
        inner.append(t["elapsed_s"] / build_inner)
        figures["pairs"].append(
            {
                "pair": i + 1,
                "build_cli_s": round(build_s, 1),
                "validate_cli_s": round(val_s, 2),
                "cli_ratio": round(val_s / build_s, 3),
                "build_s": round(build_inner, 1),
                "validate_s": round(t["elapsed_s"], 2),
                "ratio": round(t["elapsed_s"] / build_inner, 3),
                "frames_s": round(t["frames"], 2),
                "gx_import_s": round(t["gx_import_wait"] + t["gx_import"], 2),
                "suites_s": round(suites, 2),
            }
        )
        print(
            f"| default {i + 1} | {build_s:.1f} | {val_s:.2f} | {val_s / build_s:.1%} | {build_inner:.1f} | "
            f"{t['elapsed_s']:.2f} | {t['elapsed_s'] / build_inner:.1%} | {t['frames']:.2f} | "
            f"{t['gx_import_wait'] + t['gx_import']:.2f} | {suites:.2f} |",
            flush=True,
        )
    if ratios:
        print(
            f"\nmedian validate / build: CLI {statistics.median(ratios):.1%}, in-process "
            f"{statistics.median(inner):.1%} over {len(ratios)} pairs; "
            f"files re-hashed: {result['stats']['n_files_checked']}"
        )
        figures["median_cli_ratio"] = round(statistics.median(ratios), 3)
        figures["median_ratio"] = round(statistics.median(inner), 3)
        figures["files_checked"] = result["stats"]["n_files_checked"]

    if args.dvc:
        figures["dvc"] = dvc_pairs(work, args.repeats)

    big = work / f"corpus_{args.rows}"
    replicate(corpus, big, args.rows)
    big_params = params_file(
        work, {"corpus": {"out_dir": str(big)}, "validation": {"file_check_fraction": 0.0}}
    )
    seconds, result = validate(work, big_params, big, "big")
    t = result["timings_s"]
    print(
        f"\n{args.rows} rows ({result['stats']['n_regions']} regions, {result['stats']['n_qa']} QA pairs), "
        f"no images: validate CLI {seconds:.1f} s "
        f"(in-process {t['elapsed_s']:.1f} s: frames {t['frames']:.1f} s, "
        f"GX import {t['gx_import_wait'] + t['gx_import']:.1f} s); success={result['success']}"
    )
    print(
        "slowest suites: "
        + ", ".join(
            f"{k[6:]} {v:.2f} s"
            for k, v in sorted(t.items(), key=lambda kv: -kv[1])
            if k.startswith("suite:")
        )[:400]
    )
    figures["rows"] = {
        "rows": args.rows,
        "regions": result["stats"]["n_regions"],
        "qa": result["stats"]["n_qa"],
        "validate_cli_s": round(seconds, 1),
        "validate_s": round(t["elapsed_s"], 1),
        "frames_s": round(t["frames"], 1),
        "gx_import_s": round(t["gx_import_wait"] + t["gx_import"], 1),
        "suites_s": {k[6:]: round(v, 2) for k, v in t.items() if k.startswith("suite:")},
        "success": result["success"],
    }
    record.write(figures, args.results)


if __name__ == "__main__":
    main()
