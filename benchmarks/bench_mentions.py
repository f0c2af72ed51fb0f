"""Mention extraction: accuracy where the truth is known, and speed on one core.

    python benchmarks/bench_mentions.py [--n-images 4000] [--results out.json] [--medpix PATH]

1. Accuracy: the synthetic default corpus's reports (the same phantoms and words as
   `python -m regionmed corpus build` with params.yaml), scored against the findings each report was
   written from (regionmed.annotation.mention_scoring): recall, precision, negation errors, side /
   zone / size read correctly, each with a 95% Wilson interval. Then the same findings paraphrased
   (synonyms, lobe abbreviations, other size words, "X is not seen"): see `paraphrase`.
2. Speed, pinned to one CPU core: reports/s of extract_many (nlp.pipe, batch 256) and of extract one
   at a time, the time to build the extractor, and one 1 MB report.
3. With the MedPix 2.0 sample (skipped when absent): finding mentions per caption, negated and
   uncertain shares, the most frequent labels (no truth there: descriptive only).

The figures go to ``--results`` (default benchmarks/results/mentions.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np

from regionmed.annotation.mention_scoring import score_mentions, synthetic_truth
from regionmed.annotation.mentions import MentionExtractor
from regionmed.corpus.reports import describe
from regionmed.corpus.synthetic import generate_phantom
from regionmed.corpus.synthetic_source import TEXT_STREAM
from regionmed.params import load_params
from regionmed.publish.record import Record, results_option

REPO = Path(__file__).resolve().parents[1]
MEDPIX = REPO.parent / "shared" / "data" / "medpix2-sample"


def synthetic_reports(n_images: int | None) -> tuple[list[str], list, list[str]]:
    """Reports, true findings and paraphrased reports of the default synthetic corpus (first n_images)."""
    params = load_params(REPO / "params.yaml")
    syn = params.corpus.synthetic
    reports, truths, paraphrased = [], [], []
    for index in range(n_images or syn.n_images):
        phantom = generate_phantom(index, params.seed, params.corpus.image_size, syn)
        text = describe(
            phantom,
            np.random.default_rng([params.seed, index, TEXT_STREAM]),
            syn.negatives_per_report,
            syn.absent_presence_questions,
        )
        reports.append(text.report)
        truths.append(synthetic_truth(phantom))
        present = {f.finding.label for f in phantom.findings}
        absent = [f.label for f in phantom.modality.findings if f.label not in present][
            : syn.negatives_per_report
        ]
        paraphrased.append(paraphrase(truths[-1], absent, np.random.default_rng([params.seed, index, 99])))
    return reports, truths, paraphrased


def _timed(fn) -> tuple[object, float, float]:
    """Result, wall seconds and this process's CPU seconds (the fair figure on a shared machine)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


# Paraphrased reports: the same true findings written in words the corpus's templates never use
# (synonyms, lobe abbreviations, size words, negation after the finding). A stress test of reading
# beyond the corpus's own language; the words are this benchmark's, not real reports'.
SYNONYMS = {
    "pleural effusion": ["pleural effusion", "pleural fluid"],
    "kidney cyst": ["kidney cyst", "renal cyst"],
    "liver lesion": ["liver lesion", "hepatic lesion"],
    "hemorrhage": ["hemorrhage", "haemorrhage", "hematoma"],
    "consolidation": ["consolidation", "airspace opacity"],
    "brain lesion": ["brain lesion", "cerebral lesion"],
    "nodule": ["nodule", "pulmonary nodule"],
    "mass": ["mass", "mass lesion"],
    "cardiomegaly": ["cardiomegaly"],
}
SIZES = {"subtle": ["tiny", "subtle", "faint"], "small": ["small"], "large": ["large", "sizable"]}
GRADES = {"subtle": ["mild"], "small": ["moderate"], "large": ["marked", "severe"]}
LOBES = {
    ("right", "upper"): "RUL",
    ("right", "middle"): "RML",
    ("right", "lower"): "RLL",
    ("left", "upper"): "LUL",
    ("left", "lower"): "LLL",
}
FRAMES = [
    "There is {p}.",
    "{P} is present.",
    "{P} is identified.",
    "Findings include {p}.",
    "{P} is again seen.",
]
NEGATIVE_FRAMES = [
    "No {f}.",
    "{F} is not seen.",
    "Negative for {f}.",
    "No evidence of {f}.",
    "{F} is absent.",
    "There is no {f}.",
]


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def paraphrase(truth, absent: list[str], rng) -> str:
    sentences = []
    for t in truth:
        name = _pick(rng, SYNONYMS[t.label])
        size = _pick(rng, (GRADES if t.label == "cardiomegaly" else SIZES)[t.size])
        if t.side is None:
            phrase = f"{size} {name}"
        elif t.zone is None:  # an organ: "in the left kidney", "in the right lobe of the liver"
            organ = "kidney" if "kidney" in t.label else "lobe of the liver"
            phrase = f"a {size} {name} in the {t.side} {organ}"
        elif (t.side, t.zone) in LOBES and rng.random() < 0.5:
            phrase = f"a {size} {name} in the {LOBES[t.side, t.zone]}"
        else:
            place = _pick(rng, ["zone", "lobe", "region"])
            phrase = _pick(
                rng,
                [
                    f"a {size} {name} in the {t.side} {t.zone} {place}",
                    f"a {size} {t.side} {t.zone} {place} {name}",
                ],
            )
        sentences.append(_pick(rng, FRAMES).format(p=phrase, P=phrase[:1].upper() + phrase[1:]))
    for label in absent:
        f = _pick(rng, SYNONYMS[label])
        sentences.append(_pick(rng, NEGATIVE_FRAMES).format(f=f, F=f[:1].upper() + f[1:]))
    return " ".join(sentences) if sentences else "Normal study."


def speed(extractor: MentionExtractor, reports: list[str]) -> dict:
    _, batched, batched_cpu = _timed(lambda: extractor.extract_many(reports))
    single_n = min(len(reports), 1000)
    _, single, single_cpu = _timed(lambda: [extractor.extract(r) for r in reports[:single_n]])
    big = " ".join(reports)[: 1 << 20]
    big += "x" * ((1 << 20) - len(big))
    big_mentions, big_s, big_cpu = _timed(lambda: extractor.extract(big))
    return {
        "reports": len(reports),
        "batched_reports_per_s": len(reports) / batched,
        "batched_reports_per_cpu_s": len(reports) / batched_cpu,
        "single_reports_per_s": single_n / single,
        "single_reports_per_cpu_s": single_n / single_cpu,
        "one_mb_report_s": big_s,
        "one_mb_report_cpu_s": big_cpu,
        "one_mb_report_mentions": len(big_mentions),
    }


def medpix_summary(extractor: MentionExtractor, root: Path) -> dict:
    records = json.loads((root / "Descriptions.json").read_text())
    captions = [str(r.get("Description", {}).get("Caption") or "") for r in records]
    t0 = time.perf_counter()
    found = extractor.extract_many(captions)
    seconds = time.perf_counter() - t0
    findings = [m for ms in found for m in ms if m.kind == "finding"]
    return {
        "captions": len(captions),
        "captions_per_s": len(captions) / seconds,
        "captions_with_a_finding": sum(any(m.kind == "finding" for m in ms) for ms in found) / len(captions),
        "finding_mentions_per_caption": len(findings) / len(captions),
        "negated_share": sum(m.negated for m in findings) / max(len(findings), 1),
        "uncertain_share": sum(m.uncertain for m in findings) / max(len(findings), 1),
        "with_side_share": sum(m.side is not None for m in findings) / max(len(findings), 1),
        "top_labels": Counter(m.label for m in findings).most_common(15),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-images", type=int, default=None, help="default: params.yaml's corpus size")
    results_option(parser, "mentions", "--json")
    parser.add_argument("--medpix", type=Path, default=MEDPIX)
    parser.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    args = parser.parse_args()
    record = Record("mentions")
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores (using {len(os.sched_getaffinity(0))}), "
        f"python {platform.python_version()}"
    )
    t0 = time.perf_counter()
    extractor = MentionExtractor()
    build_s = time.perf_counter() - t0
    reports, truths, paraphrased = synthetic_reports(args.n_images)
    score = score_mentions(truths, extractor.extract_many(reports))
    result = {
        "build_extractor_s": build_s,
        "synthetic": score,
        "paraphrased": score_mentions(truths, extractor.extract_many(paraphrased)),
        "speed": speed(extractor, reports),
    }
    for key, title in (("synthetic", "synthetic default"), ("paraphrased", "paraphrased synthetic")):
        sc = result[key]
        print(
            f"{title}: {len(reports)} reports, {sc['counts']['true']} true findings, "
            f"{sc['counts']['mentions']} finding mentions"
        )
        for name in (
            "recall",
            "precision",
            "negation_error_rate",
            "side_accuracy",
            "zone_accuracy",
            "size_accuracy",
        ):
            s = sc[name]
            print(
                f"  {name:<20} {s['value']:.4f}  95% CI [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}]  "
                f"({s['k']}/{s['n']})"
            )
    sp = result["speed"]
    print(
        f"speed (one core; wall / per CPU second): build {build_s:.2f} s; extract_many "
        f"{sp['batched_reports_per_s']:.0f} / {sp['batched_reports_per_cpu_s']:.0f} reports/s; one by one "
        f"{sp['single_reports_per_s']:.0f} / {sp['single_reports_per_cpu_s']:.0f} reports/s; 1 MB report "
        f"{sp['one_mb_report_s']:.2f} / {sp['one_mb_report_cpu_s']:.2f} s "
        f"({sp['one_mb_report_mentions']} mentions)"
    )
    if (args.medpix / "Descriptions.json").is_file():
        result["medpix"] = mp = medpix_summary(extractor, args.medpix)
        print(
            f"medpix: {mp['captions']} captions, {mp['captions_per_s']:.0f}/s; "
            f"with a finding {mp['captions_with_a_finding']:.3f}; "
            f"findings/caption {mp['finding_mentions_per_caption']:.2f}; "
            f"negated {mp['negated_share']:.3f}; uncertain {mp['uncertain_share']:.3f}; "
            f"with side {mp['with_side_share']:.3f}"
        )
        print(f"  top labels: {mp['top_labels']}")
    else:
        print(f"medpix: skipped ({args.medpix} not found)")
    record.write(result, args.results)


if __name__ == "__main__":
    main()
