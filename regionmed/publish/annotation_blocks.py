"""Blocks of the annotation experiment: does training on engine-annotated regions pay?

Sources: ``benchmarks/annotation_pays.py``'s results (the default size, and the earlier reduced
budget), ``benchmarks/annotate_medpix.py``'s and ``benchmarks/bench_annotate.py``'s. The tables are
in docs/experiments.md; docs/annotation.md gives the summary, README.md the verdict only.
"""

from __future__ import annotations

import re

from regionmed.publish.derive import fmt, listing, verdicts
from regionmed.publish.experiment_blocks import paths
from regionmed.publish.render import Block

PAYS = "benchmarks/results/annotation_pays.json"
PAYS_SMALL = "benchmarks/results/annotation_pays_small.json"
MEDPIX = "benchmarks/results/annotate_medpix.json"
STAGE = "benchmarks/results/annotate_stage.json"
MENTIONS = "benchmarks/results/mentions.json"
ARM_ORDER = ("A", "Bp", "Bs", "Bz", "Bz2", "Bzw", "Bzc", "Bzl", "Bzl2", "C", "D")
PAIR = re.compile(r"^([A-Za-z0-9]+)-([A-Za-z0-9]+)$")
ARM_METRICS = (
    "grounding/full/lenient",
    "grounding/locfree/lenient",
    "hardneg/accuracy",
    "grounding/full/strict",
    "retrieval/i2t_R@5",
    "zeroshot/macro_auroc",
)
DIFF_METRICS = ARM_METRICS[:3] + ARM_METRICS[-1:]
QUALITY = ("pointing", "cell_pointing", "iou>0.3", "iou>0.5")
VERDICT_ITEMS = (
    ("full-phrase pointing", "grounding/full/lenient"),
    ("location-free pointing", "grounding/locfree/lenient"),
    ("hard negatives", "hardneg/accuracy"),
    ("zero-shot AUROC", "zeroshot/macro_auroc"),
)


def _cells(metrics: dict, names, spec: str) -> str:
    return " | ".join(fmt(metrics.get(m), spec) for m in names)


def _tables(data: dict) -> dict:
    """Rows of the three tables (box quality, arms, paired differences) in the arms' order."""
    f = data["figures"]
    arms = sorted(f["values"], key=lambda a: ARM_ORDER.index(a) if a in ARM_ORDER else len(ARM_ORDER))
    name = f.get("arms", {})
    value_rows = [f"| {a} {name.get(a, '')} | {_cells(f['values'][a], ARM_METRICS, 'v')} |" for a in arms]
    pairs = [k for k in f if PAIR.match(k)]
    diff_rows = [f"| {k.replace('-', ' − ')} | {_cells(f[k], DIFF_METRICS, '+ci')} |" for k in pairs]
    quality_rows = []
    for arm in sorted(f.get("box_quality", {}), key=arms.index):
        q = f["box_quality"][arm]
        recall = q["all"].get("recall", {}).get("value")
        note = "" if recall in (None, 1.0) else f" (recall {fmt(recall)})"
        quality_rows.append(f"| {arm} {name.get(arm, '')}{note} | all | {_cells(q['all'], QUALITY, 'ci')} |")
        if "subtle" in q:
            sizes = " | ".join(
                " / ".join(fmt(q[b].get(m)) for b in ("subtle", "small", "large")) for m in QUALITY
            )
            quality_rows.append(f"| | subtle / small / large | {sizes} |")
    return {
        "value_rows": "\n".join(value_rows),
        "diff_rows": "\n".join(diff_rows),
        "quality_rows": "\n".join(quality_rows),
    }


def _shares(data: dict) -> dict:
    """Bzl's gains as a share of what boxes on every image (C) add over A, and the verdict words."""
    f = data["figures"]
    share = {
        key: f["Bzl-A"][m]["value"] / f["C-A"][m]["value"]
        for key, m in (
            ("share_full", "grounding/full/lenient"),
            ("share_locfree", "grounding/locfree/lenient"),
        )
    }
    v = verdicts(f, "Bzl-A", VERDICT_ITEMS)
    gains, losses = listing(v["up"]), listing(v["down"])
    verdict = f"beats training on the boxed 10% alone on {gains}" if gains else "gains nothing measurable"
    if losses:
        verdict += f", at a cost in {losses}"
    return {**share, "verdict": verdict}


QUALITY_HEAD = """| localizer (arm) | size | pointing | cell pointing | IoU > 0.3 | IoU > 0.5 |
|---|---|---|---|---|---|"""
ARMS_HEAD = """| arm | full phrase | location-free | hard negatives | full phrase, strict | i2t R@5 | \
zero-shot macro AUROC |
|---|---|---|---|---|---|---|"""
DIFF_HEAD = """| pair | full phrase | location-free | hard negatives | zero-shot AUROC |
|---|---|---|---|---|"""

PAYS_RESULT = paths(
    "Against boxes on 10% alone (A), one self-training round bounded by the report's location words "
    "(Bzl, the default settings) changes full-phrase pointing by {F/Bzl-A/grounding/full/lenient:+ci} "
    "({share_full:.0%} of the {F/C-A/grounding/full/lenient:+v} that boxes on every image add), "
    "location-free pointing by {F/Bzl-A/grounding/locfree/lenient:+ci} ({share_locfree:.0%}), hard "
    "negatives by {F/Bzl-A/hardneg/accuracy:+ci} (boxes on every image: {F/C-A/hardneg/accuracy:+v}) and "
    "zero-shot AUROC by {F/Bzl-A/zeroshot/macro_auroc:+ci} (boxes on every image: "
    "{F/C-A/zeroshot/macro_auroc:+ci}). Boxes on every image against that round (C − Bzl): full phrase "
    "{F/C-Bzl/grounding/full/lenient:+ci}, location-free {F/C-Bzl/grounding/locfree/lenient:+ci}, hard "
    "negatives {F/C-Bzl/hardneg/accuracy:+ci}. A second round (Bzl2 − Bzl): full phrase "
    "{F/Bzl2-Bzl/grounding/full/lenient:+ci}, hard negatives {F/Bzl2-Bzl/hardneg/accuracy:+ci}, while its "
    "boxes point into the right cell more often (cell pointing {F/box_quality/Bzl2/all/cell_pointing:v} "
    "vs {F/box_quality/Bzl/all/cell_pointing:v}). Without the location words (Bz − A): full phrase "
    "{F/Bz-A/grounding/full/lenient:+ci}, location-free {F/Bz-A/grounding/locfree/lenient:+ci}, hard "
    "negatives {F/Bz-A/hardneg/accuracy:+ci}",
    F="figures",
)

SUMMARY = paths(
    """- Stage time on the 4,000-image default with boxes hidden on 90% of the train images: \
{S/1/seconds:.1f} s with `prior`, {S/3/seconds:.1f} s with `self` ({S/4/seconds:.1f} s with \
`self_shifts: 2`); the table is in [BENCHMARKS.md](../BENCHMARKS.md#annotation-stage).
- Boxes against the hidden truth: `self` with the default settings (`self_select: sized`, \
`self_location_words: true`; a model trained on the boxed 10%) puts the box centre inside the true box \
for {Q/Bzl/all/pointing:ci} of the hidden findings, and in a patch cell that overlaps the true box (the \
evaluation's lenient rule) for {Q/Bzl/all/cell_pointing:ci} (IoU > 0.3: {Q/Bzl/all/iou>0.3:v}, > 0.5: \
{Q/Bzl/all/iou>0.5:v}); without the location words {Q/Bz/all/pointing:v} / {Q/Bz/all/cell_pointing:v}; \
`prior` {Q/Bp/all/pointing:v} / {Q/Bp/all/cell_pointing:v}.
- Training on them, against training on the boxed 10% alone (paired 95% intervals, \
{P/split/test_images} test images): one `self` round with the default settings changes full-phrase \
pointing by {P/Bzl-A/grounding/full/lenient:+ci} ({share_full:.0%} of what boxes on every image add), \
location-free pointing by {P/Bzl-A/grounding/locfree/lenient:+ci}, hard negatives by \
{P/Bzl-A/hardneg/accuracy:+ci} and zero-shot AUROC by {P/Bzl-A/zeroshot/macro_auroc:+ci} (boxes on every \
image: {P/C-A/zeroshot/macro_auroc:+ci}). Without the location-word bound: full-phrase pointing \
{P/Bz-A/grounding/full/lenient:+ci}, hard negatives {P/Bz-A/hardneg/accuracy:+ci}; `prior` regions: \
full-phrase pointing {P/Bp-A/grounding/full/lenient:+ci}. All arms: \
[docs/experiments.md](experiments.md#training-on-annotated-regions).
- MedPix 2.0 sample: {M/annotation/prior/mentions_per_image:.2f} mentions per caption, \
{M/annotation/prior/negated_share:.0%} negated; prior-annotated regions changed zero-shot AUROC by \
{M/evaluation/prior-as_built/zeroshot/macro_auroc:+ci} and VQA by \
{M/evaluation/prior-as_built/vqa/accuracy:+ci} \
against training on the captions alone; grounding has no truth there.""",
    S="annotate_stage/figures/rows",
    Q="annotation_pays/figures/box_quality",
    P="annotation_pays/figures",
    M="annotate_medpix/figures",
)


def _summary(data: dict) -> dict:
    return _shares(data["annotation_pays"])


MEDPIX_RESULT = paths(
    "prior-annotated {T/images_annotated} train images ({T/regions} regions). Prior regions against the "
    "corpus as built: zero-shot macro AUROC {V/as_built/zeroshot/macro_auroc:v} → "
    "{V/prior/zeroshot/macro_auroc:v} "
    "({E/zeroshot/macro_auroc:+ci}), VQA {V/as_built/vqa/accuracy:v} → {V/prior/vqa/accuracy:v} "
    "({E/vqa/accuracy:+ci}), i2t R@5 {V/as_built/retrieval/i2t_R@5:v} → {V/prior/retrieval/i2t_R@5:v} "
    "({E/retrieval/i2t_R@5:+ci}), t2i R@5 {V/as_built/retrieval/t2i_R@5:v} → {V/prior/retrieval/t2i_R@5:v} "
    "({E/retrieval/t2i_R@5:+ci}), modality accuracy {V/as_built/zeroshot/modality_accuracy:v2} → "
    "{V/prior/zeroshot/modality_accuracy:v2} ({E/zeroshot/modality_accuracy:+ci}). The annotation itself: "
    "{A/images_with_mentions:,} of {A/images_considered:,} captions with at least one mention, "
    "{A/mentions:,} mentions ({A/mentions_per_image:.2f} per caption), negated share {A/negated_share:.3f}, "
    "uncertain {A/uncertain_share:.3f}; the prior placed {A/regions_kept:,} findings on "
    "{A/images_annotated:,} images and refused {A/cases/unplaced:,} placements whose words say nowhere "
    "({A/seconds_total:.1f} s)",
    T="figures/train_split",
    V="figures/evaluation/values",
    E="figures/evaluation/prior-as_built",
    A="figures/annotation/prior",
)

MENTIONS_SUMMARY = paths(
    "on the {F/speed/reports:,} synthetic default reports, whose text is written from the true findings, "
    "recall is {S/recall:ci4}, precision {S/precision:ci4}, side, zone and size {S/side_accuracy:v4}, "
    "{S/zone_accuracy:v4} and {S/size_accuracy:v4}, and the share of negation errors "
    "{S/negation_error_rate:ci4}; "
    "a paraphrased copy of the same findings (synonyms, lobe abbreviations, other size words, negation "
    "after the finding) gives recall {P/recall:ci4} and precision {P/precision:ci4}{medpix}. Speed on one "
    "core: {F/speed/batched_reports_per_cpu_s:,.0f} reports per CPU second, a 1 MB report in "
    "{F/speed/one_mb_report_cpu_s:.1f} CPU seconds",
    S="figures/synthetic",
    P="figures/paraphrased",
    F="figures",
)


def _mentions_medpix(data: dict) -> dict:
    mp = data["figures"].get("medpix")
    if not mp:
        return {"medpix": ""}
    return {
        "medpix": f". On the {mp['captions']:,} MedPix 2.0 captions (no truth) "
        f"{mp['captions_with_a_finding']:.0%} name at least one finding, {mp['negated_share']:.0%} of "
        f"finding mentions are negated and {mp['uncertain_share']:.0%} uncertain"
    }


ANNOTATION_BLOCKS = {
    "mentions-summary": Block((MENTIONS,), MENTIONS_SUMMARY, derive=_mentions_medpix),
    "container-image-size": Block(
        ("benchmarks/results/container.json",),
        "{image_mb:,.0f} MB",
        derive=lambda d: {"image_mb": d["figures"]["image_bytes"] / 1e6},
    ),
    "annotation-pays-run": Block((PAYS,), "{run}"),
    "annotation-box-quality": Block((PAYS,), QUALITY_HEAD + "\n{quality_rows}", derive=_tables),
    "annotation-arms": Block((PAYS,), ARMS_HEAD + "\n{value_rows}", derive=_tables),
    "annotation-pairs": Block((PAYS,), DIFF_HEAD + "\n{diff_rows}", derive=_tables),
    "annotation-pays-result": Block((PAYS,), PAYS_RESULT, derive=_shares),
    "annotation-pays-small": Block(
        (PAYS_SMALL,),
        "{run}\n\n" + ARMS_HEAD + "\n{value_rows}\n\n" + DIFF_HEAD + "\n{diff_rows}",
        derive=_tables,
    ),
    "annotate-medpix": Block((MEDPIX,), "{run}\n\n" + MEDPIX_RESULT + "."),
    "annotation-summary": Block((PAYS, STAGE, MEDPIX), SUMMARY, derive=_summary),
    "readme-annotation": Block((PAYS,), "{verdict}", derive=_shares),
}
