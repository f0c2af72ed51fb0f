"""``prefect.yaml`` as shipped, for real: ``prefect server start`` on loopback, ``prefect deploy --all`` from
a clean copy of the repository, and a process worker (``prefect worker start --run-once``) that runs the
monitor deployment: with ``REGIONMED_ROOT`` unset the run stops in its pull step with the message that
says what to set; with it set, from another folder, the flow runs in the checkout and completes.
"""

from __future__ import annotations

import pytest
from helpers.drift_data import Population, make_reference
from helpers.pipeline_copy import clean_copy
from helpers.prefect_server import prefect, prefect_server, run_state, start_run

pytestmark = pytest.mark.slow  # a Prefect server, a deploy, two flow runs in workers: ~2-3 min


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``prefect server start --host 127.0.0.1`` on a free port, its own PREFECT_HOME, telemetry off."""
    with prefect_server(tmp_path_factory.mktemp("prefect_server")) as env:
        yield env


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
