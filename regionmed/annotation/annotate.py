"""The ``annotate_regions`` stage's pure function: a corpus in, an annotated corpus out.

For every image of ``annotate.splits`` that has no region, the report's finding and anatomy
mentions (:mod:`regionmed.annotation.mentions`) become queries; a localizer places each
non-negated one, and boxes at or above ``annotate.min_confidence`` become regions with
``origin="annotated"``, their localizer's ``confidence``, a phrase written like the given ones
(:func:`regionmed.corpus.phrases.region_phrase`) and hard negatives derived the same way.
Images that have regions are copied as they are, so on a fully boxed corpus nothing is added.

``annotate.hide_given_fraction`` (experiments): first hide the regions of that share of the train
images that have any (seeded), keeping them in ``hidden_regions.jsonl`` beside the manifest so the
boxes the engine draws there can be scored against the truth (:mod:`regionmed.annotation.quality`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from regionmed.annotation.localizers import Localizer, Query
from regionmed.annotation.phrasing import most_specific, region_for
from regionmed.annotation.summary import AnnotationCounts
from regionmed.atomic import atomic_dir
from regionmed.corpus.schema import (
    BUILD_SUMMARY_FILE,
    IMAGES_DIR,
    MANIFEST_FILE,
    QA,
    REJECTED_FILE,
    ManifestRow,
    read_manifest,
    regions_of,
    write_manifest,
)
from regionmed.params_pipeline import AnnotateParams

HIDDEN_FILE = "hidden_regions.jsonl"
ANNOTATION_RECORD = "annotation.json"


def hide_regions(df: pd.DataFrame, fraction: float, seed: int) -> dict[str, list[dict]]:
    """Empty the regions of ``fraction`` of the train images that have any (in place); returns them by image
    id."""
    if fraction <= 0:
        return {}
    boxed = df.index[(df["split"] == "train") & (df["regions"].map(len) > 0)].to_numpy()
    rng = np.random.default_rng([seed, 14])
    chosen = np.sort(rng.choice(boxed, size=round(fraction * len(boxed)), replace=False))
    hidden = {str(df.at[i, "image_id"]): df.at[i, "regions"] for i in chosen}
    for i in chosen:
        df.at[i, "regions"] = []
    return hidden


def annotate_frame(
    df: pd.DataFrame,
    corpus_dir: Path,
    a: AnnotateParams,
    localizer: Localizer,
    extractor,
    counts: AnnotationCounts,
) -> pd.DataFrame:
    """The manifest with annotated regions added to the images that need them (a new frame)."""
    df = df.copy()
    todo = df.index[df["split"].isin(a.splits) & (df["regions"].map(len) == 0)].to_numpy()
    counts.images_considered = len(todo)
    reports = [_clean_report(df.at[i, "report"], a.max_report_chars, counts) for i in todo]
    mentions = extractor.extract_many(reports) if reports else []
    findings_by_modality = _findings_by_modality(df)
    size_words = getattr(getattr(getattr(extractor, "vocabulary", None), "location", None), "sizes", {}) or {}
    queries, owners = [], []
    for i, found in zip(todo, mentions, strict=True):
        counts.add_mentions(found)
        wanted = [
            m for m in found if not m.negated and (a.keep_uncertain or not m.uncertain) and m.kind in a.kinds
        ]
        if not found:
            counts.no_mentions += 1
        elif not wanted:
            counts.nothing_to_place += 1
        row = df.loc[i]
        pending = {}
        for m in most_specific(wanted):
            region = region_for(m, findings_by_modality.get(row["modality"], []), size_words)
            pending.setdefault(region.phrase, region)
        for region in pending.values():
            # as for given regions, a hard negative that is another true phrase of the image is none
            region = replace(
                region, hard_negatives=tuple(n for n in region.hard_negatives if n not in pending)
            )
            queries.append(
                (
                    Query(
                        corpus_dir / row["image_path"], region.phrase, region.label, region.kind, region.size
                    ),
                    region,
                )
            )
            owners.append(i)
    placed = localizer.locate([q for q, _ in queries]) if queries else []
    added: dict[int, list[dict]] = {}
    for i, (_query, region), p in zip(owners, queries, placed, strict=True):
        if p is None:
            counts.unplaced += 1
            continue
        counts.confidences.append(p.confidence)
        if p.confidence < a.min_confidence:
            counts.below_threshold += 1
            continue
        kept = region.with_box(p.bbox, p.confidence)
        counts.add_kept(localizer.name, kept)
        added.setdefault(i, []).append(kept.to_dict())
    for i, regions in added.items():
        df.at[i, "regions"] = regions
    counts.images_annotated = len(added)
    return df


def _clean_report(text, max_chars: int, counts: AnnotationCounts) -> str:
    """The report to read for mentions: "" for missing or whitespace-only, cut at ``max_chars``."""
    text = text if isinstance(text, str) else ""
    if not text.strip():
        counts.empty_reports += 1
        return ""
    if len(text) > max_chars:
        counts.truncated_reports += 1
        text = text[:max_chars]
    return text


def _findings_by_modality(df: pd.DataFrame) -> dict[str, list[str]]:
    """Finding labels seen per modality in given regions (the candidates for a swapped-finding hard
    negative)."""
    out: dict[str, set[str]] = {}
    for modality, regions in zip(df["modality"], df["regions"], strict=True):
        out.setdefault(modality, set()).update(r["label"] for r in regions if r["kind"] == "finding")
    return {m: sorted(v) for m, v in out.items()}


def write_corpus(
    df: pd.DataFrame, corpus_dir: Path, out_dir: Path, hidden: dict[str, list[dict]], record: dict
) -> None:
    """The annotated corpus in the corpus contract: images copied, manifest rewritten, logs carried over.
    Written whole or not at all (regionmed/atomic.py)."""
    with atomic_dir(out_dir) as tmp:
        _write_corpus_into(df, corpus_dir, tmp, hidden, record)


def _write_corpus_into(
    df: pd.DataFrame, corpus_dir: Path, out_dir: Path, hidden: dict[str, list[dict]], record: dict
) -> None:
    shutil.copytree(corpus_dir / IMAGES_DIR, out_dir / IMAGES_DIR)
    for name in (REJECTED_FILE, BUILD_SUMMARY_FILE):
        if (corpus_dir / name).is_file():
            shutil.copy2(corpus_dir / name, out_dir / name)
    rows = [
        ManifestRow(
            **{
                **{k: v for k, v in r.items() if k not in ("regions", "qa")},
                "labels": list(r["labels"]),
                "regions": regions_of(r),
                "qa": [QA(**q) for q in r["qa"]],
            }
        )
        for r in df.to_dict("records")
    ]
    write_manifest(rows, out_dir / MANIFEST_FILE)
    with open(out_dir / HIDDEN_FILE, "w") as f:
        f.writelines(
            json.dumps({"image_id": image_id, "regions": hidden[image_id]}, sort_keys=True) + "\n"
            for image_id in sorted(hidden)
        )
    (out_dir / ANNOTATION_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def annotate_corpus(
    corpus_dir: Path, out_dir: Path, a: AnnotateParams, seed: int, localizer: Localizer, extractor
) -> tuple[pd.DataFrame, dict[str, list[dict]], AnnotationCounts]:
    """Read, hide (experiments), annotate and write; returns the annotated manifest, the hidden truth and the
    counts."""
    start = time.perf_counter()
    df = read_manifest(corpus_dir)
    hidden = hide_regions(df, a.hide_given_fraction, seed)
    counts = AnnotationCounts(localizer=localizer.name, images_hidden=len(hidden))
    annotated = annotate_frame(df, corpus_dir, a, localizer, extractor, counts)
    counts.seconds = round(time.perf_counter() - start, 3)
    write_corpus(
        annotated,
        corpus_dir,
        out_dir,
        hidden,
        {
            "localizer": localizer.name,
            "min_confidence": a.min_confidence,
            "hide_given_fraction": a.hide_given_fraction,
            "images_annotated": counts.images_annotated,
        },
    )
    return annotated, hidden, counts
