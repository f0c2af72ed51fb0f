"""The monitoring log of served embeddings: what the service computed, for the drift stage to read.

Format (schema version 1)
-------------------------
A directory of JSON Lines files named ``embeddings-<UTC start>-<pid>-<seq>.jsonl`` (e.g.
``embeddings-20261128T101500123456Z-4242-0003.jsonl``). Each server process writes its own file, so
workers never interleave; a file is closed and a new one started when it passes ``rotate_bytes``
or has been open ``rotate_seconds`` (``keep_files`` optionally deletes the oldest). A file's
name time is a lower bound of its records' ``ts``: the writer reads the clock once per write, under
its lock, and that reading both decides the rotation (and names a new file) and stamps the records,
never earlier than the file's start nor than the previous record of the file (so a clock stepped back
cannot break it). The reader relies on this to skip files that start at or after a window's end.
One line per served embedding::

    {"v": 1, "ts": "2026-11-28T10:15:00.123456Z", "endpoint": "encode_image",
     "model_version": "regionmed:3f2a...", "request": "9c1e5b0a7d3f2e11", "kind": "image",
     "dim": 128, "embedding": [0.01234, ...],
     "width": 512, "height": 512, "channels": 1, "format": "png", "bytes": 48213,
     "mean": 0.31, "std": 0.22}

- ``ts``: when it was served (UTC, ISO 8601). ``endpoint``: the API that served it.
  ``model_version``: the model's tag (or a hash of a model folder's weights).
- ``request``: 16 hex digits of SHA-256 of the request id (the ``X-Request-ID`` the client sent or
  the one the service generated and returned in the response header); never the id itself.
- ``kind``: ``image`` | ``text`` | ``region``; ``embedding``: L2-normalised, 6 decimals.
- Descriptors, only from this closed list (anything else is refused, see ``DESCRIPTOR_KEYS``):
  images: ``width``, ``height`` (of the upload), ``channels``, ``format`` (png | jpeg | dicom |
  other), ``bytes`` (upload size), ``mean`` and ``std`` (intensity of the model input, 0..1);
  texts: ``n_chars``, ``n_tokens`` (before truncation), ``truncated``; regions: ``box``
  ``[x0, y0, x1, y1]`` normalised.

What never goes in: pixels, the text of a query, report or label, a file name, any DICOM header
field. The writer enforces it: records carry numbers, a few fixed enum strings, and the hashed id.

Reading: :func:`read_log` → a DataFrame (``ts`` as UTC timestamps, ``embedding`` as float32
arrays, one column per descriptor); a truncated last line (a file being written, a crash) is
skipped and counted in ``df.attrs["skipped_lines"]``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from regionmed.atomic import append_whole, is_no_space

logger = logging.getLogger(__name__)
SCHEMA_VERSION = 1
FILE_PREFIX = "embeddings-"
FILE_SUFFIX = ".jsonl"
KINDS = ("image", "text", "region")
IMAGE_FORMATS = ("png", "jpeg", "dicom", "other")
# The closed list of per-record descriptors and their types (bool before int: bool is an int).
DESCRIPTOR_KEYS: dict[str, tuple[type, ...]] = {
    "width": (int,),
    "height": (int,),
    "channels": (int,),
    "format": (str,),
    "bytes": (int,),
    "mean": (float, int),
    "std": (float, int),
    "n_chars": (int,),
    "n_tokens": (int,),
    "truncated": (bool,),
    "box": (list, tuple),
}
CORE_COLUMNS = ["ts", "endpoint", "model_version", "request", "kind", "dim", "embedding"]
_NAME_SAFE = set("abcdefghijklmnopqrstuvwxyz0123456789_-.:")


def hash_request_id(request_id: str, salt: str = "") -> str:
    """16 hex digits of SHA-256(salt + id): joins records of one request without storing the id."""
    return hashlib.sha256(f"{salt}{request_id}".encode()).hexdigest()[:16]


def _utc_iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_name(value: str, what: str) -> str:
    value = str(value)
    if not value or len(value) > 200 or not set(value.lower()) <= _NAME_SAFE:
        raise ValueError(f"{what} {value!r} is not a plain name (letters, digits, _-.:)")
    return value


def _check_descriptors(desc: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in desc.items():
        if key not in DESCRIPTOR_KEYS:
            raise ValueError(f"descriptor {key!r} is not allowed in the embedding log")
        if value is None:
            continue
        types = DESCRIPTOR_KEYS[key]
        if key in ("width", "height", "channels", "bytes", "n_chars", "n_tokens"):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"descriptor {key!r} must be an integer")
            value = int(value)
        elif key == "format":
            if value not in IMAGE_FORMATS:
                raise ValueError(f"descriptor 'format' must be one of {IMAGE_FORMATS}")
        elif key == "truncated":
            value = bool(value)
        elif key == "box":
            value = [round(float(v), 6) for v in value]
            if len(value) != 4:
                raise ValueError("descriptor 'box' must have 4 numbers")
        elif isinstance(value, (float, int, np.floating, np.integer)) and not isinstance(value, bool):
            value = round(float(value), 6)
        elif not isinstance(value, types):
            raise ValueError(f"descriptor {key!r} has type {type(value).__name__}")
        out[key] = value
    return out


@dataclass
class _OpenFile:
    path: Path
    handle: Any
    opened: float
    size: int
    last: float  # the newest record's time (records of a file never go back in time)


class EmbeddingLogWriter:
    """Append-only, rotating JSONL writer; thread-safe; one file per process at a time.

    Each :meth:`log` call writes its lines to the OS before returning, so a record is in the file
    once the response that carried its embedding has been built. A write is all of its lines or
    none: on a full disk the file is cut back to its last whole line, the rows are dropped and
    counted (:attr:`rows_dropped`), one warning says logging paused, and the next write tries again
    (a warning says when it resumed). The caller (the service) keeps serving either way.
    """

    def __init__(
        self,
        directory: str | Path,
        rotate_bytes: int = 16 * 1024 * 1024,
        rotate_seconds: float = 3600.0,
        keep_files: int | None = None,
        clock=time.time,
    ):
        self.directory = Path(directory)
        self.rotate_bytes, self.rotate_seconds, self.keep_files = (
            int(rotate_bytes),
            float(rotate_seconds),
            keep_files,
        )
        self._clock = clock
        self._lock = threading.Lock()
        self._file: _OpenFile | None = None
        self._seq = 0
        self.records_written = 0
        self.rows_dropped = 0  # rows not written because the disk was full (the log paused)
        self.paused = False

    # ---- writing -------------------------------------------------------------------------------
    def log(
        self,
        *,
        endpoint: str,
        model_version: str,
        request: str,
        kind: str,
        embeddings: Any,
        descriptors: Sequence[Mapping[str, Any]] | None = None,
    ) -> int:
        """Append one record per row of ``embeddings`` ``[N, D]``; ``descriptors`` per row (or none).

        ``request`` must already be hashed (:func:`hash_request_id`). Returns the rows written.
        """
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim == 1:
            emb = emb[None]
        if emb.ndim != 2:
            raise ValueError(f"embeddings must be [N, D], got shape {emb.shape}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not (len(request) == 16 and set(request) <= set("0123456789abcdef")):
            raise ValueError("request must be a hashed id (hash_request_id)")
        descriptors = list(descriptors) if descriptors is not None else [{}] * len(emb)
        if len(descriptors) != len(emb):
            raise ValueError(f"{len(descriptors)} descriptors for {len(emb)} embeddings")
        endpoint, model_version = (
            _check_name(endpoint, "endpoint"),
            _check_name(model_version, "model_version"),
        )
        # Each line's JSON is built here, outside the lock, without its ``ts``; the time is read and
        # prefixed under the lock (see the module docstring: a record is never older than its file).
        bodies = []
        for row, desc in zip(np.round(emb.astype(np.float64), 6), descriptors, strict=True):
            record = {
                "endpoint": endpoint,
                "model_version": model_version,
                "request": request,
                "kind": kind,
                "dim": int(emb.shape[1]),
                "embedding": row.tolist(),
                **_check_descriptors(desc),
            }
            bodies.append(json.dumps(record, separators=(",", ":"), allow_nan=False)[1:])  # without "{"
        if not bodies:
            return 0
        with self._lock:
            now = self._clock()
            try:
                f = self._current(now)
                t = max(now, f.opened, f.last)
                head = f'{{"v":{SCHEMA_VERSION},"ts":"{_utc_iso(t)}",'
                data = "".join(f"{head}{body}\n" for body in bodies).encode()
                f.size = append_whole(f.handle, data, f.size)  # whole lines or nothing
            except OSError as exc:
                if not is_no_space(exc):
                    raise
                self._pause(len(bodies))
                return 0
            f.last = t
            self.records_written += len(bodies)
            if self.paused:
                self.paused = False
                logger.warning(
                    "embedding log: space is back in %s, logging resumed (%d rows were dropped in all)",
                    self.directory,
                    self.rows_dropped,
                )
        return len(bodies)

    def _pause(self, rows: int) -> None:
        """The disk is full: drop these rows, say so once, keep serving; the next write tries again."""
        self.rows_dropped += rows
        if not self.paused:
            self.paused = True
            logger.warning(
                "embedding log: no space left in %s, logging paused (the service keeps serving; "
                "dropped rows are counted) until space is freed",
                self.directory,
            )

    def _current(self, now: float) -> _OpenFile:
        """The file to write at ``now`` (a new one when the open one is full or old); under the lock."""
        f = self._file
        if f is not None and (f.size >= self.rotate_bytes or now - f.opened >= self.rotate_seconds):
            f.handle.close()
            self._file = f = None
            self._prune()
        if f is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            start = datetime.fromtimestamp(now, tz=UTC)
            stamp = start.strftime("%Y%m%dT%H%M%S%fZ")
            while True:
                self._seq += 1
                path = self.directory / f"{FILE_PREFIX}{stamp}-{os.getpid()}-{self._seq:04d}{FILE_SUFFIX}"
                if not path.exists():
                    break
            opened = start.timestamp()  # the name's time (in microseconds): a record at it has the same
            handle = open(path, "ab", buffering=0)  # noqa: SIM115  (kept open; unbuffered: append_whole)
            self._file = f = _OpenFile(path, handle, opened, 0, opened)
        return f

    def _prune(self) -> None:
        if not self.keep_files:
            return
        files = log_files(self.directory)
        for old in files[: max(0, len(files) - self.keep_files)]:
            with contextlib.suppress(OSError):
                old.unlink()

    def flush(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.handle.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.handle.close()
                self._file = None


# ---- reading -------------------------------------------------------------------------------------
def log_files(directory: str | Path) -> list[Path]:
    """The log's files, oldest first (by the start time in their names)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}") if p.is_file())


def _file_start(path: Path) -> datetime | None:
    try:
        stamp = path.name[len(FILE_PREFIX) :].split("-", 1)[0]
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _as_utc(value) -> datetime | None:
    """A bound as a UTC datetime, rounded *up* to the microsecond: records' times are whole
    microseconds, so ``ts >= bound`` and ``ts < bound`` keep their meaning for a finer bound."""
    if value is None:
        return None
    import pandas as pd

    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.ceil("us").to_pydatetime()


def iter_records(directory: str | Path, since=None, until=None) -> Iterable[dict]:
    """Raw records with ``since <= ts < until`` (either bound optional); bad lines are skipped."""
    yield from _scan(directory, _as_utc(since), _as_utc(until), [0])


def _scan(directory, since, until, skipped: list[int]) -> Iterable[dict]:
    for path in log_files(directory):
        start = _file_start(path)
        if until is not None and start is not None and start >= until:
            continue  # every record of a file is at or after its name's time (the writer's invariant)
        # (no skipping by mtime for ``since``: a copied or restored file has a wrong one)
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                    ts = datetime.strptime(rec["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
                except (ValueError, KeyError, TypeError):
                    skipped[0] += 1
                    continue
                if (since is not None and ts < since) or (until is not None and ts >= until):
                    continue
                yield rec


def read_log(
    directory: str | Path, since=None, until=None, endpoint: str | None = None, kind: str | None = None
):
    """The records with ``since <= ts < until`` as a DataFrame, sorted by time.

    ``since``/``until``: datetimes, pandas timestamps or ISO strings (naive = UTC). Columns: ``ts``
    (datetime64, UTC), ``endpoint``, ``model_version``, ``request``, ``kind``, ``dim``,
    ``embedding`` (float32 arrays) and one column per descriptor present. ``df.attrs``:
    ``skipped_lines`` (unparseable lines) and ``files`` (files in the directory).
    """
    import pandas as pd

    skipped = [0]
    rows = [
        r
        for r in _scan(directory, _as_utc(since), _as_utc(until), skipped)
        if (endpoint is None or r.get("endpoint") == endpoint) and (kind is None or r.get("kind") == kind)
    ]
    extra = sorted({k for r in rows for k in r} - set(CORE_COLUMNS) - {"v"})
    df = pd.DataFrame(rows, columns=["v", *CORE_COLUMNS, *extra])
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601")
    df["embedding"] = [np.asarray(e, dtype=np.float32) for e in df["embedding"]]
    df = df.sort_values("ts", kind="stable").reset_index(drop=True)
    df.attrs["skipped_lines"] = skipped[0]
    df.attrs["files"] = len(log_files(directory))
    return df


def embedding_matrix(df) -> np.ndarray:
    """``[N, D]`` float32 from ``read_log``'s ``embedding`` column (all rows must share one ``dim``)."""
    if len(df) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack(list(df["embedding"])).astype(np.float32)
