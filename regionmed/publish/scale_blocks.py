"""Blocks of docs/scaling.md on the pipeline at scale: a synthetic corpus end to end on a Dask cluster.

Source: ``benchmarks/results/scale_run.json`` (benchmarks/scale_run.py): per stage and worker count the
wall time and the peak RSS of the largest process, the disk of each output, DVC's own times, and the
issue's budgets beside what was measured.
"""

from __future__ import annotations

from regionmed.publish.render import Block

SCALE = "benchmarks/results/scale_run.json"
SIDE = "benchmarks/results/stages_side_by_side.json"


def _derive(data: dict) -> dict:
    f = data["figures"]
    counts = sorted({r["workers"] for r in f["stages"]}, reverse=True)
    by_stage: dict[str, dict] = {}
    for r in f["stages"]:
        row = by_stage.setdefault(r["stage"], {"stage": r["stage"], "rss": 0})
        row[r["workers"]] = r["seconds"]
        row["rss"] = max(row["rss"], r["peak_rss_mb"])
    rows = [
        {
            "stage": row["stage"],
            "times": " | ".join(f"{row[w]:,.1f}" if w in row else "–" for w in counts),
            "rss": row["rss"],
        }
        for row in by_stage.values()
    ]
    b = f["budgets"]
    checks = [
        (
            "build + annotate + validate",
            b["build_annotate_validate_s_measured"],
            b["build_annotate_validate_s"],
            "s",
        ),
        ("largest process", b["peak_rss_mb_measured"], b["peak_rss_mb"], "MB"),
        ("`dvc status`, nothing changed", b["dvc_status_s_measured"], b["dvc_status_s"], "s"),
    ]
    budget_text = "; ".join(
        f"{name} {got:,.1f} {unit} ({'within' if got <= limit else 'OVER'} {limit:,} {unit})"
        for name, got, limit, unit in checks
    )
    equal = [
        k.removeprefix("outputs_equal_with_").replace("_workers", " worker(s)")
        for k, v in f.items()
        if k.startswith("outputs_equal_with_") and v
    ]
    disk = ", ".join(f"`{k}` {v['mb']:,.0f} MB in {v['files']:,} files" for k, v in f["disk"].items())
    return {
        "header": " | ".join(f"{w} worker{'s' if w > 1 else ''} s" for w in counts),
        "align": "|".join("---:" for _ in counts),
        "rows": rows,
        "budget_text": budget_text,
        "equal_text": ", ".join(equal) or "none",
        "disk_text": disk,
    }


SCALE_BLOCKS = {
    "stages-side-by-side": Block(
        (SIDE,),
        "{run}\n\nThe default settings, `{figures/revs/old}` (before the cluster and shards) against "
        "`{figures/revs/new}`, best of {figures/repeats} alternating runs:\n\n"
        "| stage | before s | after s | after / before |\n|---|---:|---:|---:|\n{ROWS}\n"
        "| in all | {figures/total_old_s:.1f} | {figures/total_new_s:.1f} | {figures/total_ratio:.2f} |",
        rows="figures/rows",
        row="| {stage} | {old_s:.1f} | {new_s:.1f} | {ratio:.2f} |",
    ),
    "scale-run": Block(
        (SCALE,),
        "{run}\n\n{figures/images:,} synthetic images ({figures/summary/per_split/train:,} train, "
        "{figures/summary/per_split/val:,} val, {figures/summary/per_split/test:,} test), "
        "{figures/steps_per_phase} steps per training phase, {figures/n_boot} bootstrap resamples:\n\n"
        "| stage | {header} | peak RSS of the largest process, MB |\n|---|{align}|---:|\n{ROWS}\n\n"
        "Budgets: {budget_text}. Outputs of build, annotate and validate byte-identical (their `dvc.lock` "
        "hashes) with: {equal_text}. Disk: {disk_text}. DVC: `dvc status` {figures/dvc/status_s:.1f} s "
        "(median of 3), `dvc add` of a copy of the corpus {figures/dvc/add_corpus_copy_s:.1f} s, "
        "`dvc push` of every output to a folder remote {figures/dvc/push_all_s:.1f} s.",
        rows="rows",
        row="| {stage} | {times} | {rss:,} |",
        derive=_derive,
    ),
}
