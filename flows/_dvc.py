"""Running DVC stages from Prefect tasks: one ``dvc repro --single-item <stage>`` per task.

DVC decides whether a stage runs (its deps, params and code changed) or is skipped; the flow only
orders the stages (DVC's own order from ``dvc.yaml``) and runs them one at a time. Each line of
DVC's output (the stage's own output included) goes to the Prefect logger as it arrives.

Failures are told apart so the flow can treat them differently:

- :class:`ValidationFailed` / :class:`GateFailed`: a verdict (the corpus failed its expectations,
  the candidate failed the gate). Never retried: the same inputs give the same verdict.
- ``StageFailed(transient=True)``: the DVC lock was held by another DVC process, or the stage's
  process was killed by a signal (OOM killer, preemption). Retrying may succeed.
- ``StageFailed(transient=False)``: anything else (an exception in the stage's code, a missing
  dependency): deterministic, so not retried either.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from regionmed.env import QUIET_ENV

VERDICT_STAGES = ("validate_corpus", "gate")
MAX_LINE_CHARS = 2000
# "failed to run: <cmd>, exited with -9" (dvc's message for a killed command); 128+9 / 128+15 from a shell
_KILLED = re.compile(r"exited with (-\d+|137|143)\b")
_LOCKED = ("Unable to acquire lock", "is locked by", "Another DVC process")
_RAN = re.compile(r"Running stage '([^']+)'")
_EXAMPLES = re.compile(r"; e\.g\. .*$")  # validation failure lines carry example values: never forward them


class StageFailed(RuntimeError):
    """A DVC stage did not complete; ``transient`` says whether a retry could help."""

    def __init__(self, stage: str, message: str, *, returncode: int | None = None, transient: bool = False):
        super().__init__(message)
        self.stage, self.returncode, self.transient = stage, returncode, transient


class ValidationFailed(StageFailed):
    """The corpus failed a critical expectation: the pipeline stops here."""


class GateFailed(StageFailed):
    """The candidate model failed the gate: nothing is packaged."""


class VerdictTracebacks(logging.Filter):
    """Prefect logs every failed task and flow run with its traceback. A verdict (a failed validation or
    gate) is an expected outcome whose message says everything: log the message, drop the traceback.
    Unexpected errors keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], (ValidationFailed, GateFailed)):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_verdict_tracebacks() -> None:
    """Install :class:`VerdictTracebacks` on Prefect's task-run and flow-run loggers (once)."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, VerdictTracebacks) for f in logger.filters):
            logger.addFilter(VerdictTracebacks())


@dataclass
class StageRun:
    stage: str
    ran: bool  # False: DVC found it unchanged (skipped, or restored from its run cache)
    seconds: float
    returncode: int
    lines: int

    def to_dict(self) -> dict:
        return asdict(self)


def dvc_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a DVC subprocess: ours, telemetry off, unbuffered Python output, and lines as
    wide as the log takes (rich wraps a pipe's output at 80 columns: one message, several log records)."""
    return {
        **os.environ,
        **{k: os.environ.get(k, v) for k, v in QUIET_ENV.items()},
        "PYTHONUNBUFFERED": "1",
        "COLUMNS": str(MAX_LINE_CHARS),
        **(extra or {}),
    }


def pipeline_stages(root: str | Path, exclude: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Every stage of ``dvc.yaml`` in the order ``dvc repro`` runs them, minus ``exclude``."""
    from dvc.repo import Repo
    from dvc.repo.reproduce import plan_repro

    with Repo(str(root)) as repo:
        order = [
            stage.name for stage in plan_repro(repo.index.graph, None)
        ]  # (addressing is relative to the cwd)
    unknown = sorted(set(exclude) - set(order))
    if unknown:
        raise ValueError(f"flows.retrain.exclude_stages names stages that dvc.yaml does not have: {unknown}")
    return [s for s in order if s not in exclude]


def redact(line: str) -> str:
    """A line safe for the Prefect log: no failing-example values, bounded length."""
    line = _EXAMPLES.sub("; e.g. [examples omitted: see reports/validation.html]", line)
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " [...]"


def run_stage(
    root: str | Path,
    stage: str,
    log: Callable[[str], None],
    *,
    params_file: str = "params.yaml",
    env: dict[str, str] | None = None,
    timeout_s: float | None = None,
    force: bool = False,
) -> StageRun:
    """``dvc repro --single-item <stage>`` in ``root``, each output line to ``log``; raises
    :class:`StageFailed`. ``force``: run it even when DVC sees nothing changed (an input outside DVC changed,
    e.g. the annotator model)."""
    root = Path(root)
    cmd = [sys.executable, "-m", "dvc", "repro", "--single-item", *(["--force"] if force else []), stage]
    log(f"$ {' '.join(cmd[2:])}   (in {root})")
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=dvc_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    ran, tail, n = False, [], 0
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            # progress bars redraw with \r: keep the last state of each line
            line = raw.rstrip("\n").split("\r")[-1].rstrip()
            if not line:
                continue
            n += 1
            m = _RAN.search(line)
            ran = ran or (m is not None and m.group(1) == stage)
            line = redact(line)
            tail = [*tail[-40:], line]
            log(line)
            if timeout_s is not None and time.perf_counter() - start > timeout_s:
                proc.kill()
                raise StageFailed(stage, f"{stage}: over its {timeout_s} s limit", transient=True)
        returncode = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = round(time.perf_counter() - start, 1)
    if returncode == 0:
        log(f"{stage}: {'ran' if ran else 'unchanged (skipped by DVC)'} in {seconds} s")
        return StageRun(stage, ran, seconds, returncode, n)
    raise classify_failure(root, stage, returncode, tail, params_file)


def classify_failure(
    root: Path, stage: str, returncode: int, tail: list[str], params_file: str
) -> StageFailed:
    """The exception for a failed stage: a verdict, a transient failure, or another failure."""
    text = "\n".join(tail)
    last = next((t for t in reversed(tail) if t.startswith("ERROR")), tail[-1] if tail else "")
    if stage in VERDICT_STAGES:
        verdict = _verdict(root, stage, params_file)
        if verdict is not None:
            return verdict
    if any(s in text for s in _LOCKED):
        return StageFailed(
            stage,
            f"{stage}: the DVC lock is held by another DVC process ({last})",
            returncode=returncode,
            transient=True,
        )
    if returncode < 0 or _KILLED.search(text):
        return StageFailed(
            stage,
            f"{stage}: the stage's process was killed ({last or returncode})",
            returncode=returncode,
            transient=True,
        )
    return StageFailed(stage, f"{stage} failed (dvc exit {returncode}): {last}", returncode=returncode)


def _verdict(root: Path, stage: str, params_file: str) -> StageFailed | None:
    from regionmed.params import load_params

    try:
        params = load_params(root / params_file)
    except Exception:  # a broken params file is reported as the stage's own failure
        return None
    if stage == "validate_corpus":
        path = root / params.validation.metrics_file
        doc = _read_json(path)
        if doc is None or doc.get("success") is not False:
            return None
        failed = doc.get("failed_critical", [])
        observed = {c.get("id"): c.get("observed") for c in doc.get("checks", []) if isinstance(c, dict)}
        named = [
            f"{i}: observed {str(observed[i])[:120]}" if observed.get(i) is not None else i
            for i in failed[:10]
        ]
        return ValidationFailed(
            stage,
            f"validation failed: {doc.get('n_failed_critical', len(failed))} critical expectation(s) failed "
            f"({'; '.join(named)}{' ...' if len(failed) > 10 else ''}); the pipeline stops before training. "
            f"Details: {params.validation.report_file}",
            returncode=1,
        )
    if stage == "gate":
        doc = _read_json(root / params.gate.decision_file)
        if doc is None or doc.get("passed") is not False:
            return None
        if doc.get("error"):  # no comparison was made (gate.require_champion without a champion record)
            return GateFailed(stage, f"gate failed: {doc['error']}; nothing is packaged", returncode=1)
        failed = [c for c in doc.get("comparisons", []) if not c.get("passed")]
        parts = [
            f"{c.get('metric')} ({c.get('kind')}: {_fmt(c.get('value'))} vs {_fmt(c.get('threshold'))})"
            for c in failed
        ]
        return GateFailed(
            stage,
            f"gate failed: {doc.get('n_failed', len(failed))} check(s) failed: "
            f"{'; '.join(parts[:10])}; nothing is packaged",
            returncode=1,
        )
    return None


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))


def is_transient(task, task_run, state) -> bool:
    """Prefect ``retry_condition_fn``: retry only a :class:`StageFailed` marked transient."""
    try:
        state.result()
    except StageFailed as exc:
        return exc.transient
    except BaseException:
        return False
    return False
