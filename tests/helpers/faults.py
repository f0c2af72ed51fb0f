"""Faults on demand for tests/faults/: a small disk that fills, a process group killed when a file
appears or a line is printed, and the checks that no output is left half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TMP_MARK = ".tmp-"  # regionmed/atomic.py's temporary names: <name>.tmp-<pid>, .<name>.tmp-<pid><suffix>
# benchmarks/bench_faults.py sets it: each fault test appends what it measured (time to recover...) there
MEASURES_ENV = "REGIONMED_FAULT_MEASURES"


def record_measure(fault: str, **figures) -> None:
    """Append ``{"fault": fault, **figures}`` as a JSON line to the file ``$REGIONMED_FAULT_MEASURES``
    names (nothing when it is unset: a plain test run)."""
    target = os.environ.get(MEASURES_ENV)
    if target:
        with open(target, "a") as fh:
            fh.write(json.dumps({"fault": fault, **figures}, sort_keys=True) + "\n")


@contextlib.contextmanager
def small_disk(mount_point: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mount_point`` (created) for the block; unmounted after. Skips the
    test where mounting is not permitted (not root, no CAP_SYS_ADMIN): CI runs as root."""
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): run as root")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, capture_output=True)


def fill_disk(folder: Path, leave_bytes: int = 0) -> Path:
    """A file that takes all the free space of ``folder``'s file system but ``leave_bytes``."""
    filler = folder / "filler.bin"
    free = shutil.disk_usage(folder).free - leave_bytes
    with open(filler, "wb") as fh:
        chunk = b"\0" * (1 << 16)
        while free > 0:
            try:
                free -= fh.write(chunk[: max(1, min(len(chunk), free))])
                fh.flush()
            except OSError:  # tmpfs rounds to pages: the last chunk may not fit
                break
    return filler


def temporary_leftovers(root: Path) -> list[Path]:
    """Temporary names of the atomic writers under ``root`` (outside .git and .dvc)."""
    return sorted(
        p
        for p in root.rglob(f"*{TMP_MARK}*")
        if not {".git", ".dvc"} & set(p.relative_to(root).parts) and TMP_MARK in p.name
    )


class Watched:
    """A command in its own process group whose output lines are collected as they come (a thread reads
    them), to be killed with its whole group (SIGKILL) when a condition holds."""

    def __init__(self, cmd: list[str], cwd: Path, env: dict[str, str]):
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def kill_when(self, condition: Callable[[], bool], timeout: float, poll: float = 0.01) -> float:
        """SIGKILL the whole group as soon as ``condition()`` holds; returns when it was (seconds since the
        call). Fails when the command ends first or the time runs out."""
        start = time.monotonic()
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"ended ({self.proc.returncode}) before the fault:\n{self.output()[-4000:]}"
                )
            if time.monotonic() - start > timeout:
                self.kill()
                raise AssertionError(f"no fault point in {timeout} s:\n{self.output()[-4000:]}")
            time.sleep(poll)
        at = time.monotonic() - start
        self.kill()
        return at

    def kill(self) -> None:
        """SIGKILL the group, then wait until every process of it is gone (reaped, as after a real crash:
        a zombie still holds its pid, and DVC takes a lock holder's pid that exists as alive)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        deadline = time.monotonic() + 60
        while group_members(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(timeout=10)
        return code


def group_members(pgid: int) -> list[int]:
    """The processes (zombies included) of process group ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid):
            members.append(int(stat.parent.name))
    return members


def after(seconds: float, condition: Callable[[], bool]) -> Callable[[], bool]:
    """A condition that holds ``seconds`` after ``condition`` first did (a point in the middle of a stage
    whose outputs only appear at its end)."""
    first: list[float] = []

    def check() -> bool:
        if not first and condition():
            first.append(time.monotonic())
        return bool(first) and time.monotonic() - first[0] >= seconds

    return check
