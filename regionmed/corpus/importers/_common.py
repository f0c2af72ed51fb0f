"""What every importer shares: config errors, path resolution, text cleaning, error wording.

An importer is a build *source* (see :mod:`regionmed.corpus.build`): it has ``name``, ``root``
(the data root that image paths must stay inside), ``tasks()`` yielding ``(record_id,
SourceRecord)`` tuples or :class:`Rejected` objects, and ``materialise(task)``. Importers read
their index files (JSONL, COCO JSON, MedPix JSON) in ``tasks()`` in the main process and hand
ready :class:`SourceRecord` objects to the workers, which only decode images. The source object
itself holds nothing but paths, so it is cheap to send to worker processes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ValidationError

from regionmed.corpus.records import MAX_REJECTED_CHARS, BuildError, Rejected, SourceRecord
from regionmed.params_pipeline import ImportParams

# Values that mean "nothing here" in hand-filled fields (MedPix uses "N/A").
EMPTY_TEXT = frozenset({"", "n/a", "na", "none", "null", "nan", "-"})
MAX_RECORD_CHARS = MAX_REJECTED_CHARS  # how much of a broken raw record is kept in rejected.jsonl


def _id_text(value: Any) -> Any:
    """Ids are often numbers in exported data; they are taken as text (but true/false are not ids)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or blank")
    return value.strip()


# An identifier: non-blank text (surrounding spaces dropped), or an integer taken as text.
Id = Annotated[str, BeforeValidator(_id_text), AfterValidator(_non_blank)]


class ImporterConfigError(BuildError, ValueError):
    """The import cannot start: a missing or wrong setting or file. The message names the setting.

    A :class:`BuildError` (bad input): ``regionmed corpus build`` prints it and exits 2, no traceback.
    """


def resolve_setting(
    value: str | None, setting: str, what: str, *, is_dir: bool = False, base: Path | None = None
) -> Path:
    """A path from ``params.yaml`` (relative to the working directory, else ``base``) that must exist."""
    if value is None or not str(value).strip():
        raise ImporterConfigError(f"{setting} is not set: {what}")
    path = Path(value).expanduser()
    candidates = [path]
    if not path.is_absolute() and base is not None:
        candidates.append(base / path)
    for candidate in candidates:
        if candidate.is_dir() if is_dir else candidate.is_file():
            return candidate.resolve()
    kind = "folder" if is_dir else "file"
    tried = " or ".join(repr(str(c)) for c in candidates)
    raise ImporterConfigError(f"{setting} = {value!r}: no such {kind} ({tried}); it should be {what}")


def load_json_file(path: Path, setting: str) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImporterConfigError(f"{setting}: cannot read {str(path)!r} as JSON ({exc})") from None


def clean_text(value: Any) -> str | None:
    """A text field, stripped; ``None`` for missing or placeholder values ("N/A", "")."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return None if text.lower() in EMPTY_TEXT else text


def field_name(loc: tuple) -> str:
    """A pydantic error location as a field path: ``("regions", 0, "bbox")`` → ``regions[0].bbox``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(record)"


def describe_validation_error(exc: ValidationError, where: str, max_errors: int = 3) -> str:
    """``line 4: field 'regions[0].bbox': List should have at least 4 items ...; field 'id': ...``."""
    parts = []
    for err in exc.errors()[:max_errors]:
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"field {field_name(err['loc'])!r}: {msg}")
    more = len(exc.errors()) - max_errors
    if more > 0:
        parts.append(f"and {more} more")
    return f"{where}: " + "; ".join(parts)


def truncated(raw: Any) -> Any:
    """A raw record for rejected.jsonl, cut down when it is large."""
    text = raw if isinstance(raw, str) else json.dumps(raw, default=str, ensure_ascii=False)
    if len(text) <= MAX_RECORD_CHARS:
        return raw
    return {"truncated": text[:MAX_RECORD_CHARS] + "..."}


class RecordSource:
    """Base class: tasks carry finished :class:`SourceRecord` objects; ``materialise`` unwraps them."""

    name = "import"

    def __init__(self, params: ImportParams, root: Path):
        self.params = params
        self.root = root

    def tasks(self) -> Iterator[tuple[str, SourceRecord] | Rejected]:  # pragma: no cover - abstract
        raise NotImplementedError

    def materialise(self, task: tuple[str, SourceRecord]) -> SourceRecord:
        return task[1]


def header_size(root: Path, image_file: str) -> tuple[int, int] | None:
    """``(width, height)`` of an image from its header only, or ``None`` when it cannot be told.

    Only for files safely inside ``root``; anything else is left to the build's own checks, which
    reject it with the right reason (path escaping the root, missing file, unreadable image).
    """
    from regionmed.corpus.images import is_dicom

    try:
        path = (root / image_file).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file():
            return None
        with open(path, "rb") as f:
            head = f.read(132)
            f.seek(0)
            if is_dicom(head):
                import pydicom

                ds = pydicom.dcmread(f, stop_before_pixels=True)
                return int(ds.Columns), int(ds.Rows)
            from PIL import Image

            from regionmed.corpus.images import PIL_FORMATS, displayed_size

            with Image.open(f, formats=PIL_FORMATS) as img:
                return displayed_size(img)
    except Exception:  # unreadable: the decode step reports it properly
        return None
