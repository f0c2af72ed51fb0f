"""Blocks of README.md and docs/experiments.md: the evaluation's numbers and the experiments' tables.

The default run comes from ``metrics/eval.json`` (what ``dvc repro`` last wrote); earlier runs and
experiments from their results files in ``benchmarks/results/``. Templates use ``P/``-style
prefixes, expanded by :func:`paths`, so a table row reads like the table it renders.
"""

from __future__ import annotations

from regionmed.publish.derive import comparison
from regionmed.publish.render import Block

EVAL = "metrics/eval.json"
RESULTS = "benchmarks/results"
FCD, FUSION = f"{RESULTS}/default_run_fcd3671.json", f"{RESULTS}/default_run_3a08cc1.json"


def paths(template: str, **prefixes: str) -> str:
    """``{P/x}`` → ``{<prefix>/x}`` for each ``P=prefix``."""
    for short, full in prefixes.items():
        template = template.replace("{" + short + "/", "{" + full + "/")
    return template


# --- the current default run (metrics/eval.json) ---------------------------------------------------

README_ITEMS = (
    ("pointing", "grounding/full/lenient", "ci"),
    ("hard negatives", "hardneg/accuracy", "v"),
    ("image→report R@5", "retrieval/i2t_R@5", "v"),
    ("VQA", "vqa/accuracy", "v"),
    ("modality", "zeroshot/modality_accuracy", "v"),
    ("zero-shot finding AUROC", "zeroshot/macro_auroc", "v"),
)


def _readme_eval(data: dict) -> dict:
    c = comparison(data, README_ITEMS)
    return {
        "ahead": c["ahead"] or "nothing",
        "behind": f"; behind it on {c['behind']}" if c["behind"] else "",
        "even": f"; no clear difference on {c['even']}" if c["even"] else "",
    }


DEFAULT_RUN_TABLE = paths(
    """| metric | RegionMed | global-only baseline | difference |
|---|---|---|---|
| pointing, full phrase, lenient / strict | {R/grounding/full/lenient:ci} / {R/grounding/full/strict:v} \
| {B/grounding/full/lenient:v} / {B/grounding/full/strict:v} | {D/grounding/full/lenient:+ci} |
| pointing, location-free, lenient / strict | {R/grounding/locfree/lenient:ci} / \
{R/grounding/locfree/strict:v} | {B/grounding/locfree/lenient:v} / {B/grounding/locfree/strict:v} \
| {D/grounding/locfree/lenient:+ci} |
| hard negatives, all / subtle | {R/hardneg/accuracy:v} / {R/hardneg/accuracy_subtle:v} \
| {B/hardneg/accuracy:v} / {B/hardneg/accuracy_subtle:v} | {D/hardneg/accuracy:+ci} |
| image→report R@5 / report→image R@5 | {R/retrieval/i2t_R@5:v} / {R/retrieval/t2i_R@5:v} \
| {B/retrieval/i2t_R@5:v} / {B/retrieval/t2i_R@5:v} | {D/retrieval/i2t_R@5:+ci} / {D/retrieval/t2i_R@5:+v} |
| zero-shot macro AUROC, all / subtle | {R/zeroshot/macro_auroc:ci} / {R/zeroshot/macro_auroc_subtle:v} \
| {B/zeroshot/macro_auroc:ci} / {B/zeroshot/macro_auroc_subtle:v} | {D/zeroshot/macro_auroc:+ci} |
| zero-shot modality accuracy | {R/zeroshot/modality_accuracy:v} | {B/zeroshot/modality_accuracy:v} \
| {D/zeroshot/modality_accuracy:+ci} |
| VQA | {R/vqa/accuracy:v} | {B/vqa/accuracy:v} | {D/vqa/accuracy:+ci} |""",
    R="regionmed",
    B="baseline",
    D="difference",
)

# --- the run at fcd3671, and cell_path direct (fcd3671) vs fusion (3a08cc1) -------------------------


def _fcd_derive(data: dict) -> dict:
    e = data["figures"]["eval"]
    locfree, prior = e["regionmed"]["grounding/locfree/lenient"], e["regionmed"]["prior/locfree/lenient"]
    return {"chance_r5": 5 / e["n_images"], "locfree_vs_prior": locfree["value"] / prior["value"]}


FCD_TABLE = paths(
    """| metric | RegionMed | global-only baseline | no-image text prior |
|---|---|---|---|
| pointing, full phrase, lenient / strict | {R/grounding/full/lenient:ci} / {R/grounding/full/strict:ci} \
| {B/grounding/full/lenient:v} / {B/grounding/full/strict:v} | {R/prior/full/lenient:v} / \
{R/prior/full/strict:v} |
| pointing, full phrase, subtle findings (lenient) | {R/grounding/full/lenient_subtle:v} \
| {B/grounding/full/lenient_subtle:v} | |
| pointing, location-free ("a small nodule"), lenient / strict | {R/grounding/locfree/lenient:ci} / \
{R/grounding/locfree/strict:v} | {B/grounding/locfree/lenient:v} / {B/grounding/locfree/strict:v} \
| {R/prior/locfree/lenient:v} / {R/prior/locfree/strict:v} |
| hard negatives (true phrase above all its swaps), all / subtle | {R/hardneg/accuracy:v} / \
{R/hardneg/accuracy_subtle:v} | {B/hardneg/accuracy:v} / {B/hardneg/accuracy_subtle:v} | |
| image→report R@5 (chance {chance_r5:.3f}) | {R/retrieval/i2t_R@5:ci} | {B/retrieval/i2t_R@5:v} | |
| zero-shot macro AUROC, all / subtle findings | {A/regionmed:ci} / {R/zeroshot/macro_auroc_subtle:v} \
| {A/baseline:ci} / {B/zeroshot/macro_auroc_subtle:v} | |
| zero-shot modality accuracy | {R/zeroshot/modality_accuracy:v} | {B/zeroshot/modality_accuracy:v} | |
| VQA (logistic head on frozen embeddings) | {R/vqa/accuracy:v} | {B/vqa/accuracy:v} | |""",
    R="figures/eval/regionmed",
    B="figures/eval/baseline",
    A="figures/auroc",
)

FCD_PAIRED = paths(
    "Paired against the text prior: full phrase lenient {P/regionmed/grounding/full/lenient:+ci}, strict "
    "{P/regionmed/grounding/full/strict:+ci}; location-free lenient "
    "{P/regionmed/grounding/locfree/lenient:+ci} "
    "({locfree_vs_prior:.2f}x the prior). RegionMed − baseline: R@5 {D/retrieval/i2t_R@5:+ci}, macro AUROC "
    "{figures/auroc/difference:+ci}, modality {D/zeroshot/modality_accuracy:+ci}, VQA {D/vqa/accuracy:+ci} "
    "(the "
    'AUROC interval resamples images and recomputes the macro AUROC of each resample); "no X" prompts on '
    "images without X (zero-shot presence, absent findings): {R/zeroshot/presence_accuracy_absent:v} vs "
    "{B/zeroshot/presence_accuracy_absent:v}",
    P="figures/eval/vs_prior",
    D="figures/eval/difference",
    R="figures/eval/regionmed",
    B="figures/eval/baseline",
)


def _stage_seconds(data: dict) -> dict:
    return {
        f"{stem}_seconds": sum(data[stem]["figures"]["train_seconds"].values())
        for stem in ("default_run_fcd3671", "default_run_3a08cc1")
    }


CELL_PATH_TABLE = paths(
    """| metric | `direct` (fcd3671) | `fusion` (3a08cc1) |
|---|---|---|
| pointing, full phrase, lenient / strict | {D/grounding/full/lenient:v} / {D/grounding/full/strict:v} \
| {F/grounding/full/lenient:v} / {F/grounding/full/strict:v} |
| pointing, location-free, lenient | {D/grounding/locfree/lenient:v} | {F/grounding/locfree/lenient:v} |
| hard negatives | {D/hardneg/accuracy:v} | {F/hardneg/accuracy:v} |
| zero-shot macro AUROC (the same run's baseline) | {D/zeroshot/macro_auroc:v} ({DB/zeroshot/macro_auroc:v}) \
| {F/zeroshot/macro_auroc:v} ({FB/zeroshot/macro_auroc:v}) |
| zero-shot modality accuracy | {D/zeroshot/modality_accuracy:v} | {F/zeroshot/modality_accuracy:v} |
| image→report R@5 | {D/retrieval/i2t_R@5:ci} | {F/retrieval/i2t_R@5:ci} |
| the four training stages, s (their own timers) | {default_run_fcd3671_seconds:.0f} \
| {default_run_3a08cc1_seconds:.0f} |""",
    D="default_run_fcd3671/figures/eval/regionmed",
    DB="default_run_fcd3671/figures/eval/baseline",
    F="default_run_3a08cc1/figures/eval/regionmed",
    FB="default_run_3a08cc1/figures/eval/baseline",
)

# --- progressive vs joint-from-start ---------------------------------------------------------------

JFS_DIRECT = paths(
    """| metric | progressive 200 + 300 + 900 | joint from start, 1400 |
|---|---|---|
| pointing, full phrase, lenient / strict | {P/grounding/full/lenient:ci} / {P/grounding/full/strict:ci} \
| {J/grounding/full/lenient:ci} / {J/grounding/full/strict:ci} |
| pointing, location-free, lenient / strict | {P/grounding/locfree/lenient:ci} / \
{P/grounding/locfree/strict:v} \
| {J/grounding/locfree/lenient:ci} / {J/grounding/locfree/strict:v} |
| hard negatives | {P/hardneg/accuracy:ci} | {J/hardneg/accuracy:ci} |
| image→report R@5 | {P/retrieval/i2t_R@5:ci} | {J/retrieval/i2t_R@5:ci} |
| laterality | {P/grounding/laterality:ci} | {J/grounding/laterality:ci} |
| zero-shot modality / macro AUROC | {P/zeroshot/modality_accuracy:v} / {P/zeroshot/macro_auroc:v} \
| {J/zeroshot/modality_accuracy:v} / {J/zeroshot/macro_auroc:v} |
| VQA | {P/vqa/accuracy:v} | {J/vqa/accuracy:v} |""",
    P="default_run_fcd3671/figures/eval/regionmed",
    J="joint_from_start/figures/direct",
)
JFS_FUSION = paths(
    """| metric | progressive 200 + 300 + 900 | joint from start, 1400 |
|---|---|---|
| pointing, full phrase, lenient / strict | {P/grounding/full/lenient:ci} / {P/grounding/full/strict:ci} \
| {J/grounding/full/lenient:ci} / {J/grounding/full/strict:ci} |
| pointing, location-free, lenient | {P/grounding/locfree/lenient:ci} | {J/grounding/locfree/lenient:ci} |
| hard negatives | {P/hardneg/accuracy:ci} | {J/hardneg/accuracy:ci} |
| image→report R@5 | {P/retrieval/i2t_R@5:ci} | {J/retrieval/i2t_R@5:ci} |
| zero-shot modality / macro AUROC | {P/zeroshot/modality_accuracy:v} / {P/zeroshot/macro_auroc:v} \
| {J/zeroshot/modality_accuracy:v} / {J/zeroshot/macro_auroc:v} |""",
    P="default_run_3a08cc1/figures/eval/regionmed",
    J="joint_from_start/figures/fusion",
)
JFS_BEFORE = paths(
    "Before location-free queries ({B/commit}), {B/steps}: pointing {P/grounding/full/lenient:v} / "
    "{P/grounding/full/strict:v} vs {J/grounding/full/lenient:v} / {J/grounding/full/strict:v}, "
    "location-free "
    "{P/grounding/locfree/lenient:v} vs {J/grounding/locfree/lenient:v}, hard negatives "
    "{P/hardneg/accuracy:v} "
    "vs {J/hardneg/accuracy:v}, R@5 {P/retrieval/i2t_R@5:v} vs {J/retrieval/i2t_R@5:v}, modality / AUROC "
    "{P/zeroshot/modality_accuracy:v} / {P/zeroshot/macro_auroc:v} vs {J/zeroshot/modality_accuracy:v} / "
    "{J/zeroshot/macro_auroc:v}; phases {P/seconds} s vs {J/seconds} s on a quiet machine",
    B="figures/before_locfree",
    P="figures/before_locfree/progressive",
    J="figures/before_locfree/joint_from_start",
)


def _effects(data: dict) -> dict:
    rows = []
    for row in data["figures"]["rows"]:
        effect = ", ".join(f"{e['metric']} {e['before']:.2f} → {e['after']:.2f}" for e in row["effects"])
        rows.append({**row, "effect": effect + (f"; {row['note']}" if row.get("note") else "")})
    return {"effect_rows": rows}


MEDPIX_TABLE = paths(
    """| metric ({figures/n_test} test images) | RegionMed | baseline | RegionMed − baseline |
|---|---|---|---|
| image→report R@5 (chance {C/retrieval/i2t_R@5}) | {R/retrieval/i2t_R@5:ci} | {B/retrieval/i2t_R@5:v} \
| {D/retrieval/i2t_R@5:+ci} |
| report→image R@5 | {R/retrieval/t2i_R@5:ci} | {B/retrieval/t2i_R@5:v} | {D/retrieval/t2i_R@5:+ci} |
| zero-shot macro AUROC | {R/zeroshot/macro_auroc:ci} | {B/zeroshot/macro_auroc:v} | \
{D/zeroshot/macro_auroc:+ci} |
| zero-shot modality (CT/MR, chance {C/zeroshot/modality_accuracy}) / plane ({C/zeroshot/plane_accuracy}) \
/ body part ({C/zeroshot/body_part_accuracy}) | {R/zeroshot/modality_accuracy:v2} / \
{R/zeroshot/plane_accuracy:v2} / {R/zeroshot/body_part_accuracy:v2} | {B/zeroshot/modality_accuracy:v2} / \
{B/zeroshot/plane_accuracy:v2} / {B/zeroshot/body_part_accuracy:v2} | plane {D/zeroshot/plane_accuracy:+ci} |
| VQA | {R/vqa/accuracy:v} | {B/vqa/accuracy:v} | {D/vqa/accuracy:+ci} |""",
    C="figures/chance",
    R="figures/regionmed",
    B="figures/baseline",
    D="figures/difference",
)

EXPERIMENT_BLOCKS = {
    "readme-eval": Block(
        (EVAL,),
        "on the default run (`dvc repro`, {n_images} test images, 95% bootstrap intervals) RegionMed is "
        "ahead of the global-only baseline on {ahead}{behind}{even}",
        derive=_readme_eval,
    ),
    "eval-default-run": Block((EVAL,), DEFAULT_RUN_TABLE),
    "eval-vs-prior": Block(
        (EVAL,),
        paths(
            "RegionMed − the text-only prior, paired: full phrase lenient {P/grounding/full/lenient:+ci}, "
            "strict "
            "{P/grounding/full/strict:+ci}; location-free lenient {P/grounding/locfree/lenient:+ci}",
            P="vs_prior/regionmed",
        ),
    ),
    "eval-baseline-auroc-then-now": Block(
        (EVAL, FCD),
        "{default_run_fcd3671/figures/eval/baseline/zeroshot/macro_auroc:v} at fcd3671, "
        "{eval/baseline/zeroshot/macro_auroc:v} now",
    ),
    "eval-fcd3671": Block((FCD,), "{run}\n\n" + FCD_TABLE, derive=_fcd_derive),
    "eval-fcd3671-paired": Block((FCD,), FCD_PAIRED, derive=_fcd_derive),
    "cell-path": Block((FCD, FUSION), CELL_PATH_TABLE, derive=_stage_seconds),
    "joint-from-start-run": Block((f"{RESULTS}/joint_from_start.json",), "{run}"),
    "joint-from-start-direct": Block((FCD, f"{RESULTS}/joint_from_start.json"), JFS_DIRECT),
    "joint-from-start-fusion": Block((FUSION, f"{RESULTS}/joint_from_start.json"), JFS_FUSION),
    "joint-from-start-before": Block((f"{RESULTS}/joint_from_start.json",), JFS_BEFORE),
    "loss-ablations": Block(
        (f"{RESULTS}/loss_ablations.json",),
        "{run}\n\n| change (commit) | effect |\n|---|---|\n{ROWS}",
        rows="effect_rows",
        row="| {change} ({commit}) | {effect} |",
        derive=_effects,
    ),
    "medpix-eval": Block((f"{RESULTS}/medpix_eval.json",), "{run}\n\n" + MEDPIX_TABLE),
}
