"""Wall time of the four training stages of the default pipeline, as `dvc repro` runs them.

    python benchmarks/bench_stages.py [--params params.yaml]

Runs each stage's own command (`python -m regionmed train phase …`, the same as `dvc.yaml`) one
after another into a temporary folder, so no DVC output or lock is touched; needs the corpus and
tokenizer of `dvc repro tokenizer`. Prints seconds per stage (process start-up, training,
validation, export) and the total, against the pipeline's 10-minute budget for training; writes
them to benchmarks/results/training_stages.json (``--results``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from regionmed.publish.record import Record, results_option

REPO = Path(__file__).resolve().parents[1]
STAGES = (("global", None), ("region", "global"), ("joint", "region"), ("baseline", None))
BUDGET_S = 600


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--params", default="params.yaml")
    results_option(parser, "training_stages")
    args = parser.parse_args()
    record = Record("training_stages")
    stages = []
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    total = 0.0
    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="bench_stages_") as tmp:
        out = Path(tmp)
        for phase, init in STAGES:
            cmd = [
                sys.executable,
                "-m",
                "regionmed",
                "train",
                "phase",
                phase,
                "--params",
                args.params,
                "--out",
                str(out / phase),
                "--metrics",
                str(out / f"{phase}.json"),
                "--log-dir",
                str(out / "dvclive" / phase),
                "--state-dir",
                str(out / "state"),
            ]
            if init:
                cmd += ["--init-from", str(out / init)]
            started = time.perf_counter()
            subprocess.run(
                cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            seconds = time.perf_counter() - started
            total += seconds
            stages.append({"stage": f"pretrain_{phase}", "seconds": round(seconds, 1)})
            print(f"pretrain_{phase:<9} {seconds:7.1f} s", flush=True)
    verdict = "within" if total <= BUDGET_S else "OVER"
    print(
        f"four stages   {total:7.1f} s  ({verdict} the {BUDGET_S} s budget); load average after: "
        f"{os.getloadavg()[0]:.2f}"
    )
    record.write({"stages": stages, "total_s": round(total, 1), "budget_s": BUDGET_S}, args.results)


if __name__ == "__main__":
    main()
