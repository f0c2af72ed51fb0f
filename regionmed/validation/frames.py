"""A corpus folder → the flat frames the expectation suites run on.

Great Expectations misjudges list columns (and fingerprints the whole frame when they are
present), so nothing here hands GX a list: the manifest's list columns become counts on the image
frame and are exploded into their own frames (regions, labels, QA). Corpus-level facts (split
shares, patients across splits, label counts per split, build summary, file hashes) are computed
here with pandas/pyarrow into small frames; the suites then assert on them like on any other data.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from regionmed.cluster import dask_client, run_tasks
from regionmed.corpus.schema import (
    BUILD_SUMMARY_FILE,
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    REJECTED_FILE,
    SPLITS,
    TEXT_COLUMNS,
)
from regionmed.corpus.shards import image_bytes, split_member
from regionmed.params_pipeline import ClusterParams

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SCALAR_COLUMNS = tuple(f.name for f in MANIFEST_SCHEMA if not pa.types.is_list(f.type))


@dataclass
class CorpusFrames:
    frames: dict[str, pd.DataFrame]
    source: str
    has_regions: bool
    has_qa: bool
    stats: dict[str, float | int | None] = field(default_factory=dict)


def _chars(array: pa.Array) -> np.ndarray:
    """Characters after trimming whitespace; null → 0 (so "missing" and "empty" fail the same bound)."""
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pc.cast(array, pa.string())
    lengths = pc.utf8_length(pc.utf8_trim_whitespace(array))
    return pc.fill_null(lengths, 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _column(table: pa.Table, name: str) -> pa.Array:
    if name in table.column_names:
        return table.column(name).combine_chunks()
    return pa.nulls(table.num_rows, MANIFEST_SCHEMA.field(name).type)


def _list_column(table: pa.Table, name: str) -> pa.Array | None:
    """The list column if it has the contract type, else ``None`` (the schema suite reports it)."""
    if name not in table.column_names or table.schema.field(name).type != MANIFEST_SCHEMA.field(name).type:
        return None
    return table.column(name).combine_chunks()


def schema_frame(table: pa.Table) -> pd.DataFrame:
    rows = []
    for f in MANIFEST_SCHEMA:
        observed = table.schema.field(f.name).type if f.name in table.column_names else None
        rows.append(
            {
                "column": f.name,
                "expected_type": str(f.type),
                "observed_type": "missing" if observed is None else str(observed),
                "type_ok": observed is not None and observed == f.type,
            }
        )
    return pd.DataFrame(rows)


def image_frame(table: pa.Table) -> pd.DataFrame:
    df = pd.DataFrame(
        {name: _column(table, name).to_pandas() for name in SCALAR_COLUMNS if name not in TEXT_COLUMNS}
    )
    for name in TEXT_COLUMNS:
        df[f"{name}_chars"] = _chars(_column(table, name))
    for name in ("labels", "regions", "qa"):
        col = _list_column(table, name)
        df[f"n_{name}"] = (
            0 if col is None else pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
        )
    df["n_annotated_regions"] = _annotated_per_image(table)
    return df


def _annotated_per_image(table: pa.Table) -> np.ndarray:
    """Regions with origin "annotated" per image (0 everywhere when the column is unusable)."""
    exploded = _exploded(table, "regions")
    counts = np.zeros(table.num_rows, dtype=np.int64)
    if exploded is not None and len(exploded[0]):
        values, parents, _ = exploded
        annotated = pc.fill_null(pc.equal(values.field("origin"), "annotated"), False).to_numpy(
            zero_copy_only=False
        )
        np.add.at(counts, parents[annotated], 1)
    return counts


def _exploded(table: pa.Table, name: str) -> tuple[pa.Array, np.ndarray, np.ndarray] | None:
    """(items, row of each item, position of each item in its row's list), or None if unusable."""
    col = _list_column(table, name)
    if col is None:
        return None
    parents = pc.list_parent_indices(col).to_numpy(zero_copy_only=False).astype(np.int64)
    within = np.arange(len(parents)) - np.searchsorted(parents, parents, side="left")
    return col.flatten(), parents, within


def region_frame(table: pa.Table, image_ids: np.ndarray) -> pd.DataFrame:
    exploded = _exploded(table, "regions")
    if exploded is None:
        return pd.DataFrame(
            columns=[
                "image_id",
                "region",
                "x0",
                "y0",
                "x1",
                "y1",
                "area",
                "label",
                "kind",
                "origin",
                "confidence",
                "placed_by",
            ]
        )
    values, parents, within = exploded
    boxes = values.field("bbox")
    coords = np.full((len(values), 4), np.nan)
    if len(values):
        flat = pc.fill_null(boxes.flatten(), np.nan).to_numpy(zero_copy_only=False)
        coords = flat.reshape(-1, 4) if flat.size == 4 * len(values) else coords
    df = pd.DataFrame({"image_id": image_ids[parents], "region": within})
    for i, name in enumerate(("x0", "y0", "x1", "y1")):
        df[name] = coords[:, i]
    df["area"] = (df["x1"] - df["x0"]).clip(lower=0) * (df["y1"] - df["y0"]).clip(lower=0)
    for name in ("label", "kind", "size", "origin", "confidence", "placed_by"):
        df[name] = values.field(name).to_pandas()
    df["label_chars"] = _chars(values.field("label"))
    df["phrase_chars"] = _chars(values.field("phrase"))
    return df


def label_frame(table: pa.Table, image_ids: np.ndarray, splits: np.ndarray) -> pd.DataFrame:
    exploded = _exploded(table, "labels")
    if exploded is None:
        return pd.DataFrame(columns=["image_id", "split", "label"])
    values, parents, _ = exploded
    return pd.DataFrame(
        {"image_id": image_ids[parents], "split": splits[parents], "label": values.to_pandas()}
    )


def qa_frame(table: pa.Table, image_ids: np.ndarray) -> pd.DataFrame:
    exploded = _exploded(table, "qa")
    if exploded is None:
        return pd.DataFrame(columns=["image_id", "qa", "type", "question_chars", "answer_chars"])
    values, parents, within = exploded
    return pd.DataFrame(
        {
            "image_id": image_ids[parents],
            "qa": within,
            "type": values.field("type").to_pandas(),
            "question_chars": _chars(values.field("question")),
            "answer_chars": _chars(values.field("answer")),
        }
    )


def split_frame(images: pd.DataFrame, expected: dict[str, float]) -> pd.DataFrame:
    counts = images["split"].value_counts()
    n = max(len(images), 1)
    rows = [
        {
            "split": s,
            "n_images": int(counts.get(s, 0)),
            "fraction": round(counts.get(s, 0) / n, 6),
            "expected_fraction": expected[s],
        }
        for s in SPLITS
    ]
    df = pd.DataFrame(rows)
    df["deviation"] = (df["fraction"] - df["expected_fraction"]).abs().round(6)
    return df


def patient_frame(images: pd.DataFrame) -> pd.DataFrame:
    pairs = images[["patient_id", "split"]].dropna().drop_duplicates()
    grouped = pairs.groupby("patient_id", sort=True)["split"]
    df = grouped.nunique().rename("n_splits").reset_index()
    multi = df["n_splits"] > 1
    df["splits"] = ""
    if multi.any():
        joined = grouped.agg(lambda s: ",".join(sorted(s)))
        df.loc[multi, "splits"] = df.loc[multi, "patient_id"].map(joined)
    return df


def coverage_frame(labels: pd.DataFrame, known: list[str] | None, splits: list[str]) -> pd.DataFrame:
    names = sorted(set(labels["label"].dropna()) | set(known or ()))
    counts = labels.groupby(["label", "split"])["image_id"].nunique()
    rows = [
        {"label": name, "split": s, "n_images": int(counts.get((name, s), 0))}
        for name in names
        for s in splits
    ]
    return pd.DataFrame(rows, columns=["label", "split", "n_images"])


def _check_file(corpus_dir: Path, image_id: str, rel_path: str | None, sha: str | None) -> dict:
    row = {"image_id": image_id, "image_path": rel_path, "status": "ok", "png_width": -1, "png_height": -1}
    try:
        data = image_bytes(corpus_dir / rel_path) if rel_path else None
    except (FileNotFoundError, IsADirectoryError):
        data = None
    except (tarfile.TarError, OSError):  # a shard whose headers no longer read as a tar
        row["status"] = "unreadable"
        return row
    if data is None:
        row["status"] = "missing"
        return row
    if hashlib.sha256(data).hexdigest() != sha:
        row["status"] = "sha256_mismatch"
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR":
        row["png_width"] = int.from_bytes(data[16:20], "big")
        row["png_height"] = int.from_bytes(data[20:24], "big")
    return row


# Rows re-hashed per cluster task (the images of a shard are read together).
FILES_PER_TASK = 1000


def file_frame(
    corpus_dir: Path, images: pd.DataFrame, fraction: float, seed: int, cluster: ClusterParams
) -> pd.DataFrame:
    """Re-hash the stored images of all rows (fraction 1) or of a seeded sample, on the cluster."""
    n = len(images) if fraction >= 1 else round(fraction * len(images))
    if n == 0:
        return pd.DataFrame(columns=["image_id", "image_path", "status", "png_width", "png_height"])
    sample = images if n == len(images) else images.sample(n=n, random_state=seed)
    rows = list(zip(sample["image_id"], sample["image_path"], sample["sha256"], strict=True))
    # A shard's rows go to one task, so each worker reads its shards' headers once.
    rows.sort(key=lambda r: (split_member(str(r[1]))[0], str(r[1])))
    tasks = [(rows[i : i + FILES_PER_TASK],) for i in range(0, len(rows), FILES_PER_TASK)]
    with dask_client(cluster) as client:
        checked = run_tasks(
            client, check_files, tasks, name="re-hash images", shared=(str(corpus_dir.resolve()),)
        )
    order = {image_id: k for k, image_id in enumerate(sample["image_id"])}
    return pd.DataFrame(sorted((r for chunk in checked for r in chunk), key=lambda r: order[r["image_id"]]))


def check_files(corpus_dir: str, rows: list[tuple]) -> list[dict]:
    """One re-hash task (on a cluster worker): the file check of each ``(image_id, path, sha256)``."""
    return [_check_file(Path(corpus_dir), *row) for row in rows]


def corpus_summary(corpus_dir: Path, images: pd.DataFrame) -> dict:
    build = {}
    if (corpus_dir / BUILD_SUMMARY_FILE).is_file():
        build = json.loads((corpus_dir / BUILD_SUMMARY_FILE).read_text())
    rejected = corpus_dir / REJECTED_FILE
    lines = sum(1 for line in rejected.open() if line.strip()) if rejected.is_file() else None
    n = len(images)
    return {
        "n_images": n,
        "build_n_kept": build.get("n_kept"),
        "build_n_input": build.get("n_input"),
        "build_n_rejected": build.get("n_rejected"),
        "rejected_log_lines": lines,
        "reject_fraction": build.get("reject_fraction"),
        "region_fraction": round(float((images["n_regions"] > 0).mean()), 6) if n else 0.0,
        "qa_fraction": round(float((images["n_qa"] > 0).mean()), 6) if n else 0.0,
        "annotated_fraction": round(float(images["n_annotated_regions"].gt(0).mean()), 6) if n else 0.0,
    }


def read_frames(
    corpus_dir: str | Path,
    expected_splits: dict[str, float],
    file_check_fraction: float,
    seed: int,
    cluster: ClusterParams,
) -> CorpusFrames:
    """Every frame but ``label_coverage`` (it needs the source's vocabulary; see :func:`coverage_frame`)."""
    corpus_dir = Path(corpus_dir)
    table = pq.read_table(corpus_dir / MANIFEST_FILE)
    images = image_frame(table)
    ids = images["image_id"].to_numpy(dtype=object)
    regions = region_frame(table, ids)
    labels = label_frame(table, ids, images["split"].to_numpy(dtype=object))
    summary = corpus_summary(corpus_dir, images)
    frames = {
        "schema": schema_frame(table),
        "images": images,
        "regions": regions,
        "labels": labels,
        "qa": qa_frame(table, ids),
        "summary": pd.DataFrame([summary]),
        "splits": split_frame(images, expected_splits),
        "patients": patient_frame(images),
        "files": file_frame(corpus_dir, images, file_check_fraction, seed, cluster),
    }
    sources = images["source"].dropna()
    source = str(sources.mode().iloc[0]) if len(sources) else "unknown"
    stats = dict(summary)
    stats.update(
        n_regions=len(regions),
        n_labels=len(labels),
        n_qa=len(frames["qa"]),
        n_patients=len(frames["patients"]),
        n_files_checked=len(frames["files"]),
    )
    return CorpusFrames(
        frames, source, has_regions=len(regions) > 0, has_qa=len(frames["qa"]) > 0, stats=stats
    )
