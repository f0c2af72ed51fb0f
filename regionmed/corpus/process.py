"""One source record → one normalised corpus row and its PNG bytes, or a :class:`RecordError`.

Runs in the cluster's workers, so it takes everything it needs in a small picklable context; where
the bytes are stored (a shard or a file) is the build's business (regionmed/corpus/build.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePath, PureWindowsPath

from regionmed.corpus.images import (
    ImageError,
    decode_image,
    encode_png,
    letterbox,
    set_channels,
    sha256_bytes,
)
from regionmed.corpus.phrases import hard_negatives, location_from_box, region_phrase, swap_laterality
from regionmed.corpus.records import RawRegion, RecordError, SourceRecord
from regionmed.corpus.schema import IMAGES_DIR, QA, SIZE_BUCKETS, ManifestRow, Region
from regionmed.corpus.splits import normalise_patient_id, normalise_split

# Boxes may overshoot the image edge by rounding in the source's tooling; beyond this they are wrong.
BOX_EDGE_TOLERANCE_PX = 1.0
SAFE_ID = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ProcessContext:
    data_root: Path | None
    image_size: int
    channels: int
    max_file_bytes: int
    max_image_pixels: int
    min_box_area: float
    max_text_chars: int
    dicom_window: str


def image_id_for(record_id: str) -> str:
    return SAFE_ID.sub("_", record_id).strip("._") or "record"


def process_record(record: SourceRecord, ctx: ProcessContext) -> tuple[ManifestRow, bytes]:
    """A record's row and PNG bytes; the split is assigned later (it needs every record of the patient)
    and ``image_path`` by the caller (it knows where the bytes go: :func:`file_image_path`)."""
    report = _required_text(record.report, "report", ctx)
    pixels = record.pixels if record.pixels is not None else _load(record, ctx)
    h, w = pixels.shape[:2]
    pixels = set_channels(pixels, ctx.channels)
    if (h, w) != (ctx.image_size, ctx.image_size):
        pixels, fit = letterbox(pixels, ctx.image_size)
    else:
        fit = None
    regions = [_region(i, r, record, w, h, fit, ctx) for i, r in enumerate(record.regions)]
    findings = [r for r in regions if r.kind == "finding"]
    png = encode_png(pixels)
    image_id = image_id_for(record.record_id)
    labels = list(dict.fromkeys(record.labels or [r.label for r in findings]))
    row = ManifestRow(
        image_id=image_id,
        image_path=file_image_path(image_id),
        sha256=sha256_bytes(png),
        width=ctx.image_size,
        height=ctx.image_size,
        modality=record.modality,
        body_part=record.body_part,
        patient_id=normalise_patient_id(record.patient_id) or record.record_id,
        split=_given_split(record.split),
        report=report,
        modality_text=_optional_text(record.modality_text, record.modality, "modality_text", ctx),
        anatomy_text=_optional_text(record.anatomy_text, record.body_part, "anatomy_text", ctx),
        finding_text=_optional_text(
            record.finding_text, " ".join(r.phrase for r in findings) or report, "finding_text", ctx
        ),
        labels=labels,
        regions=regions,
        qa=[_qa(i, q) for i, q in enumerate(record.qa)],
        source=record.source,
    )
    return row, png


def file_image_path(image_id: str) -> str:
    """The corpus-relative path of an image stored as its own file (``corpus.layout: files``)."""
    return f"{IMAGES_DIR}/{image_id}.png"


def _load(record: SourceRecord, ctx: ProcessContext):
    if not record.image_file:
        raise RecordError("missing_image", "record has no image path")
    root = (ctx.data_root or Path(".")).resolve()
    if PurePath(record.image_file).is_absolute() or PureWindowsPath(record.image_file).drive:
        raise RecordError(
            "path_escapes_root",
            f"image path {record.image_file!r} is absolute: give it relative to the data root",
        )
    path = (root / record.image_file).resolve()
    if not path.is_relative_to(root):
        raise RecordError("path_escapes_root", f"image path {record.image_file!r} escapes the data root")
    if not path.is_file():
        raise RecordError("file_not_found", f"image file {record.image_file!r} not found")
    n_bytes = path.stat().st_size
    if n_bytes > ctx.max_file_bytes:
        raise RecordError("file_too_large", f"image file is {n_bytes} bytes > limit {ctx.max_file_bytes}")
    try:
        return decode_image(path.read_bytes(), ctx.max_image_pixels, ctx.dicom_window)
    except ImageError as exc:
        raise RecordError(exc.category, f"{record.image_file!r}: {exc}") from None


def _region(i: int, raw: RawRegion, record: SourceRecord, w: int, h: int, fit, ctx) -> Region:
    where = f"region {i} ({raw.label!r})"
    x0, y0, x1, y1 = (float(v) for v in raw.bbox)
    if raw.normalised:
        bbox = (x0, y0, x1, y1)
        if min(bbox) < 0 or max(bbox) > 1:
            raise RecordError("bad_box", f"{where}: normalised box {list(bbox)} is outside 0..1")
    else:
        tol = BOX_EDGE_TOLERANCE_PX
        if x0 < -tol or y0 < -tol or x1 > w + tol or y1 > h + tol:
            raise RecordError("bad_box", f"{where}: box {list(raw.bbox)} is outside the {w}x{h} image")
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        bbox = fit.box_to_normalised((x0, y0, x1, y1)) if fit else (x0 / w, y0 / h, x1 / w, y1 / h)
    if not (bbox[2] > bbox[0] and bbox[3] > bbox[1]):
        raise RecordError("bad_box", f"{where}: box {list(raw.bbox)} has zero or negative area")
    if (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) < ctx.min_box_area:
        raise RecordError("bad_box", f"{where}: box area below min_box_area {ctx.min_box_area}")
    if not raw.label or not raw.label.strip():
        raise RecordError("bad_box", f"region {i}: no label")
    size = raw.size if raw.size in SIZE_BUCKETS else None
    phrase, negatives = raw.phrase, raw.hard_negatives
    if not phrase and raw.kind == "anatomy":  # name the organ, as the generator does ("the left lung")
        phrase = f"the {raw.label}"
        swapped = f"the {swap_laterality(raw.label)}"
        negatives = ([swapped] if swapped != phrase else []) if negatives is None else negatives
    if not phrase:  # derive the phrase and its hard negatives from the geometry, as the generator does
        location = location_from_box(bbox, record.body_part)
        phrase = region_phrase(raw.label, size, location)
        # other *findings* (anatomy names such as "right lung" are not findings to swap in)
        others = sorted(
            {r.label for r in record.regions if r.kind == "finding" and r.label != raw.label}
            | set(record.labels)
        )
        negatives = hard_negatives(raw.label, size, location, others) if negatives is None else negatives
    return Region(tuple(round(v, 6) for v in bbox), raw.label, phrase, tuple(negatives or ()), raw.kind, size)


def _given_split(value: str | None) -> str:
    try:
        return normalise_split(value) or ""
    except ValueError as exc:
        raise RecordError("bad_record", str(exc)) from None


def _required_text(value: str | None, name: str, ctx) -> str:
    text = (value or "").strip()
    if not text:
        raise RecordError("missing_text", f"{name} is empty")
    if len(text) > ctx.max_text_chars:
        raise RecordError("text_too_long", f"{name} has {len(text)} characters > limit {ctx.max_text_chars}")
    return text


def _optional_text(value: str | None, fallback: str, name: str, ctx) -> str:
    return _required_text(value if value and value.strip() else fallback, name, ctx)


def _qa(i: int, q: dict) -> QA:
    try:
        return QA(str(q["question"]), str(q["answer"]), str(q.get("type", "other")))
    except (KeyError, TypeError):
        raise RecordError("bad_record", f"qa {i} needs 'question' and 'answer'") from None
