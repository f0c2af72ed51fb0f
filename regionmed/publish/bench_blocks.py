"""Blocks of BENCHMARKS.md, the pipeline's areas: one table per area, each from the results file its
script writes (the service's areas: service_blocks.py).

Every block starts with the run's provenance (``{run}``: command, date, commit, machine, conditions);
where the project has a budget for the figure, a derived sentence says whether the figure is
within it.
"""

from __future__ import annotations

from regionmed.publish.derive import listing, within
from regionmed.publish.render import Block

R = "benchmarks/results"
TRAIN = tuple(f"metrics/train_{p}.json" for p in ("global", "region", "joint", "baseline"))


def _corpus(data: dict) -> dict:
    rows, n = data["figures"]["rows"], data["figures"].get("default_images")
    default = min(rows, key=lambda r: (r["images"] != n, r["images"], r["workers"]))
    return {"default": default, "verdict": within(default["seconds"], 120)}


def _validation(data: dict) -> dict:
    f = data["figures"]
    dvc = "; ".join(
        f"{r['build_s']:.1f} s + {r['validate_s']:.1f} s ({r['ratio']:.1%})" for r in f.get("dvc", [])
    )
    return {
        "cli_verdict": within(f["median_cli_ratio"], 0.20),
        "inner_verdict": within(f["median_ratio"], 0.20),
        "dvc_text": f"As DVC stages in a clean copy (`dvc repro build_corpus`, then `dvc repro "
        "validate_corpus`; "
        f"DVC's start-up and dependency checks included), build + validate: {dvc}. "
        if dvc
        else "",
        "rows_verdict": within(f["rows"]["validate_cli_s"], 60),
    }


def _training(data: dict) -> dict:
    f = data["figures"]
    parts = "; ".join(
        f"{p['part']} {p['ms']:.1f} ms ({p['share']:.2f})" if p.get("ms") else f"{p['part']} {p['share']:.2f}"
        for p in f.get("parts", [])
    )
    bf16 = {r["model"]: r for r in f["rows"] if r["precision"] == "bf16"}
    region = bf16.get("RegionMed region phase (region + global loss)", {}).get("vs_baseline")
    joint = bf16.get("RegionMed joint (all losses)", {}).get("vs_text_levels")
    cost = [f"region phase {region:.2f}x the baseline"] if region else []
    cost += [f"joint {joint:.2f}x the baseline with the same text levels"] if joint else []
    worst = max(region or 0, joint or 0)
    verdict = f"{listing(cost)} (bf16): {within(worst, 1.15)} the budget of 1.15x." if cost else "–"
    return {
        "parts_text": f"Each piece alone on the same batch (bf16, forward + backward; ms and share of a "
        f"baseline step): {parts}."
        if parts
        else "",
        "verdict": verdict,
    }


TRAINING_TABLE = """{run}

Batch {figures/batch} (one real batch of the default corpus: {figures/regions} annotated regions, \
{figures/region_texts} distinct region texts incl. hard negatives and location-free queries); \
{figures/rounds} rounds of {figures/steps} timed steps per variant, the variants taking turns; median.

| precision | model | params | ms/step | pairs/s | vs baseline | vs baseline + text levels | GFLOP/step |
|---|---|---:|---:|---:|---:|---:|---:|
{ROWS}

{parts_text} Region path cost: {verdict}"""
TRAINING_ROW = (
    "| {precision} | {model} | {params_m:.3g|M} | {ms:.1f} | {pairs_per_s:.0f} | {vs_baseline:.2f|x} "
    "| {vs_text_levels:.2f|x} | {gflop:.1f} |"
)


def _stages(data: dict) -> dict:
    total = sum(data[f"train_{p}"]["seconds"] for p in ("global", "region", "joint", "baseline"))
    return {"total": total, "verdict": within(total, 600)}


def _mentions(data: dict) -> dict:
    mp = data["figures"].get("medpix")
    if not mp:
        return {"medpix_text": ""}
    labels = ", ".join(f"{label} ({n})" for label, n in mp["top_labels"][:7])
    return {
        "medpix_text": f"MedPix 2.0 sample captions (no truth): {mp['captions']:,} captions at "
        f"{mp['captions_per_s']:,.0f}/s; {mp['captions_with_a_finding']:.1%} name at least one finding; "
        f"{mp['finding_mentions_per_caption']:.2f} finding mentions per caption, {mp['negated_share']:.1%} "
        f"of "
        f"them negated, {mp['uncertain_share']:.1%} uncertain, {mp['with_side_share']:.1%} with a side; most "
        f"frequent labels {labels}."
    }


def _annotate(data: dict) -> dict:
    rows = [
        {
            "pointing": None,
            "cell_pointing": None,
            **r,
            "case": "every image boxed"
            if not r["hidden"]
            else f"boxes hidden on {r['hidden']:.0%} of train images",
        }
        for r in data["figures"]["rows"]
    ]
    slowest = max(r["seconds"] for r in rows)
    return {"rows": rows, "slowest": slowest, "verdict": within(slowest, 120)}


MENTION_ROW = (
    "| {S/recall:ci4} | {S/precision:ci4} | {S/negation_error_rate:ci4} | {S/side_accuracy:ci4} "
    "| {S/zone_accuracy:ci4} | {S/size_accuracy:ci4} |"
)

BENCH_BLOCKS = {
    "bench-corpus": Block(
        (f"{R}/corpus_build.json",),
        "{run}\n\n| images | workers | seconds | images/s | speed-up "
        "|\n|---:|---:|---:|---:|---:|\n{ROWS}\n\n"
        "The default corpus ({default/images:,} images, {figures/image_size} px) builds in "
        "{default/seconds:.1f} s with one worker: {verdict} the budget of 2 minutes on 2 cores.",
        rows="figures/rows",
        row="| {images:,} | {workers} | {seconds:.1f} | {images_per_s:,.0f} | {speedup:.2f}x |",
        derive=_corpus,
    ),
    "bench-validation": Block(
        (f"{R}/validation.json",),
        "{run}\n\nDefault corpus, each pair a `corpus build` then a `validate` (fresh processes, as DVC runs "
        "them); in-process: `build_corpus()` and `validate_corpus()` with GX's import, interpreter start "
        "excluded:\n\n| pair | build CLI s | validate CLI s | CLI ratio | build_corpus() s | "
        "validate_corpus() s | in-process ratio | frames s | GX import s | GX suites s |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n{ROWS}\n\n"
        "Median validate / build: {figures/median_cli_ratio:.1%} as processes ({cli_verdict} the budget of "
        "20%), {figures/median_ratio:.1%} in-process ({inner_verdict} it). {dvc_text}"
        "{figures/rows/rows:,} rows without image files (`file_check_fraction: 0`; {figures/rows/regions:,} "
        "regions, {figures/rows/qa:,} QA pairs): `validate` CLI {figures/rows/validate_cli_s:.1f} s "
        "(in-process {figures/rows/validate_s:.1f} s: derived frames {figures/rows/frames_s:.1f} s, GX "
        "import "
        "{figures/rows/gx_import_s:.1f} s), {rows_verdict} the budget of a minute on 2 cores.",
        rows="figures/pairs",
        row="| {pair} | {build_cli_s:.1f} | {validate_cli_s:.2f} | {cli_ratio:.1%} | {build_s:.1f} | "
        "{validate_s:.2f} | {ratio:.1%} | {frames_s:.2f} | {gx_import_s:.2f} | {suites_s:.2f} |",
        derive=_validation,
    ),
    "bench-training-step": Block(
        (f"{R}/training_step.json",), TRAINING_TABLE, rows="figures/rows", row=TRAINING_ROW, derive=_training
    ),
    "bench-training-step-vits": Block(
        (f"{R}/training_step_vits.json",),
        TRAINING_TABLE,
        rows="figures/rows",
        row=TRAINING_ROW,
        derive=_training,
    ),
    "bench-training-stages": Block(
        TRAIN,
        "global {train_global/seconds:.1f} s ({train_global/steps} steps), region "
        "{train_region/seconds:.1f} s "
        "({train_region/steps}), joint {train_joint/seconds:.1f} s ({train_joint/steps}), baseline "
        "{train_baseline/seconds:.1f} s ({train_baseline/steps}): {total:.0f} s in all, {verdict} the budget "
        "of 10 minutes on 2 cores",
        derive=_stages,
    ),
    "bench-stages-history": Block(
        (f"{R}/training_stages.json",),
        "{stages_text}: {figures/total_s:.0f} s in all",
        derive=lambda d: {
            "stages_text": ", ".join(f"{s['stage']} {s['seconds']:.1f} s" for s in d["figures"]["stages"])
        },
    ),
    "bench-bootstrap": Block(
        (f"{R}/bootstrap.json",),
        "{run}\n\n{figures/groups:,} groups of {figures/items_per_group} items, {figures/n_boot:,} "
        "resamples: "
        "a 95% interval and a paired difference in {figures/seconds_best:.3f} s (best of {figures/repeats}).",
    ),
    "bench-mentions": Block(
        (f"{R}/mentions.json",),
        "{run}\n\nAgainst the findings each report was written from (95% Wilson intervals):\n\n| reports | "
        "recall | precision | negation errors (share of finding mentions) | side | zone | size |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n| synthetic default ({figures/speed/reports:,}; "
        "{figures/synthetic/counts/true:,} findings; {figures/synthetic/counts/mentions:,} finding mentions) "
        + MENTION_ROW.replace("{S/", "{figures/synthetic/")
        + "\n| the same findings paraphrased ({figures/paraphrased/counts/mentions:,} finding mentions) "
        + MENTION_ROW.replace("{S/", "{figures/paraphrased/")
        + "\n\nSpeed on one core, wall / per CPU second: `extract_many` (nlp.pipe, batch 256) "
        "{figures/speed/batched_reports_per_s:,.0f} / {figures/speed/batched_reports_per_cpu_s:,.0f} "
        "reports/s; "
        "`extract` one report at a time {figures/speed/single_reports_per_s:,.0f} / "
        "{figures/speed/single_reports_per_cpu_s:,.0f} reports/s; one 1 MB report "
        "({figures/speed/one_mb_report_mentions:,} mentions) {figures/speed/one_mb_report_s:.1f} s / "
        "{figures/speed/one_mb_report_cpu_s:.1f} s.\n\n{medpix_text}",
        derive=_mentions,
    ),
    "bench-annotate": Block(
        (f"{R}/annotate_stage.json",),
        "{run}\n\n| localizer | case | `self_shifts` | images to annotate | regions added | wall s | CPU s | "
        "pointing | cell pointing |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n{ROWS}\n\n"
        "The slowest case took {slowest:.1f} s: {verdict} the budget of 2 minutes on 2 cores.",
        rows="rows",
        row="| {localizer} | {case} | {self_shifts} | {images_considered:,} | {regions_kept:,} | \
{seconds:.1f} | "
        "{cpu_seconds:.1f} | {pointing:.3f} | {cell_pointing:.3f} |",
        derive=_annotate,
    ),
}
