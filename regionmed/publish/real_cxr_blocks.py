"""Blocks of the real chest X-ray check (``benchmarks/real_cxr.py``) in docs/experiments.md.

Source: ``benchmarks/results/real_cxr.json``: the covid-cxr-dev set imported, annotated with the
default settings, trained at the default size and evaluated on its held-out images.
"""

from __future__ import annotations

from regionmed.publish.derive import fmt, listing
from regionmed.publish.experiment_blocks import paths
from regionmed.publish.render import Block

REAL_CXR = "benchmarks/results/real_cxr.json"


def _row(label: str, metric: str, prior: bool = False) -> str:
    """A table row: RegionMed with its interval, the baseline, the text prior (anatomy phrases only), and
    the paired differences RegionMed − baseline and RegionMed − text prior."""
    prior_value = "{R/" + metric.replace("grounding/", "prior/", 1) + ":v}" if prior else ""
    vs_prior = "{P/regionmed/" + metric + ":+ci}" if prior else ""
    ours = f"{{R/{metric}:ci}} | {{B/{metric}:v}} | {prior_value}"
    return f"| {label} | {ours} | {{D/{metric}:+ci}} | {vs_prior} |"


REAL_CXR_TABLE = paths(
    "\n".join(
        [
            "| metric ({F/n_held_out_images} held-out images; lungs: {lung_phrases} phrases on "
            "{F/images/held_out_with_lung_boxes} image) | RegionMed | global-only baseline | text prior "
            "| RegionMed − baseline | RegionMed − text prior |",
            "|---|---|---|---|---|---|",
            _row("lung pointing, lenient", "grounding/anatomy/lenient", prior=True),
            _row("lung pointing, strict", "grounding/anatomy/strict", prior=True),
            _row("lung box IoU > 0.3", "grounding/anatomy/iou>0.3"),
            _row("lung box IoU > 0.5", "grounding/anatomy/iou>0.5"),
            _row("lung laterality (the swapped side moves the peak across)", "grounding/anatomy/laterality"),
            _row("image→report R@5", "retrieval/i2t_R@5"),
            _row("report→image R@5", "retrieval/t2i_R@5"),
            _row("zero-shot macro AUROC", "zeroshot/macro_auroc"),
            _row("zero-shot presence vs absence", "zeroshot/presence_accuracy"),
            _row("zero-shot modality (chest X-ray / CT)", "zeroshot/modality_accuracy"),
        ]
    ),
    F="figures",
    R="figures/eval/regionmed",
    B="figures/eval/baseline",
    D="figures/eval/difference",
    P="figures/eval/vs_prior",
)

REAL_CXR_SUMMARY = paths(
    "The {M/reports} notes hold {M/finding_mentions} finding mentions ({M/reports_with_a_finding} notes "
    "name a finding that is present; {M/negated_share:.0%} of mentions negated, {M/uncertain_share:.0%} "
    "uncertain, {M/with_side_share:.0%} name a side, {M/with_zone_share:.0%} a zone and "
    "{M/bilateral_share:.0%} come from words naming both sides), most often {top_labels}. "
    "`annotate.localizer: {A/localizer}` resolved to `{A/resolved}`: {A/note}. The annotated corpus's "
    "boxes: {boxes}. Phases: {steps}. On the {S/images} boxed train images ({S/phrases} lung phrases, "
    "seen in training) RegionMed's lung pointing is {S/regionmed/grounding/anatomy/lenient:.2f} "
    "lenient / {S/regionmed/grounding/anatomy/strict:.2f} strict, IoU > 0.5 "
    "{S/regionmed/grounding/anatomy/iou>0.5:.2f}, laterality {S/regionmed/grounding/anatomy/laterality:.2f} "
    "(baseline {S/baseline/grounding/anatomy/lenient:.2f} / {S/baseline/grounding/anatomy/strict:.2f}, "
    "{S/baseline/grounding/anatomy/iou>0.5:.2f}, {S/baseline/grounding/anatomy/laterality:.2f}; the text "
    "prior {S/regionmed/prior/anatomy/lenient:.2f} / {S/regionmed/prior/anatomy/strict:.2f})",
    M="figures/mentions",
    A="figures/annotation",
    S="figures/train_boxed",
)


def _trained(trained: dict) -> str:
    """``; trained at <commit>, 64 + 69 + 277 s and the baseline 359 s`` (the cache's trained.json)."""
    commits = sorted({t["commit"] for t in trained.values()})
    seconds = " + ".join(str(trained[k]["seconds"]) for k in ("global", "region", "model"))
    return f"; trained at {listing(commits)}, {seconds} s and the baseline {trained['baseline']['seconds']} s"


def _derive(data: dict) -> dict:
    f = data["figures"]
    boxes = [
        f"{b['boxes']} {b['kind']} {b['origin']}"
        + (f" ({b['placed_by']})" if b["placed_by"] != "-" else "")
        + f" on {b['split']}"
        for b in f["boxes"]
    ]
    steps = f["steps"]
    changed = f" (shortened: {', '.join(f'{p} {n}' for p, n in f['steps_changed'].items())})"
    return {
        "top_labels": listing([f"{label} ({n})" for label, n in f["mentions"]["top_labels"].items()]),
        "boxes": listing(boxes) or "none",
        "steps": f"global {steps['global']}, region {steps['region']}, joint {steps['joint']}, baseline "
        f"{fmt(steps['baseline'], '') if steps['baseline'] else 'their sum'}"
        + (changed if f["steps_changed"] else "")
        + _trained(f["trained"]),
        "lung_phrases": f["eval"]["regionmed"]["grounding/anatomy/lenient"]["n"],
    }


REAL_CXR_BLOCKS = {
    "real-cxr-run": Block((REAL_CXR,), "{run}"),
    "real-cxr-table": Block((REAL_CXR,), REAL_CXR_TABLE, derive=_derive),
    "real-cxr-summary": Block((REAL_CXR,), REAL_CXR_SUMMARY, derive=_derive),
}
