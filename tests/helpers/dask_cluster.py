"""A real Dask cluster for the tests: ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1,
each in its own process group, stopped (killed) when the ``with`` block ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager, suppress
from pathlib import Path

from regionmed.serving.container import free_port

DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT_S = 120  # a cold worker imports numpy, torch (through regionmed) on a shared machine


class DaskCluster:
    def __init__(self, address: str, procs: list[subprocess.Popen], logs: Path):
        self.address, self.procs, self.logs = address, procs, logs

    def client(self):
        from distributed import Client

        return Client(self.address, timeout="30s")

    def worker_pids(self) -> dict[str, int]:
        """Worker address → pid of the worker process (the nanny's child that runs the tasks)."""
        with self.client() as client:
            return client.run(os.getpid)

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("*.log")))


def _env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    # as docs/scaling.md asks of a cluster's workers: glibc's own malloc thresholds (regionmed/cluster.py)
    env["DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON__MALLOC_TRIM_THRESHOLD_"] = "None"
    return env


@contextmanager
def dask_cluster(tmp: Path, n_workers: int = 2, threads: int = 1):
    """A scheduler and ``n_workers`` single-process workers (with nannies) of ``threads`` threads."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> None:
        with open(tmp / f"{name}.log", "wb") as log:
            procs.append(
                subprocess.Popen(
                    [str(DASK), *args],
                    cwd=tmp,  # not the repository: workers must get absolute paths from the stages
                    env=_env(threads),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    try:
        start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
        for i in range(n_workers):
            start(
                f"worker{i}",
                [
                    *("worker", address, "--nthreads", str(threads), "--nworkers", "1"),
                    *("--no-dashboard", "--name", f"w{i}", "--memory-limit", "2GiB"),
                    *("--local-directory", str(tmp / f"w{i}")),
                ],
            )
        cluster = DaskCluster(address, procs, tmp)
        with cluster.client() as client:  # connecting waits for the scheduler
            if n_workers:
                client.wait_for_workers(n_workers, timeout=START_TIMEOUT_S)
        yield cluster
    finally:
        for proc in procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
