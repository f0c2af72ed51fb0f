"""``prefect.yaml`` as shipped, for real: ``prefect server start`` on loopback, ``prefect deploy --all`` from
a clean copy of the repository, and a process worker (``prefect worker start --run-once``) that runs the
monitor deployment: with ``REGIONMED_ROOT`` unset the run stops in its pull step with the message that
says what to set; with it set, from another folder, the flow runs in the checkout and completes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers.drift_data import Population, make_reference
from helpers.pipeline_copy import clean_copy

from regionmed.serving.container import free_port

pytestmark = pytest.mark.slow  # a Prefect server, a deploy, two flow runs in workers: ~2-3 min


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``prefect server start --host 127.0.0.1`` on a free port, its own PREFECT_HOME, telemetry off."""
    home = tmp_path_factory.mktemp("prefect_server")
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
            env=env,
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
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as c:
        return c.read_flow_run(flow_run_id).state


def test_deploy_all_then_a_worker_runs_the_monitor_in_the_checkout_named_by_regionmed_root(server, tmp_path):
    repo = clean_copy(tmp_path / "repo")
    make_reference(Population(seed=0)).save(
        repo / "models/monitor_reference"
    )  # what monitor_reference writes
    elsewhere = tmp_path / "worker_cwd"
    elsewhere.mkdir()
    created = prefect("work-pool", "create", "regionmed", "--type", "process", env=server, cwd=repo)
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = prefect("--no-prompt", "deploy", "--all", env=server, cwd=repo)
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    assert "retrain/retrain" in deployed.stdout and "monitor/monitor" in deployed.stdout

    def run_once(worker_env: dict) -> tuple[str, str]:
        run_id = start_run(server, "monitor/monitor")
        worker = prefect(
            "worker",
            "start",
            "--pool",
            "regionmed",
            "--work-queue",
            "monitoring",
            "--run-once",
            env=worker_env,
            cwd=elsewhere,
            timeout=600,
        )
        return run_id, worker.stdout + worker.stderr

    # REGIONMED_ROOT unset on the worker: the run stops in its pull step, saying what to set
    run_id, out = run_once(server)
    state = run_state(server, run_id)
    assert not state.is_completed() and (state.is_failed() or state.is_crashed()), state
    said = " ".join(out.split())
    assert "REGIONMED_ROOT must name the repository checkout (the folder with dvc.yaml)" in said, out[-3000:]
    assert (
        "No such file or directory: ''" not in out and "/opt/regionmed" not in out
    )  # chdir('') as shipped before

    # set: the flow runs in the checkout (a worker started from another folder) and completes
    run_id, out = run_once({**server, "REGIONMED_ROOT": str(repo)})
    state = run_state(server, run_id)
    assert state.is_completed(), (state, out[-4000:])
    reports = list((repo / "monitoring/reports").glob("*/summary.json"))
    assert len(reports) == 1 and not (elsewhere / "monitoring").exists()
