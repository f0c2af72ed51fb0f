"""The ``evaluate`` stage: candidate vs global-only baseline on one split, with bootstrap intervals.

Writes ``metrics/eval.json`` (DVC metrics: per model each headline metric with its 95% interval,
the paired difference candidate − baseline, and grounding minus the text-only prior), plot data
under ``metrics/plots/`` and ``reports/eval.md`` with a gallery of grounding heatmaps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regionmed.atomic import atomic_dir, atomic_write_text
from regionmed.cluster import dask_client
from regionmed.corpus.images import read_png
from regionmed.corpus.schema import MANIFEST_FILE, read_manifest
from regionmed.errors import require
from regionmed.evaluation.headline import HEADLINE, KEY_METRICS
from regionmed.evaluation.inference import Encoder, cluster_image_embeddings, cluster_pixels
from regionmed.evaluation.report import (
    draw_heatmap_overlay,
    plot_recall_at_k,
    plot_roc,
    write_markdown_report,
    write_plot_rows,
)
from regionmed.evaluation.suite import ModelEvaluation, evaluate_model
from regionmed.evaluation.summary import summarise
from regionmed.inference.image_tasks import worker_model
from regionmed.model.io import CONFIG_FILE
from regionmed.params_pipeline import PipelineParams

MODELS = ("regionmed", "baseline")


@dataclass(frozen=True)
class EvaluationResult:
    summary: dict  # what evaluate.metrics_file holds

    def summary_line(self) -> str:
        return f"evaluated {self.summary['n_images']} images in {self.summary['seconds']} s"


def run(params: PipelineParams, corpus_dir: str | Path | None = None, log=print) -> EvaluationResult:
    """The stage: read the split and both models, score them (``evaluate_model``), summarise with
    intervals (:func:`~regionmed.evaluation.summary.summarise`, pure), write the outputs; log the key
    metrics of both models. The images are read and embedded on the cluster (``cluster``), the texts,
    grounding and metrics computed here."""
    e = params.evaluate
    corpus_dir = Path(corpus_dir or params.stage_corpus)
    require(corpus_dir / MANIFEST_FILE, "the annotated corpus manifest", "annotate_regions")
    require(Path(e.candidate) / CONFIG_FILE, "the candidate model", "pretrain_joint")
    require(Path(e.baseline) / CONFIG_FILE, "the baseline model", "pretrain_baseline")
    test = read_manifest(corpus_dir, e.split)
    train = read_manifest(corpus_dir, "train")
    if len(train) > e.train_sample:
        train = train.sample(n=e.train_sample, random_state=params.seed).reset_index(drop=True)
    channels = params.model.vision.channels
    results: dict[str, ModelEvaluation] = {}
    seconds = {}
    with dask_client(params.cluster) as client:
        pixels = cluster_pixels(client, corpus_dir, test, channels, e.batch_size)  # grounding, regions
        for name, path in (("regionmed", e.candidate), ("baseline", e.baseline)):
            started = time.perf_counter()
            test_emb, train_emb = cluster_image_embeddings(
                client, path, corpus_dir, (test, train), channels, e.batch_size, label=name
            )
            model, tokenizer = worker_model(path)  # an in-process worker's own: loaded once
            results[name] = evaluate_model(
                Encoder(model, tokenizer, e.batch_size),
                test,
                pixels,
                train,
                ks=tuple(e.retrieval_ks),
                vqa_method=e.vqa_method,
                seed=params.seed,
                image_emb=test_emb,
                train_emb=train_emb,
            )
            seconds[name] = round(time.perf_counter() - started, 1)
    summary = summarise(results, e.n_boot, e.alpha, params.seed)
    summary["n_images"] = len(test)
    summary["seconds"] = seconds
    _write_outputs(params, summary, results, corpus_dir, test)
    for metric in KEY_METRICS:
        log(f"{metric}: " + " vs ".join(f"{m} {summary[m].get(metric, {}).get('value')}" for m in MODELS))
    return EvaluationResult(summary)


def _write_outputs(
    params: PipelineParams, summary: dict, results: dict[str, ModelEvaluation], corpus_dir: Path, test
) -> None:
    e = params.evaluate
    metrics_file, plots, report = Path(e.metrics_file), Path(e.plots_dir), Path(e.report_file)
    for p in (metrics_file.parent, plots, report.parent):
        p.mkdir(parents=True, exist_ok=True)
    atomic_write_text(metrics_file, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    recalls = {
        name: {k: summary[name][f"retrieval/i2t_R@{k}"]["value"] for k in e.retrieval_ks} for name in MODELS
    }
    plot_recall_at_k(recalls, plots / "recall_at_k.csv")
    scores, targets, classes = results["regionmed"].details["zeroshot_scores"]
    plot_roc(scores, targets, classes, plots / "roc_regionmed.csv")
    rows = [
        {
            "model": name,
            "size": b,
            "accuracy": summary[name].get(f"zeroshot/presence_accuracy_{b}", {}).get("value"),
        }
        for name in MODELS
        for b in ("subtle", "small", "large", "absent")
    ]
    write_plot_rows(rows, plots / "accuracy_by_size.csv")
    gallery = write_gallery(results, corpus_dir, test, report.parent / "eval_gallery", e.gallery_size)
    table = [
        {
            "metric": m,
            "regionmed": summary["regionmed"].get(m, {}).get("value"),
            "baseline": summary["baseline"].get(m, {}).get("value"),
            "difference": summary["difference"].get(m, {}).get("value"),
        }
        for m in HEADLINE
    ]
    cis = {
        m: {
            "regionmed": _pair(summary["regionmed"].get(m)),
            "baseline": _pair(summary["baseline"].get(m)),
            "difference": _pair(summary["difference"].get(m)),
        }
        for m in HEADLINE
    }
    notes = [
        (
            f"{len(test)} {e.split} images; 95% intervals: bootstrap over images ({e.n_boot} resamples); "
            "difference = RegionMed − baseline, paired on the same items."
        )
    ]
    for key, d in summary["vs_prior"].items():
        if d["value"] is not None:
            notes.append(
                f"{key} minus the text-only prior: {d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
            )
    notes.append(
        "No-image baselines on the same phrases: "
        + ", ".join(
            f"{m} {summary['regionmed'][m]['value']:.3f}"
            for m in sorted(summary["regionmed"])
            if m.startswith(("prior/", "chance/")) and summary["regionmed"][m]["value"] is not None
        )
    )
    write_markdown_report(report, table, cis, gallery, notes=notes)


def _pair(d: dict | None):
    return None if not d or d.get("low") is None else (d["low"], d["high"])


def write_gallery(results, corpus_dir: Path, test, out_dir: Path, n: int) -> list[Path]:
    """Heatmaps of the first ``n`` subtle-or-small findings (then any), for both models.

    The folder is a declared DVC output, so it is written even when there is nothing to draw
    (a corpus without boxes, e.g. MedPix; or ``gallery_size: 0``), with a note saying why. It is
    written whole or not at all (regionmed/atomic.py); the paths returned are those in ``out_dir``.
    """
    with atomic_dir(out_dir) as tmp:
        drawn = _draw_gallery(results, corpus_dir, test, tmp, n)
    return [out_dir / p.name for p in drawn]


def _draw_gallery(results, corpus_dir: Path, test, out_dir: Path, n: int) -> list[Path]:
    ex = results["regionmed"].grounding_examples
    if not ex or n == 0:
        why = "evaluate.gallery_size is 0" if n == 0 else "the test split has no finding regions to ground"
        (out_dir / "README.md").write_text(f"No grounding examples: {why}.\n")
        return []
    order = np.arange(len(ex["phrases"]))[:n]
    paths = []
    for k in order:
        image = read_png(corpus_dir / test.iloc[int(ex["image_index"][k])]["image_path"])
        for name in MODELS:
            g = results[name].grounding_examples
            paths.append(
                draw_heatmap_overlay(
                    image,
                    g["heatmaps"][k],
                    g["true_boxes"][k],
                    g["pred_boxes"][k],
                    f"{name}: {g['phrases'][k]}",
                    out_dir / f"{k:03d}_{name}.png",
                )
            )
    return paths
