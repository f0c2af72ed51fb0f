"""Real ``bentoml serve`` processes for the serving, monitoring and browser tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from regionmed.serving.container import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 180  # a cold `bentoml serve` imports torch + transformers; the machine is shared


class Server:
    """``bentoml serve ...`` in its own process group on a free loopback port; stopped by ``stop()``."""

    def __init__(
        self, args: list[str], env: dict[str, str], cwd: Path, log_file: Path, port: int | None = None
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self._log = open(log_file, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", *args, "--port", str(self.port)],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT_S) -> float:
        from regionmed.serving.container import wait_until_ready

        def alive() -> None:
            if self.proc.poll() is not None:
                raise AssertionError(f"bentoml serve exited {self.proc.returncode}:\n{self.log()}")

        try:
            return wait_until_ready(self.url, timeout, alive)
        except TimeoutError:
            raise AssertionError(f"bentoml serve not ready in {timeout} s:\n{self.log()}") from None

    def log(self) -> str:
        self._log.flush()
        return self.log_file.read_text(errors="replace")[-6000:]

    def pids(self) -> list[int]:
        """The server and its descendants (the circus arbiter's workers)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group (start_new_session)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log.close()


def server_env(**extra: str) -> dict[str, str]:
    from regionmed.env import QUIET_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIONMED_")}
    return {**env, **QUIET_ENV, "PYTHONPATH": str(REPO_ROOT), **extra}


def served_repo(tiny: dict, serving_root: Path, name: str, params: Path | None = None):
    """A started ``bentoml serve`` of the repo's service on the tiny model (``params``: another params
    file than the tiny one); its embedding log is ``serving_root / f"log-{name}"``. A generator for a
    fixture: yields the ready server, stops it when resumed."""
    env = server_env(
        REGIONMED_PARAMS=str(params or tiny["params"]),
        REGIONMED_MODEL_DIR=str(tiny["model"]),
        REGIONMED_INDEX_DIR=str(tiny["index"]),
        BENTOML_HOME=os.environ["BENTOML_HOME"],
        REGIONMED_EMBEDDING_LOG_DIR=str(serving_root / f"log-{name}"),
    )
    server = Server(
        ["regionmed.serving.service:RegionMedService"], env, REPO_ROOT, serving_root / f"{name}-server.log"
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
