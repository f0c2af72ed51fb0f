"""The ``monitor`` stage: drift of the served embeddings (a window of the embedding log) against the
packaged model's reference (regionmed/monitoring/drift.py describes the checks and the outputs).

Whatever it finds (drift, no drift, not enough data) is the stage's result, not a failure; with
``fail_on_drift`` a drift is a failed check (:class:`DriftFound`, exit status 1: for scripts). A
missing reference or an unusable window is bad input.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regionmed.atomic import atomic_write_text
from regionmed.errors import BadInput, CheckFailed
from regionmed.monitoring.drift import check_kind, summarise, write_reports
from regionmed.monitoring.reference import Reference
from regionmed.monitoring.window import load_current, resolve_window


class DriftFound(CheckFailed):
    """Drift was found and the caller asked to fail on it (``fail_on_drift``)."""


@dataclass(frozen=True)
class MonitorResult:
    summary: dict[str, Any]  # what monitor.summary_file holds
    summary_file: Path

    @property
    def drift(self) -> bool:
        return bool(self.summary["drift"])

    def summary_line(self) -> str:
        return f"{self.summary['status']}: {self.summary['message']}"


def run(
    params,
    *,
    log_dir: str | Path | None = None,
    since=None,
    until=None,
    window_hours: float | None = None,
    reference: Reference | None = None,
    reference_dir: str | Path | None = None,
    report_dir: str | Path | None = None,
    summary_file: str | Path | None = None,
    fail_on_drift: bool = False,
    log=print,
) -> MonitorResult:
    """Load the reference and the window, run the checks, write the HTML and the JSON. ``params``: the
    whole params (``monitor``, ``serving.embedding_log.dir`` and ``seed`` are read)."""
    m = params.monitor
    start = time.perf_counter()
    log_dir = Path(log_dir or params.serving.embedding_log.dir)
    reference_dir = Path(reference_dir or m.reference_dir)
    report_dir = Path(report_dir or m.report_dir)
    summary_file = Path(summary_file or m.summary_file)
    try:
        if reference is None:
            reference = Reference.load(reference_dir)
        window = resolve_window(log_dir, window_hours or m.window_hours, m.window_end, since, until)
    except (FileNotFoundError, ValueError) as exc:  # no reference (run monitor_reference), a bad --since
        raise BadInput(str(exc)) from None
    kinds = [k for k in m.kinds if reference.rows(k)]
    current = load_current(
        log_dir, window, kinds, reference.model_versions if m.match_model_version else None
    )
    log(
        f"window {window.to_dict()['start']} .. {window.to_dict()['end']}: "
        + ", ".join(
            f"{k} {current.rows_in_window[k]} rows ({len(current.frames[k])} of the reference's model)"
            for k in kinds
        )
    )
    results = [check_kind(k, reference, current.frames[k], m, seed=params.seed) for k in kinds]
    summary = summarise(
        results, current, reference, m, reference_dir=str(reference_dir), log_dir=str(log_dir)
    )
    summary["reports"] = write_reports(results, summary, report_dir)
    atomic_write_text(summary_file, json.dumps(summary, indent=1, sort_keys=True) + "\n")
    log(
        f"{summary['message']} ({time.perf_counter() - start:.1f} s); report: {summary['reports']['index']}; "
        f"summary: {summary_file}"
    )
    if fail_on_drift and summary["drift"]:
        raise DriftFound(f"drift found: {summary['message']}")
    return MonitorResult(summary, summary_file)
