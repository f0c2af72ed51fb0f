"""COCO-style detection data: an annotations JSON (images, boxes, categories) plus a captions CSV.

``corpus.importer.path`` is the COCO annotations JSON; images' ``file_name`` is relative to its
folder (the data root). ``corpus.importer.captions_csv`` holds the text: columns ``file_name``
and ``report`` (required), ``patient_id``, ``split``, ``modality``, ``body_part``, ``labels``
(``;``-separated), ``modality_text``, ``anatomy_text``, ``finding_text`` (optional); other
columns are ignored. A region's label is its category's name (``kind: anatomy`` when the
category's ``supercategory`` is ``"anatomy"``); its phrase is derived from the box geometry by the
build. An image without a caption row is rejected (``missing_text``).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from regionmed.corpus.importers._common import (
    Id,
    ImporterConfigError,
    RecordSource,
    _id_text,
    clean_text,
    describe_validation_error,
    header_size,
    load_json_file,
    resolve_setting,
    truncated,
)
from regionmed.corpus.records import RawRegion, RecordError, Rejected, SourceRecord
from regionmed.params_pipeline import ImportParams

CSV_REQUIRED = ("file_name", "report")
CSV_OPTIONAL = (
    "patient_id",
    "split",
    "modality",
    "body_part",
    "labels",
    "modality_text",
    "anatomy_text",
    "finding_text",
)
LABEL_SEPARATOR = ";"
ANATOMY_SUPERCATEGORY = "anatomy"

Number = Annotated[float, Field(allow_inf_nan=False)]


class _Entry(BaseModel):
    # COCO files carry many fields we do not use (license, coco_url, ...): ignore them.
    model_config = ConfigDict(extra="ignore", strict=True)


class CocoImage(_Entry):
    id: Id
    file_name: Annotated[str, Field(min_length=1)]
    width: Annotated[int, Field(gt=0)] | None = None
    height: Annotated[int, Field(gt=0)] | None = None


class CocoAnnotation(_Entry):
    id: Id | None = None
    image_id: Id
    category_id: Id
    bbox: Annotated[list[Number], Field(min_length=4, max_length=4)]  # [x, y, width, height] in pixels


class CocoCategory(_Entry):
    id: Id
    name: Annotated[str, Field(min_length=1)]
    supercategory: str | None = None


def record_id_for(file_name: str) -> str:
    """``images/case1/a.png`` → ``images/case1/a`` (the build makes it a safe file name)."""
    return Path(file_name).with_suffix("").as_posix()


def _norm_name(file_name: str) -> str:
    return Path(file_name.strip()).as_posix().removeprefix("./")


class CocoImporter(RecordSource):
    """``corpus.source: coco``; ``importer.path``: the annotations JSON; ``importer.captions_csv``: the
    texts."""

    name = "coco"

    def __init__(self, params: ImportParams):
        self.path = resolve_setting(params.path, "corpus.importer.path", "the COCO annotations JSON file")
        # A relative captions CSV is looked up in the working directory, then next to the annotations.
        self.captions = resolve_setting(
            params.captions_csv,
            "corpus.importer.captions_csv",
            "the captions CSV (columns file_name, report, ...)",
            base=self.path.parent,
        )
        super().__init__(params, self.path.parent)

    # -- reading the index files ------------------------------------------------------------------

    def _load_coco(self) -> tuple[list, list, list]:
        data = load_json_file(self.path, "corpus.importer.path")
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise ImporterConfigError(
                f"corpus.importer.path: {str(self.path)!r} is not a COCO annotations file "
                "(expected an object with an 'images' list)"
            )
        parts = []
        for key in ("annotations", "categories"):
            value = data.get(key, [])
            if not isinstance(value, list):
                raise ImporterConfigError(
                    f"corpus.importer.path: {key!r} in {str(self.path)!r} must be a list"
                )
            parts.append(value)
        return data["images"], parts[0], parts[1]

    def _load_captions(self) -> tuple[dict[str, dict[str, str]], list[Rejected]]:
        try:
            with open(self.captions, newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                columns = [c.strip() for c in (reader.fieldnames or [])]
                missing = [c for c in CSV_REQUIRED if c not in columns]
                if missing:
                    raise ImporterConfigError(
                        f"corpus.importer.captions_csv: {str(self.captions)!r} lacks column(s) {missing}; "
                        f"it has {columns}"
                    )
                rows = [{(k or "").strip(): v for k, v in row.items()} for row in reader]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ImporterConfigError(
                f"corpus.importer.captions_csv: cannot read {str(self.captions)!r} ({exc})"
            ) from None
        by_name: dict[str, dict[str, str]] = {}
        rejected = []
        for i, row in enumerate(rows, start=2):  # row 1 is the header
            name = _norm_name(row.get("file_name") or "")
            if not name:
                rejected.append(
                    Rejected(
                        f"{self.captions.name}:{i}",
                        "bad_record",
                        f"captions row {i}: field 'file_name' is empty",
                        truncated(row),
                    )
                )
            elif name in by_name:
                rejected.append(
                    Rejected(
                        f"{self.captions.name}:{i}",
                        "duplicate_id",
                        f"captions row {i}: second row for file_name {name!r}",
                        truncated(row),
                    )
                )
            else:
                by_name[name] = {**row, "_row": str(i)}
        return by_name, rejected

    # -- the build's interface --------------------------------------------------------------------

    def tasks(self) -> Iterator[tuple[str, tuple[SourceRecord, int | None, int | None]] | Rejected]:
        raw_images, raw_annotations, raw_categories = self._load_coco()
        captions, rejected = self._load_captions()
        yield from rejected

        categories: dict[str, CocoCategory] = {}
        for i, raw in enumerate(raw_categories):
            try:
                cat = CocoCategory.model_validate(raw)
            except ValidationError as exc:
                raise ImporterConfigError(
                    describe_validation_error(exc, f"corpus.importer.path: categories[{i}]")
                ) from None
            categories[cat.id] = cat

        images: dict[str, CocoImage] = {}
        order: list[str] = []
        for i, raw in enumerate(raw_images):
            try:
                image = CocoImage.model_validate(raw)
            except ValidationError as exc:
                rid = (
                    record_id_for(_norm_name(raw["file_name"]))
                    if isinstance(raw, dict)
                    and isinstance(raw.get("file_name"), str)
                    and raw["file_name"].strip()
                    else f"images[{i}]"
                )
                yield Rejected(
                    rid, "bad_record", describe_validation_error(exc, f"images[{i}]"), truncated(raw)
                )
                continue
            if image.id in images:
                yield Rejected(
                    record_id_for(image.file_name),
                    "duplicate_id",
                    f"images[{i}]: image id {image.id!r} used twice",
                    truncated(raw),
                )
                continue
            images[image.id] = image
            order.append(image.id)

        regions: dict[str, list[RawRegion]] = defaultdict(list)
        broken: dict[str, str] = {}  # image id -> first reason its annotations are broken
        for i, raw in enumerate(raw_annotations):
            where = f"annotations[{i}]" + (
                f" (id {raw.get('id')})" if isinstance(raw, dict) and "id" in raw else ""
            )
            try:
                ann = CocoAnnotation.model_validate(raw)
            except ValidationError as exc:
                image_id = _id_text(raw.get("image_id")) if isinstance(raw, dict) else None
                reason = describe_validation_error(exc, where)
                if image_id in images:
                    broken.setdefault(image_id, reason)
                else:
                    yield Rejected(f"annotation:{i}", "bad_record", reason, truncated(raw))
                continue
            if ann.image_id not in images:
                yield Rejected(
                    f"annotation:{i}",
                    "bad_record",
                    f"{where}: image_id {ann.image_id!r} is not in 'images'",
                    truncated(raw),
                )
                continue
            if ann.category_id not in categories:
                broken.setdefault(
                    ann.image_id, f"{where}: category_id {ann.category_id!r} is not in 'categories'"
                )
                continue
            cat = categories[ann.category_id]
            x, y, w, h = ann.bbox
            kind = (
                "anatomy" if (cat.supercategory or "").strip().lower() == ANATOMY_SUPERCATEGORY else "finding"
            )
            regions[ann.image_id].append(RawRegion((x, y, x + w, y + h), cat.name, kind=kind))

        for image_id in order:
            image = images[image_id]
            name = _norm_name(image.file_name)
            record_id = record_id_for(name)
            row = captions.pop(name, None)
            summary = {"coco_image": image.model_dump(), "n_regions": len(regions.get(image_id, []))}
            if image_id in broken:
                yield Rejected(record_id, "bad_record", broken[image_id], summary)
                continue
            if row is None:
                yield Rejected(
                    record_id,
                    "missing_text",
                    f"image {image.file_name!r}: no row in the captions CSV {self.captions.name!r}",
                    summary,
                )
                continue
            labels_text = row.get("labels") or ""
            record = SourceRecord(
                record_id=record_id,
                source=self.name,
                image_file=image.file_name,
                patient_id=clean_text(row.get("patient_id")),
                split=clean_text(row.get("split")),
                modality=clean_text(row.get("modality")) or "unknown",
                body_part=clean_text(row.get("body_part")) or "unknown",
                report=(row.get("report") or "").strip(),
                modality_text=clean_text(row.get("modality_text")),
                anatomy_text=clean_text(row.get("anatomy_text")),
                finding_text=clean_text(row.get("finding_text")),
                labels=[s.strip() for s in labels_text.split(LABEL_SEPARATOR) if s.strip()],
                regions=regions.get(image_id, []),
            )
            yield record_id, (record, image.width, image.height)

        for name, row in sorted(captions.items(), key=lambda kv: int(kv[1]["_row"])):
            row = {k: v for k, v in row.items() if k != "_row"} | {"row": row["_row"]}
            yield Rejected(
                f"{self.captions.name}:{row['row']}",
                "unknown_image",
                f"captions row {row['row']}: file_name {name!r} is not in the COCO 'images' list",
                truncated(row),
            )

    def materialise(self, task) -> SourceRecord:
        _, (record, width, height) = task
        if width is not None and height is not None and record.regions:
            # Boxes are in pixels of the image the annotations were made on: a resized copy would
            # silently shift every box, so the file must have the size the JSON states.
            size = header_size(self.root, record.image_file)
            if size is not None and size != (width, height):
                raise RecordError(
                    "size_mismatch",
                    f"image {record.image_file!r} is {size[0]}x{size[1]} but the "
                    f"COCO entry says {width}x{height}; its boxes would be misplaced",
                )
        return record
