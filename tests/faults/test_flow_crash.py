"""A Prefect worker SIGKILLed while it runs the retrain deployment (prefect.yaml, a real ``prefect server``
and process worker: tests/helpers/prefect_server.py), in the middle of a DVC stage.

What Prefect 3.9 does, checked here: the flow run's process loses its worker (its output pipe breaks),
ends, and the server records the run **Crashed** within seconds. A later run of the deployment (the next
schedule; here started at once with a new worker) starts despite ``concurrency_limit: 1`` and completes:
DVC removes the killed processes' entries from its lock file itself (their pids are gone), nothing in the
repository is left half-written, and the champion record is untouched.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from helpers.faults import record_measure, temporary_leftovers
from helpers.pipeline_copy import REPO_ROOT, clean_copy, run
from helpers.prefect_server import prefect, prefect_server, run_state, start_run
from helpers.reduced_pipeline import REDUCED

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(600)]

KEEP = ("build_corpus", "train_annotator", "annotate_regions", "validate_corpus")  # the flow's stages here
CHAMPION = {"tag": "regionmed:before", "bento": "regionmed_service:before", "metrics": {}}


def _worker(env: dict, repo, log_file) -> subprocess.Popen:
    """``prefect worker start`` of the pool's training queue, running flows in ``repo`` (REGIONMED_ROOT)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "worker",
            "start",
            "--pool",
            "regionmed",
            "--work-queue",
            "training",
        ],
        env={**env, "REGIONMED_ROOT": str(repo), "OMP_NUM_THREADS": "1"},
        cwd=log_file.parent,
        stdout=open(log_file, "w"),  # the worker writes it; closed when the test process ends
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(worker: subprocess.Popen) -> None:
    """Stop a worker as Ctrl-C would; a worker still shutting down after a minute (seen on a loaded
    machine: Prefect's runner waits on its flow-run process) is killed with its group. Cleanup only:
    what the test checks is the server's record of the runs, not how a worker exits."""
    worker.send_signal(signal.SIGINT)
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)


def _wait_state(env: dict, run_id: str, done, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = run_state(env, run_id)
        if done(state):
            return state
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} still {run_state(env, run_id).name} after {timeout} s")


def test_a_worker_killed_mid_retrain_leaves_a_crashed_run_and_the_next_run_completes(tmp_path):
    stages = [s for s in yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"] if s not in KEEP]
    repo = clean_copy(
        tmp_path / "repo",
        {**REDUCED, "flows": {"retrain": {"exclude_stages": stages, "retry_delay_s": 5}}},
    )
    (repo / "deploy/champion.json").write_text(json.dumps(CHAMPION, indent=1) + "\n")
    (tmp_path / "home").mkdir()
    with prefect_server(tmp_path / "home") as env:
        assert (
            prefect("work-pool", "create", "regionmed", "--type", "process", env=env, cwd=repo).returncode
            == 0
        )
        deployed = prefect("--no-prompt", "deploy", "--all", env=env, cwd=repo)
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]

        first = start_run(env, "retrain/retrain")
        worker = _worker(env, repo, tmp_path / "worker1.log")
        deadline = time.monotonic() + 300
        while not list(repo.glob("data/corpus_annotated.tmp-*")):  # annotate_regions is writing
            assert time.monotonic() < deadline and worker.poll() is None, (
                tmp_path / "worker1.log"
            ).read_text()
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)  # the worker process only
        killed_at = time.monotonic()
        worker.wait(timeout=30)
        crashed = _wait_state(env, first, lambda s: s.is_final(), timeout=120)
        crashed_after = time.monotonic() - killed_at
        assert crashed.is_crashed(), crashed

        second = start_run(env, "retrain/retrain")  # the next schedule
        worker = _worker(env, repo, tmp_path / "worker2.log")
        try:
            completed = _wait_state(env, second, lambda s: s.is_final(), timeout=400)
        finally:
            _stop(worker)
        recovered_after = time.monotonic() - killed_at
        assert completed.is_completed(), (completed, (tmp_path / "worker2.log").read_text()[-4000:])

    status = run(["dvc", "status", *KEEP], repo)  # no lock held, every stage of the flow done
    assert "Unable to acquire lock" not in status.stderr and "changed" not in status.stdout, status.stdout
    assert temporary_leftovers(repo) == []
    assert json.loads((repo / "deploy/champion.json").read_text()) == CHAMPION, (
        "the champion record is intact"
    )
    record_measure(
        "Prefect worker killed",
        crashed_after_s=round(crashed_after, 1),
        next_run_completed_after_s=round(recovered_after, 1),
    )
