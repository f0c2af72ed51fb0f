"""Retention of the monitor flow's drift reports (``flows.monitor.retention``).

Each monitor run writes a folder ``<report_root>/<YYYYmmddTHHMMSSZ>-<run>/`` with the HTML report
(``index.html`` + Evidently's ``image.html`` / ``text.html``, ~4 MB with data) and ``summary.json``
(a few kB). An hourly schedule adds ~90 MB a day, so:

- a folder keeps its full report while it is among the newest ``keep_reports`` folders **and** is
  younger than ``keep_days`` (either limit ``None``: not applied);
- after that only ``summary.json`` stays, until the folder is older than ``keep_summaries_days``
  (``None``: for ever), when the folder goes.

A folder's age comes from its name (the flow writes the UTC time first), else its modification time.
Folders not named like that, and files directly under ``report_root``, are left alone.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

SUMMARY_FILE = "summary.json"
_STAMP = re.compile(r"^(\d{8}T\d{6}Z)-")


@dataclass
class Pruned:
    kept: list[str] = field(default_factory=list)  # full reports kept
    summaries_only: list[str] = field(default_factory=list)  # reports reduced to their summary (this call)
    removed: list[str] = field(default_factory=list)  # folders removed (this call)
    bytes_freed: int = 0

    def line(self) -> str:
        return (
            f"report retention: {len(self.kept)} full reports kept, {len(self.summaries_only)} reduced to "
            f"{SUMMARY_FILE}, {len(self.removed)} folders removed ({self.bytes_freed / 1e6:.1f} MB freed)"
        )


def report_time(folder: Path) -> datetime:
    m = _STAMP.match(folder.name)
    if m:
        return datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return datetime.fromtimestamp(folder.stat().st_mtime, UTC)


def _size(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def prune_reports(
    report_root: str | Path,
    keep_reports: int | None,
    keep_days: float | None,
    keep_summaries_days: float | None,
    *,
    now: datetime | None = None,
    protect: str | Path | None = None,
) -> Pruned:
    """Apply the retention rules (module docstring) to ``report_root``; ``protect``: a folder never
    touched."""
    root = Path(report_root)
    now = now or datetime.now(UTC)
    out = Pruned()
    if not root.is_dir():
        return out
    folders = sorted(
        (p for p in root.iterdir() if p.is_dir() and _STAMP.match(p.name)), key=report_time, reverse=True
    )
    protected = Path(protect).resolve() if protect else None
    for rank, folder in enumerate(folders):
        age_days = (now - report_time(folder)).total_seconds() / 86400
        if folder.resolve() == protected:
            out.kept.append(folder.name)
            continue
        if keep_summaries_days is not None and age_days > keep_summaries_days:
            out.bytes_freed += _size(folder)
            shutil.rmtree(folder)
            out.removed.append(folder.name)
            continue
        full = (keep_reports is None or rank < keep_reports) and (keep_days is None or age_days <= keep_days)
        extra = [p for p in folder.iterdir() if p.name != SUMMARY_FILE]
        if full:
            out.kept.append(folder.name)
        elif extra:
            for p in extra:
                out.bytes_freed += _size(p)
                shutil.rmtree(p) if p.is_dir() else p.unlink()
            out.summaries_only.append(folder.name)
    return out
