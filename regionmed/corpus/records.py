"""What every source hands to the build: raw records, their regions, and why a record was set aside."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from regionmed.errors import BadInput

# Longest string kept of a rejected record in rejected.jsonl (a 1 MB report is cut to this).
MAX_REJECTED_CHARS = 2000


class BuildError(BadInput):
    """The build cannot be used: too many records rejected (the source data is bad), or an importer's
    settings are wrong (exit status 2: regionmed/errors.py)."""


class RecordError(ValueError):
    """A record that cannot go into the corpus. ``category`` groups reasons in the build summary."""

    def __init__(self, category: str, message: str):
        super().__init__(message)
        self.category = category


@dataclass
class RawRegion:
    """A region as a source gives it: a box in source-image pixels unless ``normalised``."""

    bbox: tuple[float, float, float, float]
    label: str
    phrase: str | None = None
    hard_negatives: list[str] | None = None
    kind: str = "finding"
    size: str | None = None
    normalised: bool = False


@dataclass
class SourceRecord:
    """One image with its texts and annotations, before normalisation.

    Exactly one of ``image_file`` (a path relative to the source's data root) or ``pixels``
    (an in-memory uint8 array, for generated images) is set.
    """

    record_id: str
    source: str
    image_file: str | None = None
    pixels: np.ndarray | None = None
    patient_id: str | None = None
    split: str | None = None
    modality: str = "unknown"
    body_part: str = "unknown"
    report: str = ""
    modality_text: str | None = None
    anatomy_text: str | None = None
    finding_text: str | None = None
    labels: list[str] = field(default_factory=list)
    regions: list[RawRegion] = field(default_factory=list)
    qa: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The record as written to ``rejected.jsonl`` (everything but in-memory pixels)."""
        d = asdict(self)
        d.pop("pixels")
        return d


@dataclass
class Rejected:
    """A record set aside before or during processing, with the reason."""

    record_id: str
    category: str
    reason: str
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The line of ``rejected.jsonl``: every string cut to :data:`MAX_REJECTED_CHARS`."""
        return {
            "record_id": _cut(self.record_id),
            "category": self.category,
            "reason": _cut(self.reason),
            "record": _cut(self.record),
        }


def _cut(value: Any) -> Any:
    """``value`` with every string in it (keys and values, at any depth) cut to MAX_REJECTED_CHARS."""
    if isinstance(value, str):
        if len(value) <= MAX_REJECTED_CHARS:
            return value
        return value[:MAX_REJECTED_CHARS] + f"... [cut: {len(value)} characters]"
    if isinstance(value, dict):
        return {_cut(str(k)): _cut(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut(v) for v in value]
    return value
