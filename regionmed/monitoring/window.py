"""The current window of the embedding log that the drift stage compares with the reference.

``[start, end)`` ends at the newest record (``latest``), the clock (``now``) or a given time; only
rows of the reference's model count (another model's embeddings live in another space).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from regionmed.monitoring.embedding_log import log_files, read_log


def _utc(value) -> pd.Timestamp | None:
    if value is None:
        return None
    if isinstance(value, str) and value.lower() == "now":
        return pd.Timestamp.now(tz="UTC")
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def latest_timestamp(log_dir: str | Path, tail_bytes: int = 1 << 16) -> pd.Timestamp | None:
    """The newest record's time: the last complete line of each file (files are append-only)."""
    newest = None
    for path in log_files(log_dir):
        ts = _last_ts(path, tail_bytes)
        if ts is not None and (newest is None or ts > newest):
            newest = ts
    return newest


def _last_ts(path: Path, tail_bytes: int) -> pd.Timestamp | None:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        start = max(0, size - tail_bytes)
        fh.seek(start)
        lines = fh.read().split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first one is cut
    for line in reversed(lines):
        try:
            return _utc(json.loads(line)["ts"])
        except (ValueError, KeyError, TypeError):
            continue
    if start > 0:  # lines longer than the tail: read the whole file
        return _last_ts(path, size + 1)
    return None


@dataclass
class Window:
    start: pd.Timestamp | None
    end: pd.Timestamp | None
    hours: float
    anchor: str  # latest | now | given

    def to_dict(self) -> dict[str, Any]:
        def iso(t):
            return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

        return {"start": iso(self.start), "end": iso(self.end), "hours": self.hours, "anchor": self.anchor}


def resolve_window(
    log_dir: str | Path, window_hours: float, window_end: str = "latest", since=None, until=None
) -> Window:
    """``[start, end)``: ``until`` (a time or ``now``) or the newest record (``latest``) or the clock."""
    if until is not None:
        end, anchor = _utc(until), "now" if str(until).lower() == "now" else "given"
    elif window_end == "now":
        end, anchor = pd.Timestamp.now(tz="UTC"), "now"
    else:
        newest = latest_timestamp(log_dir)
        end, anchor = (None if newest is None else newest + pd.Timedelta(microseconds=1)), "latest"
    start = (
        _utc(since)
        if since is not None
        else (None if end is None else end - pd.Timedelta(hours=window_hours))
    )
    if since is not None:
        anchor = "given"
    hours = window_hours if start is None or end is None else round((end - start).total_seconds() / 3600, 6)
    return Window(start, end, hours, anchor)


@dataclass
class Current:
    """The window's log rows per kind (only the reference's model), and what was left out."""

    frames: dict[str, pd.DataFrame]
    window: Window
    rows_in_window: dict[str, int] = field(default_factory=dict)
    rows_other_model: dict[str, int] = field(default_factory=dict)
    models: dict[str, dict[str, int]] = field(default_factory=dict)
    endpoints: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped_lines: int = 0


def load_current(
    log_dir: str | Path, window: Window, kinds: list[str], model_versions: list[str] | None
) -> Current:
    frames, in_window, other, models, endpoints, skipped = {}, {}, {}, {}, {}, 0
    for kind in kinds:
        if window.end is None:
            df = pd.DataFrame(columns=["ts", "endpoint", "model_version", "embedding"])
        else:
            df = read_log(log_dir, since=window.start, until=window.end, kind=kind)
            skipped = max(skipped, int(df.attrs.get("skipped_lines", 0)))
        in_window[kind] = len(df)
        models[kind] = (
            {str(k): int(v) for k, v in df["model_version"].value_counts().items()} if len(df) else {}
        )
        if model_versions and len(df):
            keep = df["model_version"].isin(model_versions)
            other[kind] = int((~keep).sum())
            df = df[keep].reset_index(drop=True)
        else:
            other[kind] = 0
        endpoints[kind] = (
            {str(k): int(v) for k, v in df["endpoint"].value_counts().items()} if len(df) else {}
        )
        frames[kind] = df
    return Current(frames, window, in_window, other, models, endpoints, skipped)
