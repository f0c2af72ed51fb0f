"""The ``annotate_regions`` stage's pure function: a corpus in, an annotated corpus out.

For every image of ``annotate.splits`` that has no given finding region, the report's finding
mentions (and, on an image without any region, its anatomy mentions:
:mod:`regionmed.annotation.mentions`) become queries, each with the frames its location words name in
this image's anatomy (:mod:`regionmed.annotation.anatomy`: the image's given anatomy boxes, else the
organs the annotator model places in it where it places them better than their mean on val images
(:mod:`regionmed.annotation.learned_anatomy`), else the corpus's mean boxes). A localizer places each
non-negated one; a finding box across both organs of the pair (both lungs) is cut down to one of
them, unless the corpus's own boxes of that finding lie across both; boxes at or above
``annotate.min_confidence`` become regions with ``origin="annotated"``, their ``confidence`` and
``placed_by``, a phrase written like the given ones (:func:`regionmed.corpus.phrases.region_phrase`)
and hard negatives derived the same way. Images with a given finding region are copied as they are,
and given regions are never changed, so on a corpus whose reports' findings are all boxed (the
synthetic default) nothing is added.

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

from regionmed.annotation.anatomy import CorpusAnatomy, keep_in_one_of_the_pair
from regionmed.annotation.learned_anatomy import learned_organ_region, learned_organs, organ_check
from regionmed.annotation.localizers import Localizer, Query
from regionmed.annotation.phrasing import most_specific, region_for
from regionmed.annotation.summary import AnnotationCounts
from regionmed.atomic import atomic_dir
from regionmed.corpus.schema import (
    BUILD_SUMMARY_FILE,
    MANIFEST_FILE,
    QA,
    REJECTED_FILE,
    ManifestRow,
    read_manifest,
    regions_of,
    write_manifest,
)
from regionmed.corpus.shards import copy_image_store
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


# a finding box cut down to one organ of the pair keeps at least this share of its area, or is dropped:
# a sliver at the organ's edge says the box lay mostly elsewhere (the mediastinum, the other lung)
MIN_KEPT_SHARE = 0.25


def _area(box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def to_annotate(regions: list[dict]) -> bool:
    """An image gets its report's findings placed when it has no given finding region: no region at all
    (then its anatomy too), or only anatomy, whose boxes then frame the findings."""
    return not any(r["kind"] == "finding" for r in regions)


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
    todo = df.index[df["split"].isin(a.splits) & df["regions"].map(to_annotate)].to_numpy()
    counts.images_considered = len(todo)
    counts.images_with_given_anatomy = int(sum(bool(df.at[i, "regions"]) for i in todo))
    reports = [_clean_report(df.at[i, "report"], a.max_report_chars, counts) for i in todo]
    mentions = extractor.extract_many(reports) if reports else []
    findings_by_modality = _findings_by_modality(df)
    size_words = getattr(getattr(getattr(extractor, "vocabulary", None), "location", None), "sizes", {}) or {}
    pending_by_image: dict[int, list] = {}
    for i, found in zip(todo, mentions, strict=True):
        counts.add_mentions(found)
        # an image with given anatomy keeps it: only its findings are placed (inside that anatomy)
        kinds = ["finding"] if df.at[i, "regions"] else a.kinds
        wanted = [
            m
            for m in found
            if not m.negated
            and (a.keep_uncertain or not m.uncertain)
            and m.kind in a.kinds
            and m.kind in kinds
        ]
        if not found:
            counts.no_mentions += 1
        elif not wanted:
            counts.nothing_to_place += 1
        pending = {}
        for m in most_specific(wanted):
            region = region_for(m, findings_by_modality.get(df.at[i, "modality"], []), size_words)
            pending.setdefault(region.phrase, region)
        if pending:
            # as for given regions, a hard negative that is another true phrase of the image is none
            pending_by_image[i] = [
                replace(r, hard_negatives=tuple(n for n in r.hard_negatives if n not in pending))
                for r in pending.values()
            ]
    counts.images_to_place = len(pending_by_image)
    corpus_anatomy = CorpusAnatomy(df[df["split"] == "train"])
    learned = {}
    if getattr(localizer, "places_organs", False) and pending_by_image:
        counts.organ_check = organ_check(df, corpus_dir, localizer, corpus_anatomy, a.annotator_anatomy_check)
        used = {k for k, v in counts.organ_check.items() if v["used"]}
        learned = learned_organs(df, corpus_dir, list(pending_by_image), localizer, corpus_anatomy, used)
    queries, owners = [], []
    for i, regions in pending_by_image.items():
        row = df.loc[i]
        anatomy = corpus_anatomy.for_image(
            row["modality"], row["regions"], {k: b for k, (b, _) in learned.get(i, {}).items()}
        )
        for region in regions:
            if region.kind == "anatomy" and region.label not in anatomy.boxes:
                counts.unplaced += 1  # an organ no box of the corpus draws: the words alone do not place it
                continue
            frames = anatomy.frames(region.phrase)
            q = Query(
                corpus_dir / row["image_path"], region.phrase, region.label, region.kind, region.size, frames
            )
            queries.append((q, region, anatomy))
            owners.append(i)
    placed = localizer.locate([q for q, _, _ in queries]) if queries else []
    added: dict[int, list[dict]] = {}
    for i, (q, region, anatomy), p in zip(owners, queries, placed, strict=True):
        p = learned_organ_region(q, learned.get(i, {})) or p
        if p is None:
            counts.unplaced += 1
            continue
        bbox = p.bbox
        if region.kind == "finding" and not corpus_anatomy.spans(region.label):
            bbox = keep_in_one_of_the_pair(bbox, anatomy, q.frames)
            if bbox != p.bbox:
                counts.cut_to_one_organ += 1
                if _area(bbox) < MIN_KEPT_SHARE * _area(p.bbox):  # it lay mostly outside that organ
                    counts.cut_away += 1
                    continue
        counts.confidences.append(p.confidence)
        if p.confidence < a.min_confidence:
            counts.below_threshold += 1
            continue
        kept = region.with_box(bbox, p.confidence, p.placed_by)
        counts.add_kept(localizer.name, kept)
        added.setdefault(i, []).append(kept.to_dict())
    for i, regions in added.items():
        df.at[i, "regions"] = [*df.at[i, "regions"], *regions]
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
    copy_image_store(corpus_dir, out_dir)
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
    corpus_dir: Path,
    out_dir: Path,
    a: AnnotateParams,
    seed: int,
    localizer: Localizer,
    extractor,
    note: str = "",
) -> tuple[pd.DataFrame, dict[str, list[dict]], AnnotationCounts]:
    """Read, hide (experiments), annotate and write; returns the annotated manifest, the hidden truth and the
    counts."""
    start = time.perf_counter()
    df = read_manifest(corpus_dir)
    hidden = hide_regions(df, a.hide_given_fraction, seed)
    counts = AnnotationCounts(a.localizer, images_hidden=len(hidden), resolved=localizer.name, note=note)
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
