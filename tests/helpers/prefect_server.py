"""A real ``prefect server start`` on loopback for the tests that deploy ``prefect.yaml`` and run workers
(tests/orchestration, tests/faults): the server, the ``prefect`` CLI against it, and flow runs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from regionmed.serving.container import free_port


@contextlib.contextmanager
def prefect_server(home: Path, **settings: str) -> Iterator[dict[str, str]]:
    """``prefect server start --host 127.0.0.1`` on a free port with its own PREFECT_HOME (``home``) and the
    telemetry off; ``settings``: more PREFECT_* variables for the server. Yields the environment a client
    or a worker of this server needs; the server stops after the block."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("REGIONMED_ROOT", None)
    with open(home / "server.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env={**env, **settings},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, (home / "server.log").read_text()[
                    -3000:
                ]
                time.sleep(1)
            yield env
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def prefect(*args: str, env: dict, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """The ``prefect`` CLI against the server of ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_run(env: dict, deployment: str) -> str:
    """A flow run of the deployment now (what `prefect deployment run` or the UI's Quick run does)."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        return str(run_deployment(deployment, timeout=0).id)


def run_state(env: dict, flow_run_id: str):
    """The flow run's current state."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as c:
        return c.read_flow_run(flow_run_id).state
