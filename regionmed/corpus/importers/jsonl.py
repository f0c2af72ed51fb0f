"""The generic JSONL import format: one JSON object per line, one image per object.

The format is documented for users in ``docs/import-format.md``; the pydantic models below are
its exact definition. Image paths are relative to the folder holding the JSONL file (the data
root; a path that leaves it is rejected). Boxes are ``[x0, y0, x1, y1]`` in pixels of the source
image unless the region says ``"normalised": true``. A line that is not JSON, or whose fields
have the wrong type, is rejected with its line number and the field; the other lines go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from regionmed.corpus.importers._common import (
    Id,
    ImporterConfigError,
    RecordSource,
    describe_validation_error,
    resolve_setting,
    truncated,
)
from regionmed.corpus.records import RawRegion, Rejected, SourceRecord
from regionmed.corpus.splits import normalise_split
from regionmed.params_pipeline import ImportParams

QA_TYPE_NAMES = ("presence", "location", "modality", "count", "other")

Number = Annotated[float, Field(allow_inf_nan=False)]
Text = Annotated[str, Field(min_length=1)]


class _Line(BaseModel):
    # strict: no silent "5" -> 5 or 5 -> "5"; forbid: a misspelt field name is an error, not lost data.
    model_config = ConfigDict(extra="forbid", strict=True)


class RegionLine(_Line):
    bbox: Annotated[list[Number], Field(min_length=4, max_length=4)]
    label: Text
    phrase: str | None = None
    hard_negatives: list[str] | None = None
    kind: Literal["finding", "anatomy"] = "finding"
    size: Literal["subtle", "small", "large"] | None = None
    normalised: bool = False  # true: bbox is already 0..1 of the source image


class QALine(_Line):
    question: Text
    answer: Text
    type: Literal[QA_TYPE_NAMES] = "other"  # type: ignore[valid-type]


class RecordLine(_Line):
    id: Id
    image: str | None = None
    report: str | None = None
    patient_id: Id | None = None
    split: str | None = None
    modality: Text = "unknown"
    body_part: Text = "unknown"
    modality_text: str | None = None
    anatomy_text: str | None = None
    finding_text: str | None = None
    labels: list[Text] = []
    regions: list[RegionLine] = []
    qa: list[QALine] = []
    meta: dict[str, Any] | None = None  # free-form, for the user's own bookkeeping; not imported

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str | None) -> str | None:
        return normalise_split(value)  # raises ValueError naming the allowed values


class JsonlImporter(RecordSource):
    """``corpus.source: jsonl``; ``corpus.importer.path`` is the JSONL file."""

    name = "jsonl"

    def __init__(self, params: ImportParams):
        self.path = resolve_setting(
            params.path, "corpus.importer.path", "the JSONL file (one record per line)"
        )
        super().__init__(params, self.path.parent)

    def tasks(self) -> Iterator[tuple[str, SourceRecord] | Rejected]:
        try:
            with open(self.path, "rb") as f:
                for lineno, raw in enumerate(f, start=1):
                    if raw.strip():
                        yield self._parse(lineno, raw)
        except OSError as exc:
            raise ImporterConfigError(
                f"corpus.importer.path: cannot read {str(self.path)!r} ({exc})"
            ) from None

    def _parse(self, lineno: int, raw: bytes) -> tuple[str, SourceRecord] | Rejected:
        where = f"line {lineno}"
        fallback_id = f"{self.path.name}:{lineno}"
        try:
            text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            return Rejected(
                fallback_id,
                "invalid_json",
                f"{where}: not UTF-8 text ({exc.reason})",
                {"line": lineno, "raw": truncated(raw.decode("utf-8", "replace"))},
            )
        try:
            obj = json.loads(text.strip())
        except json.JSONDecodeError as exc:
            return Rejected(
                fallback_id,
                "invalid_json",
                f"{where}: invalid JSON ({exc.msg}, column {exc.colno})",
                {"line": lineno, "raw": truncated(text.rstrip())},
            )
        if not isinstance(obj, dict):
            return Rejected(
                fallback_id,
                "invalid_json",
                f"{where}: expected a JSON object, got {type(obj).__name__}",
                {"line": lineno, "raw": truncated(obj)},
            )
        record_id = obj.get("id")
        record_id = (
            str(record_id) if isinstance(record_id, (str, int)) and str(record_id).strip() else fallback_id
        )
        kept = {"line": lineno, "raw": truncated(obj)}
        try:
            line = RecordLine.model_validate(obj)
        except ValidationError as exc:
            return Rejected(record_id, "bad_record", describe_validation_error(exc, where), kept)
        if not (line.report or "").strip():
            return Rejected(record_id, "missing_text", f"{where}: field 'report' is missing or empty", kept)
        if not (line.image or "").strip():
            return Rejected(record_id, "missing_image", f"{where}: field 'image' is missing or empty", kept)
        record = SourceRecord(
            record_id=line.id,
            source=self.name,
            image_file=line.image,
            patient_id=line.patient_id,
            split=line.split,
            modality=line.modality,
            body_part=line.body_part,
            report=line.report,
            modality_text=line.modality_text,
            anatomy_text=line.anatomy_text,
            finding_text=line.finding_text,
            labels=list(line.labels),
            regions=[
                RawRegion(
                    tuple(r.bbox),
                    r.label,
                    r.phrase,
                    r.hard_negatives,
                    r.kind,
                    r.size,
                    normalised=r.normalised,
                )
                for r in line.regions
            ],
            qa=[q.model_dump() for q in line.qa],
        )
        return line.id, record


def jsonl_line(record: dict[str, Any]) -> str:
    """One record as a JSONL line (used by converters and tests; validates it first)."""
    RecordLine.model_validate(record)
    return json.dumps(record, ensure_ascii=False, sort_keys=False)


def write_jsonl(records: list[dict[str, Any]], path: str | Path) -> Path:
    """Write records as a JSONL file, validating every record (a converter's last step)."""
    path = Path(path)
    path.write_text("".join(jsonl_line(r) + "\n" for r in records), encoding="utf-8")
    return path
