"""Blocks of docs/experiments.md on seed variance: RegionMed vs the global-only baseline over training seeds.

Source: ``benchmarks/results/seed_variance.json`` (benchmarks/seed_variance.py): per model and metric the
mean and sd over seeds, and the paired difference with its two-level bootstrap interval over seeds and
test images (regionmed/evaluation/seed_bootstrap.py).
"""

from __future__ import annotations

from regionmed.publish.derive import flat_settings
from regionmed.publish.render import Block

SEEDS = "benchmarks/results/seed_variance.json"
ARM = "regionmed"  # the default settings; other arms get their own rows when measured


def _mean_sd(stats: dict) -> str:
    return f"{stats['estimate']:.3f} ± {stats['sd']:.3f}"


def _derive(data: dict) -> dict:
    f = data["figures"]
    models, diffs = f["models"], f["vs_baseline"][ARM]
    rows = []
    for metric, diff in diffs.items():
        rows.append(
            {
                "metric": metric,
                "baseline": _mean_sd(models["baseline"][metric]),
                "regionmed": _mean_sd(models[ARM][metric]),
                "per_seed": " / ".join(f"{x:+.3f}".replace("-", "−") for x in diff["per_seed"]),
                "difference": {"value": diff["estimate"], "low": diff["low"], "high": diff["high"]},
            }
        )
    trained = ", ".join(sorted(set(f["trained_at"].values()))) or "–"
    return {
        "rows": rows,
        "arm_rows": _arm_rows(f),
        "seed_list": ", ".join(map(str, f["seeds"])),
        "trained": trained,
    }


def _arm_rows(f: dict) -> list[dict]:
    """One row per arm and metric: the arm's mean ± sd and its difference with the default, paired."""
    rows = []
    for arm, diffs in f["vs_default"].items():
        override = ", ".join(f"{k}: {v}" for k, v in flat_settings(f["arms"][arm]).items())
        for metric, diff in diffs.items():
            rows.append(
                {
                    "arm": f"{arm} ({override})",
                    "metric": metric,
                    "value": _mean_sd(f["models"][arm][metric]),
                    "difference": {"value": diff["estimate"], "low": diff["low"], "high": diff["high"]},
                }
            )
    return rows


SEED_BLOCKS = {
    "seed-variance-run": Block((SEEDS,), "{run} The models were trained at {trained}.", derive=_derive),
    "seed-variance": Block(
        (SEEDS,),
        "| metric ({figures/n_test_images} test images, seeds {seed_list}) | baseline, mean ± sd "
        "| RegionMed, mean ± sd | difference per seed | RegionMed − baseline, over seeds and images |\n"
        "|---|---|---|---|---|\n{ROWS}",
        rows="rows",
        row="| {metric} | {baseline} | {regionmed} | {per_seed} | {difference:+ci} |",
        derive=_derive,
    ),
    "seed-variance-arms": Block(
        (SEEDS,),
        "| arm (settings beside the default) | metric | arm, mean ± sd "
        "| arm − default, over seeds and images |\n"
        "|---|---|---|---|\n{ROWS}",
        rows="arm_rows",
        row="| {arm} | {metric} | {value} | {difference:+ci} |",
        derive=_derive,
    ),
}
