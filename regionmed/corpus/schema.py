"""The corpus contract: every later stage reads a corpus through this module.

A corpus is a folder holding ``manifest.parquet`` (one row per image), the images as PNG members of
tar shards under ``shards/`` or as PNG files under ``images/`` (regionmed/corpus/shards.py),
``rejected.jsonl`` (records set aside, with the reason) and ``build.json``
(a summary of the build). Nothing else in the package defines column names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_FILE = "manifest.parquet"
REJECTED_FILE = "rejected.jsonl"
BUILD_SUMMARY_FILE = "build.json"
IMAGES_DIR = "images"
SHARDS_DIR = "shards"

SPLITS = ("train", "val", "test")
REGION_KINDS = ("finding", "anatomy")
# Finding size buckets; "subtle" is small *and* low-contrast: where global features fail.
SIZE_BUCKETS = ("subtle", "small", "large")
QA_TYPES = ("presence", "location", "modality", "count")
NO_FINDING = "no finding"
# Where a region came from: drawn with the source data, or added by the annotate_regions stage.
REGION_ORIGINS = ("given", "annotated")
# What placed an annotated region's box (docs/annotation.md); given regions have none. The location words
# inside an anatomy box of this image (given with it, or found by the annotator model), inside the
# corpus's mean anatomy box, or on the whole image; a model's heatmap; a detector.
PLACEMENTS = ("image_anatomy", "annotator_anatomy", "corpus_anatomy", "words", "heatmap", "detector")


@dataclass(frozen=True)
class Region:
    """One annotated region. ``bbox`` is ``[x0, y0, x1, y1]`` normalised to 0..1 of the stored image."""

    bbox: tuple[float, float, float, float]
    label: str
    phrase: str
    hard_negatives: tuple[str, ...] = ()
    kind: str = "finding"
    size: str | None = None  # one of SIZE_BUCKETS for findings, None for anatomy or unknown
    origin: str = "given"  # one of REGION_ORIGINS
    confidence: float = 1.0  # 0..1; 1 for given boxes, the localizer's score for annotated ones
    placed_by: str | None = None  # one of PLACEMENTS for annotated regions, None for given ones

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["bbox"] = [float(v) for v in self.bbox]
        d["hard_negatives"] = list(self.hard_negatives)
        return d


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    type: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class ManifestRow:
    image_id: str
    image_path: str
    sha256: str
    width: int
    height: int
    modality: str
    body_part: str
    patient_id: str
    split: str
    report: str
    modality_text: str
    anatomy_text: str
    finding_text: str
    labels: list[str] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    qa: list[QA] = field(default_factory=list)
    source: str = "synthetic"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["regions"] = [r.to_dict() for r in self.regions]
        d["qa"] = [q.to_dict() for q in self.qa]
        return d


REGION_TYPE = pa.struct(
    [
        ("bbox", pa.list_(pa.float64(), 4)),
        ("label", pa.string()),
        ("phrase", pa.string()),
        ("hard_negatives", pa.list_(pa.string())),
        ("kind", pa.string()),
        ("size", pa.string()),
        ("origin", pa.string()),
        ("confidence", pa.float64()),
        ("placed_by", pa.string()),
    ]
)
# Fields a corpus written before they existed lacks; read_manifest fills them with these.
REGION_DEFAULTS = {"origin": "given", "confidence": 1.0, "placed_by": None}
QA_TYPE = pa.struct([("question", pa.string()), ("answer", pa.string()), ("type", pa.string())])

MANIFEST_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("image_path", pa.string()),
        ("sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("modality", pa.string()),
        ("body_part", pa.string()),
        ("patient_id", pa.string()),
        ("split", pa.string()),
        ("report", pa.string()),
        ("modality_text", pa.string()),
        ("anatomy_text", pa.string()),
        ("finding_text", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("regions", pa.list_(REGION_TYPE)),
        ("qa", pa.list_(QA_TYPE)),
        ("source", pa.string()),
    ]
)
COLUMNS = tuple(MANIFEST_SCHEMA.names)
TEXT_COLUMNS = ("report", "modality_text", "anatomy_text", "finding_text")


def write_manifest(rows: list[ManifestRow], path: Path) -> None:
    """Write rows sorted by ``image_id`` so that the file is byte-identical for the same content."""
    records = sorted((r.to_dict() for r in rows), key=lambda d: d["image_id"])
    table = pa.Table.from_pylist(records, schema=MANIFEST_SCHEMA)
    pq.write_table(table, path, compression="zstd")


def read_manifest(corpus_dir: str | Path, split: str | None = None) -> pd.DataFrame:
    """Read a corpus manifest as a DataFrame (list columns as Python lists), optionally one split."""
    path = Path(corpus_dir) / MANIFEST_FILE
    file_schema = pq.read_schema(path)
    # corpora written before regions had origin/confidence still load (their regions are given)
    current = file_schema.names == MANIFEST_SCHEMA.names and file_schema.field("regions").type == REGION_TYPE
    table = pq.read_table(path, schema=MANIFEST_SCHEMA if current else None)
    df = table.to_pandas(types_mapper=None)
    for col in ("labels", "regions", "qa"):
        df[col] = df[col].map(_to_python)
    if not current:
        df["regions"] = df["regions"].map(lambda rs: [{**REGION_DEFAULTS, **r} for r in rs])
        df = df[list(COLUMNS)]
    if split is not None:
        df = df[df["split"] == split].reset_index(drop=True)
    return df


def _to_python(value: Any) -> Any:
    """parquet list columns come back as numpy arrays of dicts; stages want plain lists."""
    if value is None:
        return []
    out = []
    for item in value:
        if isinstance(item, dict):
            out.append({k: (list(v) if hasattr(v, "tolist") else v) for k, v in item.items()})
            for k, v in out[-1].items():
                if isinstance(v, list):
                    out[-1][k] = [x.item() if hasattr(x, "item") else x for x in v]
        else:
            out.append(item)
    return out


def regions_of(row: pd.Series | dict) -> list[Region]:
    return [
        Region(
            bbox=tuple(r["bbox"]),
            label=r["label"],
            phrase=r["phrase"],
            hard_negatives=tuple(r["hard_negatives"] or ()),
            kind=r["kind"],
            size=r["size"],
            origin=r.get("origin") or "given",
            confidence=float(r["confidence"] if r.get("confidence") is not None else 1.0),
            placed_by=r.get("placed_by"),
        )
        for r in row["regions"]
    ]
