"""The ``monitor`` flow: a drift report on the latest window of the serving log; retraining on drift.

    python -m flows.monitor [--root .] [--params params.yaml] [--until now] [--window-hours H]

1. ``drift_check``: ``regionmed monitor --until now`` in the repository (a subprocess, its output in
   the task's log), writing ``index.html`` + Evidently reports + ``summary.json`` into a folder of its
   own under ``flows.monitor.report_root`` (earlier runs' reports stay);
2. the report is published as the Prefect artifact ``drift-report`` (markdown: status, window, rows,
   every check's score and threshold, and the HTML report's path relative to the repository: a
   ``file://`` link would not open from the UI);
3. report retention (``flows.monitor.retention``, regionmed/monitoring/retention.py);
4. on drift, a ``retrain`` run is started (``flows.monitor.trigger``, flows/trigger.py): through the
   deployment ``flows.monitor.retrain_deployment`` when a worker or runner polls it (``auto``), else
   as a subflow in this process.

The monitor run ends Completed whatever the drift finding; a triggered retrain has its own state.
Its last log line (and ``python -m flows.monitor``'s last output line) says whether a retrain
started, how, and the run's id and state.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context

from flows._dvc import dvc_env, redact
from flows.trigger import retrain_line, trigger_retrain

REPORT_ARTIFACT = "drift-report"


@task(cache_policy=NO_CACHE, persist_result=False, retries=1, retry_delay_seconds=10)
def drift_check(
    root: str,
    params_file: str,
    out_dir: str,
    until: str | None = "now",
    window_hours: float | None = None,
    log_dir: str | None = None,
) -> dict[str, Any]:
    """``regionmed monitor`` into ``out_dir`` (read-only on the log, so safe to retry); returns its
    summary."""
    logger = get_run_logger()
    out = Path(out_dir)
    cmd = [
        sys.executable,
        "-m",
        "regionmed",
        "monitor",
        "--params",
        params_file,
        "--report-dir",
        str(out),
        "--summary",
        str(out / "summary.json"),
    ]
    for flag, value in (("--until", until), ("--window-hours", window_hours), ("--log-dir", log_dir)):
        if value is not None:
            cmd += [flag, str(value)]
    logger.info("$ %s", shlex.join(cmd))
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=dvc_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            logger.info(redact(line.rstrip()))
    if proc.wait() != 0:
        raise RuntimeError(f"regionmed monitor exited {proc.returncode} (see the log above)")
    return json.loads((out / "summary.json").read_text())


def render_report(summary: dict[str, Any], html_path: str) -> str:
    def fmt(v):
        return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))

    w, cur = summary["window"], summary["current"]
    lines = [
        f"# Drift: {summary['status'].replace('_', ' ')}",
        "",
        summary["message"],
        "",
        f"Window {w['start']} to {w['end']} ({w['hours']} h).",
        "",
        f"HTML report (Evidently's plots per check), relative to the repository: `{html_path}`",
        "",
        "| kind | reference rows | rows in window | of the reference's model | compared |",
        "|---|---|---|---|---|",
    ]
    for kind, n_ref in summary["reference"]["rows"].items():
        used = summary.get("rows_used", {}).get(kind, {}).get("current", "-")
        lines.append(
            f"| {kind} | {n_ref} | {cur['rows_in_window'].get(kind, 0)} | "
            f"{cur['rows'].get(kind, 0)} | {used} |"
        )
    lines += ["", "| check | method | score | threshold | drift |", "|---|---|---|---|---|"]
    for c in summary["checks"]:
        drift = "**yes**" if c["drift"] else ("no" if c["drift"] is False else c["status"].replace("_", " "))
        lines.append(f"| {c['name']} | {c['method']} | {fmt(c['score'])} | {c['threshold']} | {drift} |")
    return "\n".join(lines) + "\n"


@flow(name="monitor", log_prints=True)
def monitor(
    root: str = ".",
    params_file: str = "params.yaml",
    until: str | None = "now",
    window_hours: float | None = None,
    log_dir: str | None = None,
    trigger: str | None = None,
) -> dict[str, Any]:
    """Drift report on the window ending ``until`` (``now``; ``None``: ``monitor.window_end``); retrain on
    drift."""
    from regionmed.monitoring.retention import prune_reports
    from regionmed.params import load_params
    from regionmed.paths import repo_relative

    root_path = Path(root).resolve()
    params = load_params(root_path / params_file)
    cfg = params.flows.monitor
    run_id = str(get_run_context().flow_run.id)[:8]
    out = root_path / cfg.report_root / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{run_id}"
    start = time.perf_counter()
    summary = drift_check(str(root_path), params_file, str(out), until, window_hours, log_dir)
    html_path = out / "index.html"
    report = repo_relative(html_path, root_path)
    create_markdown_artifact(
        render_report(summary, report), key=REPORT_ARTIFACT, description=f"drift: {summary['status']}"
    )
    kept = cfg.retention
    logger = get_run_logger()
    logger.info(
        prune_reports(
            root_path / cfg.report_root,
            kept.keep_reports,
            kept.keep_days,
            kept.keep_summaries_days,
            protect=out,
        ).line()
    )
    result: dict[str, Any] = {
        "status": summary["status"],
        "drift": summary["drift"],
        "message": summary["message"],
        "report": report,
        "summary": summary,
        "retrain": None,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if summary["drift"]:
        result["retrain"] = trigger_retrain(
            trigger or cfg.trigger,
            cfg.retrain_deployment,
            {"root": str(root_path), "params_file": params_file},
        )
    logger.info("%s", retrain_line(result["retrain"]))
    return result


def main(argv: list[str] | None = None) -> int:
    from regionmed.env import configure_environment

    configure_environment()
    ap = argparse.ArgumentParser(prog="python -m flows.monitor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="the repository (where params.yaml is)")
    ap.add_argument("--params", default="params.yaml", help="params file, relative to --root")
    ap.add_argument(
        "--until", default="now", help="window end: 'now', an ISO time, or 'params' (monitor.window_end)"
    )
    ap.add_argument("--window-hours", type=float, default=None)
    ap.add_argument(
        "--log-dir", default=None, help="embedding log folder (default: serving.embedding_log.dir)"
    )
    ap.add_argument("--trigger", choices=["auto", "deployment", "subflow", "none"], default=None)
    args = ap.parse_args(argv)
    state = monitor(
        root=args.root,
        params_file=args.params,
        until=None if args.until == "params" else args.until,
        window_hours=args.window_hours,
        log_dir=args.log_dir,
        trigger=args.trigger,
        return_state=True,
    )
    print(outcome(state), file=sys.stderr)
    return 0 if state.is_completed() else 1


def outcome(state) -> str:
    """What ``python -m flows.monitor`` prints last: the finding, the report, and the retrain line."""
    if not state.is_completed():
        return f"monitor: {state.name}: {state.message}"
    result = state.result()
    return f"monitor: {result['message']}\nreport: {result['report']}\n{retrain_line(result['retrain'])}"


if __name__ == "__main__":
    sys.exit(main())
