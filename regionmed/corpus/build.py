"""The ``build_corpus`` stage: a source → a corpus folder (manifest, PNGs, rejected records, summary).

Bad records never stop the build: each is written to ``rejected.jsonl`` with its reason and the
good ones go on. The build fails only when the rejected fraction passes ``max_reject_fraction``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from regionmed.atomic import atomic_dir
from regionmed.cluster import dask_client, run_tasks
from regionmed.corpus.process import ProcessContext, image_id_for, process_record
from regionmed.corpus.records import BuildError, RecordError, Rejected, SourceRecord
from regionmed.corpus.schema import (
    BUILD_SUMMARY_FILE,
    IMAGES_DIR,
    MANIFEST_FILE,
    REJECTED_FILE,
    SHARDS_DIR,
    ManifestRow,
    write_manifest,
)
from regionmed.corpus.shards import member_path, remove_partial_shards, shard_file, split_member, write_shard
from regionmed.corpus.splits import assign_splits, split_conflicts
from regionmed.params_pipeline import CorpusParams, PipelineParams

MAX_LISTED_CONFLICTS = 100


@dataclass
class BuildSummary:
    n_input: int
    n_kept: int
    n_rejected: int
    rejected_by_category: dict[str, int]
    per_split: dict[str, int]
    per_modality: dict[str, int]
    n_regions: int
    source: str
    # patients whose records asked for different splits (all now in the first record's split)
    n_split_conflicts: int = 0
    split_conflicts: list[dict] = field(default_factory=list)  # the first MAX_LISTED_CONFLICTS of them

    @property
    def reject_fraction(self) -> float:
        return self.n_rejected / max(self.n_input, 1)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "reject_fraction": round(self.reject_fraction, 6)}


def make_source(params: PipelineParams):
    """The source named in ``params.corpus.source``."""
    c = params.corpus
    if c.source == "synthetic":
        from regionmed.corpus.synthetic_source import SyntheticSource

        return SyntheticSource(c.synthetic, params.seed, c.image_size)
    from regionmed.corpus.importers import make_importer

    return make_importer(c.source, c.importer)


def _context(c: CorpusParams, data_root: Path | None) -> ProcessContext:
    return ProcessContext(
        data_root=data_root,
        image_size=c.image_size,
        channels=c.channels,
        max_file_bytes=c.importer.max_file_bytes,
        max_image_pixels=c.importer.max_image_pixels,
        min_box_area=c.min_box_area,
        max_text_chars=c.max_text_chars,
        dicom_window=c.importer.dicom_window,
    )


def build_chunk(source, ctx: ProcessContext, out_dir: str, layout: str, index: int, tasks: list) -> list:
    """One build task (on a cluster worker): ``tasks`` processed in order into rows and rejected records,
    their images written as shard ``index`` (whole, or not at all) or as files."""
    out, shard = Path(out_dir), shard_file(index)
    results: list[ManifestRow | Rejected] = []
    members: list[tuple[str, bytes]] = []
    for task in tasks:
        result = _run_task(source, ctx, task)
        if isinstance(result, Rejected):
            results.append(result)
            continue
        row, png = result
        if layout == "shards":
            members.append((f"{row.image_id}.png", png))
            row.image_path = member_path(shard, members[-1][0])
        else:
            (out / row.image_path).write_bytes(png)
        results.append(row)
    if members:
        write_shard(out, shard, members)
    return results


def _run_task(source, ctx: ProcessContext, task) -> tuple[ManifestRow, bytes] | Rejected:
    record = None
    try:
        record = source.materialise(task)
        return process_record(record, ctx)
    except RecordError as exc:
        # the record as the source gave it: the materialised one, or the one carried by the task
        return Rejected(
            str(task[0]), exc.category, str(exc), record.summary() if record else task_record(task)
        )
    except Exception as exc:  # a decoder's own bug on one file: that record set aside, the rest go on
        return Rejected(
            str(task[0]),
            "unexpected_error",
            f"{type(exc).__name__} while processing the record: {exc}"[:500],
            record.summary() if record else task_record(task),
        )


def task_record(task) -> dict[str, Any]:
    """A task's record for ``rejected.jsonl``, as JSON fields a user can find in their data: the
    record's own fields, or the source's item (e.g. the synthetic generator's index)."""
    record_id, item = task
    if isinstance(item, SourceRecord):
        return item.summary()
    return {"record_id": str(record_id), "source_item": item if isinstance(item, (int, str)) else str(item)}


def build_corpus(
    params: PipelineParams, out_dir: str | Path | None = None, progress: bool | None = None, source=None
) -> BuildSummary:
    """Build the corpus into ``out_dir`` (``corpus.out_dir``), written whole or not at all: the folder is
    written under a temporary name and renamed when complete (regionmed/atomic.py). Too many rejected
    records is a :class:`BuildError`, raised once the corpus (its ``rejected.jsonl``) is in place."""
    c = params.corpus
    out = Path(out_dir or c.out_dir)
    with atomic_dir(out) as tmp:
        summary = _build_into(params, tmp, progress, source or make_source(params))
    if summary.reject_fraction > c.max_reject_fraction:
        raise BuildError(
            f"{summary.n_rejected} of {summary.n_input} records rejected "
            f"({summary.reject_fraction:.1%} > max_reject_fraction {c.max_reject_fraction:.1%}): "
            f"{summary.rejected_by_category}; see {out / REJECTED_FILE}"
        )
    return summary


def _build_into(params: PipelineParams, out: Path, progress: bool | None, source) -> BuildSummary:
    c = params.corpus
    (out / (IMAGES_DIR if c.layout == "files" else SHARDS_DIR)).mkdir(parents=True)
    root = getattr(source, "root", None)
    # absolute paths: a worker of a remote cluster runs in its own working directory
    ctx = _context(c, Path(root).resolve() if root is not None else None)

    rows: list[ManifestRow] = []
    rejected: list[Rejected] = []
    seen_ids: set[str] = set()
    tasks = []
    for task in source.tasks():
        if isinstance(task, Rejected):
            rejected.append(task)
            continue
        image_id = image_id_for(str(task[0]))
        if image_id in seen_ids:
            rejected.append(
                Rejected(str(task[0]), "duplicate_id", f"duplicate record id {task[0]!r}", task_record(task))
            )
            continue
        seen_ids.add(image_id)
        tasks.append(task)

    n_input = len(tasks) + len(rejected)
    chunks = [(k, tasks[i : i + c.shard_size]) for k, i in enumerate(range(0, len(tasks), c.shard_size))]
    with dask_client(params.cluster) as client:
        per_chunk = run_tasks(
            client,
            build_chunk,
            chunks,
            name=f"build {source.name}",
            shared=(source, ctx, str(out.resolve()), c.layout),
            progress=progress,
            unit="shard" if c.layout == "shards" else "chunk",
        )
    remove_partial_shards(out)  # a killed worker's unfinished write; its task was re-run
    results = [r for chunk in per_chunk for r in chunk]

    by_sha: dict[str, str] = {}
    for result in results:
        if isinstance(result, Rejected):
            rejected.append(result)
        elif result.sha256 in by_sha:
            # a file goes; a shard member stays in its tar, named by no row (tars are not edited in place)
            if split_member(result.image_path)[1] is None:
                (out / result.image_path).unlink()
            rejected.append(
                Rejected(
                    result.image_id,
                    "duplicate_image",
                    f"same image as {by_sha[result.sha256]!r}",
                    {"image_id": result.image_id},
                )
            )
        else:
            by_sha[result.sha256] = result.image_id
            rows.append(result)

    # A row's split is the source's own split (or "") until patients are resolved here.
    patients, given = {r.image_id: r.patient_id for r in rows}, {r.image_id: r.split or None for r in rows}
    conflicts = split_conflicts(patients, given)
    splits = assign_splits(patients, given, params.seed, c.split)
    for r in rows:
        r.split = splits[r.image_id]
    write_manifest(rows, out / MANIFEST_FILE)
    with open(out / REJECTED_FILE, "w") as f:
        for rej in sorted(rejected, key=lambda r: (r.record_id, r.category)):
            f.write(json.dumps(rej.to_json(), sort_keys=True, default=str) + "\n")

    summary = BuildSummary(
        n_input=n_input,
        n_kept=len(rows),
        n_rejected=len(rejected),
        rejected_by_category=dict(sorted(Counter(r.category for r in rejected).items())),
        per_split=dict(sorted(Counter(r.split for r in rows).items())),
        per_modality=dict(sorted(Counter(r.modality for r in rows).items())),
        n_regions=sum(len(r.regions) for r in rows),
        source=source.name,
        n_split_conflicts=len(conflicts),
        split_conflicts=conflicts[:MAX_LISTED_CONFLICTS],
    )
    (out / BUILD_SUMMARY_FILE).write_text(json.dumps(summary.to_dict(), indent=2, sort_keys=True) + "\n")
    return summary
