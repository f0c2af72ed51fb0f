"""Bootstrap speed: a 95% interval and a paired difference over 1000 resamples of 1000 groups.

    python benchmarks/bench_bootstrap.py [--groups 1000] [--n-boot 1000] [--repeats 3]

Prints the best of ``repeats`` runs (the machine is shared and noisy) and writes them to
benchmarks/results/bootstrap.json (``--results``).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from regionmed.evaluation.bootstrap import bootstrap_ci, paired_difference_ci
from regionmed.publish.record import Record, results_option


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    results_option(parser, "bootstrap")
    args = parser.parse_args()
    record = Record("bootstrap")
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(args.groups), 3)
    values = rng.random(len(groups))
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        bootstrap_ci(values, groups, n_boot=args.n_boot)
        paired_difference_ci(values, values[::-1], groups, n_boot=args.n_boot)
        times.append(time.perf_counter() - start)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"python {platform.python_version()}"
    )
    print(
        f"{args.groups} groups x 3 items, {args.n_boot} resamples: CI + paired CI in {min(times):.3f} s "
        f"(best of {args.repeats})"
    )
    figures = {"groups": args.groups, "items_per_group": 3, "n_boot": args.n_boot, "repeats": args.repeats}
    record.write({**figures, "seconds_best": round(min(times), 3)}, args.results)


if __name__ == "__main__":
    main()
