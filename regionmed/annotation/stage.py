"""The ``annotate_regions`` stage: settings checked, localizer built, corpus annotated, summary written.

The work is :func:`regionmed.annotation.annotate.annotate_corpus`; :func:`run` reads the built corpus,
writes the annotated one, the summary (``annotate.summary_file``) and the preview. Everything that
can be wrong with the settings (a missing model folder, a model of the wrong type) is found by
:func:`make_localizer` before a single report is read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from regionmed.annotation.annotate import annotate_corpus
from regionmed.annotation.annotator import ANNOTATOR_RECORD
from regionmed.annotation.localizers import Localizer, NoLocalizer, PriorLocalizer
from regionmed.annotation.quality import box_quality
from regionmed.annotation.summary import preview_annotations
from regionmed.atomic import atomic_write_text
from regionmed.cluster import dask_client
from regionmed.corpus.schema import MANIFEST_FILE, read_manifest
from regionmed.errors import BadInput, require
from regionmed.params_pipeline import PipelineParams


class AnnotateError(BadInput):
    """A setting of the annotate section that cannot work (the message names it)."""


def make_localizer(params: PipelineParams, corpus_dir: Path) -> Localizer:
    """The localizer ``annotate.localizer`` names; ``auto``: the annotator the train_annotator stage trained
    on this corpus (``annotate.annotator_dir``), else none (:func:`auto_note` says why)."""
    a = params.annotate
    if a.localizer == "auto":
        folder = Path(a.annotator_dir)
        if (folder / "config.json").is_file():
            return _self_localizer(params, corpus_dir, folder, "annotate.annotator_dir")
        return NoLocalizer()
    if a.localizer == "none":
        return NoLocalizer()
    if a.localizer == "prior":
        return PriorLocalizer(a.prior_confidence.model_dump())
    if a.localizer == "self":
        folder = Path(a.self_model_dir)
        if not (folder / "config.json").is_file():
            raise AnnotateError(
                f"annotate.self_model_dir: {folder} holds no exported RegionMed model "
                "(train one on the boxed images first: docs/annotation.md, self-training)"
            )
        return _self_localizer(params, corpus_dir, folder, "annotate.self_model_dir")
    from regionmed.annotation.detector import DetectorLocalizer, check_detector_settings

    try:
        check_detector_settings(a.detector)
    except ValueError as exc:
        raise AnnotateError(str(exc)) from None
    return DetectorLocalizer(a.detector, params.corpus.channels)


def _self_localizer(params: PipelineParams, corpus_dir: Path, folder: Path, setting: str) -> Localizer:
    from regionmed.annotation.self_localizer import SelfLocalizer, train_box_sizes

    a = params.annotate
    try:
        given = [r for rs in read_manifest(corpus_dir, "train")["regions"] for r in rs]
        sizes = train_box_sizes(given) if a.self_select == "sized" else None
        organs = {r["label"] for r in given if r["kind"] == "anatomy"}
        return SelfLocalizer(
            folder,
            params.corpus.channels,
            a.batch_size,
            a.self_levels,
            a.self_tilings,
            a.self_select,
            sizes,
            organs,
            a.self_location_words,
            a.self_shifts,
        )
    except (ValueError, KeyError, OSError) as exc:
        raise AnnotateError(f"{setting}: {folder}: {exc}") from None


def auto_note(params: PipelineParams, localizer: Localizer) -> str:
    """Why ``annotate.localizer: auto`` placed with ``localizer`` (the train_annotator stage's record)."""
    folder = Path(params.annotate.annotator_dir)
    if localizer.name == "self":
        return f"the annotator trained on this corpus's given boxes ({folder})"
    record = folder / ANNOTATOR_RECORD
    if record.is_file():
        return json.loads(record.read_text()).get("reason", "")
    return f"no annotator in {folder} (the train_annotator stage writes it)"


@dataclass(frozen=True)
class AnnotationResult:
    localizer: str
    summary: dict  # what annotate.summary_file holds

    def summary_line(self) -> str:
        s = self.summary
        kept = sum(kind["total"] for kind in s["regions_kept"].values())
        setting = (
            s["localizer"] if s["localizer"] == self.localizer else f"{s['localizer']}: {self.localizer}"
        )
        line = (
            f"annotate_regions ({setting}): {s['images_annotated']} of {s['images_considered']} "
            f"images without a given finding box annotated, {kept} regions kept, "
            f"{s['cases']['below_threshold']} below min_confidence, in {s['seconds_total']} s"
        )
        return f"{line} ({s['note']})" if s.get("note") else line


def run(
    params: PipelineParams, corpus_dir: Path | None = None, out_dir: Path | None = None, log=print
) -> AnnotationResult:
    """Annotate ``corpus.out_dir`` into ``annotate.out_dir``; write the summary and the preview."""
    from regionmed.annotation.on_cluster import ClusterMentions, on_cluster

    a = params.annotate
    corpus_dir = Path(corpus_dir or params.corpus.out_dir)
    require(corpus_dir / MANIFEST_FILE, "the corpus manifest", "build_corpus")
    out_dir = Path(out_dir or a.out_dir)
    start = time.perf_counter()
    localizer = make_localizer(params, corpus_dir)
    # the reports' mentions and the self localizer's heatmaps are read on the cluster (on_cluster.py)
    with dask_client(params.cluster) as client:
        df, hidden, counts = annotate_corpus(
            corpus_dir,
            out_dir,
            a,
            params.seed,
            on_cluster(localizer, client),
            ClusterMentions(client),
            note=auto_note(params, localizer) if a.localizer == "auto" else "",
        )
    summary = counts.to_dict()
    if hidden:
        by_image = dict(zip(df["image_id"], df["regions"], strict=True))
        vision = params.model.vision  # the patch grid the grounding loss and the evaluation score at
        summary["box_quality"] = box_quality(
            by_image, hidden, params.seed, grid=vision.image_size // vision.patch_size
        )
    summary["annotated_image_share"] = (
        round(float(df["regions"].map(lambda rs: any(r.get("origin") == "annotated" for r in rs)).mean()), 4)
        if len(df)
        else 0.0
    )
    summary["seconds_total"] = round(time.perf_counter() - start, 3)
    atomic_write_text(a.summary_file, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    preview_annotations(df, out_dir, Path(a.preview_file), a.preview_images, params.seed)
    return AnnotationResult(localizer.name, summary)
