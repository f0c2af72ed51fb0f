"""The fault suite as a measurement: each test of tests/faults/ (and, with ``--container``, the dockerd
restart of tests/serving/test_container.py), its outcome and duration, and what each measured (how long
until the service or the flow was back, the step a killed phase resumed from, what a full disk's
message said). docs/reliability.md renders it.

    python benchmarks/bench_faults.py [--container] [--results PATH]

The tests run with one OpenMP thread each (OMP_NUM_THREADS=1), as the suite runs in CI; the tests write
their figures to the file ``$REGIONMED_FAULT_MEASURES`` names (tests/helpers/faults.py). The figures go
to ``--results`` (default benchmarks/results/faults.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from regionmed.publish.record import Record, results_option

REPO_ROOT = Path(__file__).resolve().parents[1]
MEASURES_ENV = "REGIONMED_FAULT_MEASURES"  # tests/helpers/faults.py: the tests append their figures there
CONTAINER_TEST = (
    "tests/serving/test_container.py::test_the_container_comes_back_by_itself_after_dockerd_restarts"
)


def outcomes(junit: Path) -> list[dict]:
    """Each test case of a JUnit XML report: its pytest node id, outcome and seconds."""
    cases = []
    for case in ET.parse(junit).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                reason = (found.get("message") or "")[:200]
                break
        else:
            reason = ""
        row = {
            "test": f"{module}.py::{case.get('name')}",
            "outcome": outcome,
            "seconds": float(case.get("time")),
        }
        if reason and outcome == "skipped":
            row["reason"] = reason
        cases.append(row)
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--container", action="store_true", help="also restart dockerd under a running container")
    results_option(ap, "faults")
    args = ap.parse_args(argv)
    record = Record("faults")
    with tempfile.TemporaryDirectory(prefix="regionmed-faults-") as tmp:
        junit, measures = Path(tmp) / "junit.xml", Path(tmp) / "measures.jsonl"
        targets = ["tests/faults", *([CONTAINER_TEST] if args.container else [])]
        env = {**os.environ, MEASURES_ENV: str(measures), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", *targets, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
            cwd=REPO_ROOT,
            env=env,
            check=False,
        )
        seconds = round(time.perf_counter() - start, 1)
        figures = {
            "tests": outcomes(junit),
            "measures": [json.loads(line) for line in measures.read_text().splitlines()]
            if measures.exists()
            else [],
            "suite_seconds": seconds,
            "pytest_exit": done.returncode,
        }
    record.write(figures, args.results)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
