"""Real chest X-rays with real notes: the development set ../shared/data/covid-cxr-dev, end to end.

Imports the set (corpus.source jsonl; its README: 151 images, real clinical notes, 5 images with
right- and left-lung boxes, no finding box), annotates it with the default settings (the
train_annotator stage, then annotate_regions, ``annotate.localizer: auto``), trains at the default
size (global -> region -> joint, and the global-only baseline) and evaluates both with the evaluation
suite on the held-out images (the val and test splits: no phase trains on them or picks a model by
them; the test split alone is 4 images). Reported: mention statistics of the notes, the annotated
corpus's boxes by origin and placement, lung pointing, box IoU and laterality (the anatomy grounding
keys) on the boxed held-out images and, as a training-set figure, on the boxed train images, and
RegionMed vs the baseline vs the text-only prior with paired bootstrap intervals over held-out
images. The set is tiny (about 20 held-out images, one with lung boxes): intervals are wide, and
nothing is tuned to it.

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/real_cxr.py --out .state/real_cxr

The folder is the cache (corpus, tokenizer, models; <out>/trained.json records the commit each model
was trained at); ``--steps joint=300`` shortens a phase (stated in the results). Without the data
folder it says so and exits 2. Figures: benchmarks/results/real_cxr.json (--results), rendered into
docs/experiments.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from regionmed.env import configure_environment
from regionmed.errors import EXIT_BAD_INPUT
from regionmed.publish.record import Record, git_commit, results_option

configure_environment()

# what the table shows: per model with its interval, paired RegionMed - baseline and - the text prior
METRICS = (
    "grounding/anatomy/lenient",
    "grounding/anatomy/strict",
    "grounding/anatomy/iou>0.3",
    "grounding/anatomy/iou>0.5",
    "grounding/anatomy/laterality",
    "retrieval/i2t_R@5",
    "retrieval/t2i_R@5",
    "zeroshot/macro_auroc",
    "zeroshot/presence_accuracy",
    "zeroshot/modality_accuracy",
)
PRIORS = ("prior/anatomy/lenient", "prior/anatomy/strict", "chance/anatomy/lenient", "chance/anatomy/strict")
# the images no phase trains on: val (only logged during training, never used to pick a model) and test;
# the set's test split alone is 4 images
HELD_OUT = ("val", "test")
TRAINED = (("global", None), ("region", "global"), ("model", "region"), ("baseline", None))


def mention_statistics(reports: list[str]) -> dict:
    """What the notes say, read by the annotation engine's extractor (counts only, no text)."""
    from regionmed.annotation.mentions import MentionExtractor

    per_report = MentionExtractor().extract_many(reports)
    mentions = [m for ms in per_report for m in ms]
    findings = [m for m in mentions if m.kind == "finding"]
    n = max(len(findings), 1)
    return {
        "reports": len(reports),
        "reports_with_a_finding": sum(
            any(m.kind == "finding" and not m.negated for m in ms) for ms in per_report
        ),
        "mentions": len(mentions),
        "finding_mentions": len(findings),
        "anatomy_mentions": len(mentions) - len(findings),
        "negated_share": round(sum(m.negated for m in findings) / n, 3),
        "uncertain_share": round(sum(m.uncertain for m in findings) / n, 3),
        "with_side_share": round(sum(m.side is not None for m in findings) / n, 3),
        "with_zone_share": round(sum(m.zone is not None for m in findings) / n, 3),
        "bilateral_share": round(sum(m.bilateral for m in findings) / n, 3),
        "top_labels": dict(Counter(m.label for m in findings).most_common(6)),
    }


def boxes_by_origin(df) -> list[dict]:
    """Regions of the annotated corpus by split, kind, origin and what placed them."""
    counts = Counter(
        (split, r["kind"], r.get("origin") or "given", r.get("placed_by") or "-")
        for split, regions in zip(df["split"], df["regions"], strict=True)
        for r in regions
    )
    return [
        {"split": s, "kind": k, "origin": o, "placed_by": p, "boxes": n}
        for (s, k, o, p), n in sorted(counts.items())
    ]


def build(params, out: Path, log) -> Path:
    """The imported corpus, then the default annotation of it (train_annotator, annotate_regions)."""
    from regionmed.annotation import annotator_stage
    from regionmed.annotation import stage as annotate_stage
    from regionmed.corpus.build import build_corpus

    source, corpus = Path(params.corpus.out_dir), Path(params.annotate.out_dir)
    if not (source / "manifest.parquet").is_file():
        build_corpus(params, source, progress=False)
    if not (corpus / "manifest.parquet").is_file():
        log(annotator_stage.run(params, scratch=out / "annotator_training", log=log).summary_line())
        annotate_stage.run(params, corpus_dir=source, log=log)
    return corpus


def train_all(params, corpus: Path, out: Path, log) -> dict:
    """The four phases (cached: a model folder with config.json is kept); seconds per phase."""
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.texts import corpus_texts
    from regionmed.training.train import train

    tokenizer = out / "tokenizer"
    if not tokenizer.is_dir():
        train_wordpiece_tokenizer(corpus_texts(corpus), params.model.text.vocab_size, tokenizer)
    trained_file = out / "trained.json"
    trained = json.loads(trained_file.read_text()) if trained_file.is_file() else {}
    phase_of = {"model": "joint"}
    for folder, start in TRAINED:
        if (out / folder / "config.json").is_file():
            continue
        began = time.perf_counter()
        phase = phase_of.get(folder, folder)
        train(params, phase, corpus, tokenizer, out / folder, start and out / start, out / "checkpoints")
        trained[folder] = {"commit": git_commit(), "seconds": round(time.perf_counter() - began)}
        trained_file.write_text(json.dumps(trained, indent=1))
        log(f"{phase}: {trained[folder]['seconds']} s")
    return trained


def evaluate(params, corpus: Path, out: Path) -> tuple[dict, dict]:
    """Both models on the held-out images (the evaluation suite), and lung grounding on the boxed train
    images."""
    import pandas as pd

    from regionmed.corpus.schema import read_manifest
    from regionmed.evaluation.anatomy_grounding import anatomy_grounding, given_anatomy_regions
    from regionmed.evaluation.inference import Encoder, load_pixels
    from regionmed.evaluation.suite import evaluate_model
    from regionmed.model.io import load_model

    e, channels = params.evaluate, params.model.vision.channels
    test = pd.concat([read_manifest(corpus, s) for s in HELD_OUT], ignore_index=True)
    train = read_manifest(corpus, "train")
    train = train.sample(n=min(len(train), e.train_sample), random_state=params.seed).reset_index(drop=True)
    pixels, train_pixels = load_pixels(corpus, test, channels), load_pixels(corpus, train, channels)
    boxed = train[train["regions"].map(lambda rs: any(r["kind"] == "anatomy" for r in rs))].reset_index(
        drop=True
    )
    results, seen = {}, {}
    for name, folder in (("regionmed", "model"), ("baseline", "baseline")):
        model, tokenizer = load_model(out / folder)
        enc = Encoder(model, tokenizer, e.batch_size)
        results[name] = evaluate_model(
            enc, test, pixels, train, train_pixels, tuple(e.retrieval_ks), e.vqa_method, params.seed
        )
        lungs = anatomy_grounding(
            enc, given_anatomy_regions(boxed), load_pixels(corpus, boxed, channels), train
        )
        seen[name] = {
            m: round(float(v.mean()), 3) for m, (v, _) in lungs.items() if not m.startswith("chance/")
        }
    seen["images"], seen["phrases"] = len(boxed), len(given_anatomy_regions(boxed))
    return results, seen


def summarise(results: dict, params) -> dict:
    """Per model, each metric with its interval; paired RegionMed - baseline and model - text prior."""
    from regionmed.evaluation.summary import summarise as summarise_evaluation

    e = params.evaluate
    full = summarise_evaluation(results, e.n_boot, e.alpha, params.seed)
    return {
        "regionmed": {m: full["regionmed"].get(m) for m in (*METRICS, *PRIORS)},
        "baseline": {m: full["baseline"].get(m) for m in METRICS},
        "difference": {m: full["difference"].get(m) for m in METRICS},
        "vs_prior": {k: v for k, v in full["vs_prior"].items() if "/grounding/anatomy/" in k},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(".state/real_cxr"))
    ap.add_argument("--data", type=Path, default=Path("../shared/data/covid-cxr-dev"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--steps", nargs="*", default=[], metavar="PHASE=N", help="fewer steps for a phase")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared machine)")
    results_option(ap, "real_cxr")
    args = ap.parse_args()
    if not (args.data / "records.jsonl").is_file():
        print(f"real_cxr: skipped: no development set at {args.data} (records.jsonl)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    record = Record("real_cxr")

    import torch
    import yaml

    from regionmed.corpus.schema import read_manifest
    from regionmed.params import Params, deep_merge

    torch.set_num_threads(args.threads)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    steps = {p: int(n) for p, _, n in (s.partition("=") for s in args.steps)}
    override = {
        "corpus": {"source": "jsonl", "importer": {"path": str(args.data.resolve() / "records.jsonl")}},
        "annotate": {
            "out_dir": str(out / "corpus"),
            "annotator_dir": str(out / "annotator"),
            "summary_file": str(out / "annotation.json"),
            "preview_file": str(out / "annotation.png"),
        },
        "phases": {p: {"steps": n} for p, n in steps.items()},
    }
    override["corpus"]["out_dir"] = str(out / "source")
    params = Params.model_validate(deep_merge(yaml.safe_load(args.params.read_text()), override))

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    started = time.perf_counter()
    corpus = build(params, out, log)
    df = read_manifest(corpus)
    annotation = json.loads((out / "annotation.json").read_text())
    trained = train_all(params, corpus, out, log)
    results, seen = evaluate(params, corpus, out)
    test = df[df["split"].isin(HELD_OUT)]
    figures = {
        "images": {
            **{s: int((df["split"] == s).sum()) for s in ("train", "val", "test")},
            "chest_xray": int((df["modality"] == "chest_xray").sum()),
            "held_out_with_lung_boxes": int(
                test["regions"].map(lambda rs: any(r["kind"] == "anatomy" for r in rs)).sum()
            ),
        },
        "mentions": mention_statistics(list(df["report"])),
        "annotation": {
            k: annotation.get(k)
            for k in ("localizer", "resolved", "note", "images_to_place", "images_annotated")
        },
        "boxes": boxes_by_origin(df),
        "steps": {p: params.phases[p].steps for p in ("global", "region", "joint", "baseline")},
        "steps_changed": steps,
        "trained": trained,
        "eval": summarise(results, params),
        "train_boxed": seen,
        "held_out": list(HELD_OUT),
        "n_held_out_images": len(test),
        "seconds": round(time.perf_counter() - started),
    }
    print(json.dumps(figures, indent=1))
    record.write(figures, args.results, conditions=f"--threads {args.threads}, OMP_NUM_THREADS=1 nice -n 15")


if __name__ == "__main__":
    main()
