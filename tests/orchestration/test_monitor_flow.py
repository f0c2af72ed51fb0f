"""The monitor flow on a small repository of its own (a synthetic reference, a drifted log, a one-stage
dvc.yaml for the retrain it starts): where the retrain runs, what the run says, report retention.

Real Prefect (its test harness: a temporary API), real DVC, real Evidently; no training.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from helpers.drift_data import Clock, Population, make_reference, write_log

pytestmark = pytest.mark.slow  # a temporary Prefect API, Evidently twice, a retrain subflow: ~1-2 min
REPO_ROOT = Path(__file__).resolve().parents[2]
DVC_YAML = {
    "stages": {
        "hello": {"cmd": "python -c \"print('hello from the retrain')\""},
        "monitor": {"cmd": "python -c \"print('the monitor stage')\""},
    }
}
SMALL = {
    "monitor": {"min_rows": 200, "sample_rows": 1000, "plot_rows": 300},
    "flows": {
        "retrain": {"exclude_stages": ["monitor"], "retries": 0},
        "monitor": {"retention": {"keep_reports": 2, "keep_days": 7, "keep_summaries_days": 30}},
    },
}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    from prefect.testing.utilities import prefect_test_harness

    state = tmp_path_factory.mktemp("monitor_flow_state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_HOME", str(state / "prefect_home"))
        with prefect_test_harness(server_startup_timeout=180):
            yield state


@pytest.fixture(autouse=True)
def _same_prefect_home(harness, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(harness / "prefect_home"))


@pytest.fixture(scope="module")
def repo(tmp_path_factory, harness):
    """params.yaml (small thresholds), a one-stage DVC pipeline, a reference and a drifted last hour of
    log."""
    from regionmed.params import deep_merge

    root = tmp_path_factory.mktemp("monitor_repo")
    params = deep_merge(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()), SMALL)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)
    pop = Population(seed=0)
    make_reference(pop).save(root / params["monitor"]["reference_dir"])
    emb, desc = Population(seed=3).images(
        400, modality=0, contrast=1.6
    )  # one 'modality', more contrast: drift
    start = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    write_log(
        root / params["serving"]["embedding_log"]["dir"], emb, desc, clock=Clock(start), seconds_apart=2
    )
    return root


def flow_logs(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as c:
        return [
            e.message
            for e in c.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
            )
        ]


def drift_markdown(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as c:
        return c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def old_reports(root: Path, ages_days: list[float]) -> list[Path]:
    """Earlier runs' report folders, named as the flow names them, with an HTML report and a summary."""
    out = []
    for i, age in enumerate(ages_days):
        stamp = (datetime.now(UTC) - timedelta(days=age)).strftime("%Y%m%dT%H%M%SZ")
        folder = root / "monitoring/reports" / f"{stamp}-old{i:05d}"
        folder.mkdir(parents=True)
        (folder / "index.html").write_text("<html>" + "x" * 1000)
        (folder / "summary.json").write_text("{}")
        out.append(folder)
    return out


def test_a_registered_deployment_that_no_worker_polls_gets_no_run_the_retrain_runs_as_a_subflow(repo):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from flows.monitor import monitor, outcome
    from flows.retrain import retrain

    with get_client(sync_client=True) as c:  # as `prefect deploy --all` leaves it: a pool, a queue, no worker
        c.create_work_pool(WorkPoolCreate(name="regionmed-test", type="process"), overwrite=True)
    retrain.to_deployment(name="retrain", parameters={"root": str(repo)}).apply(
        work_pool_name="regionmed-test"
    )
    reports = old_reports(
        repo, [0.5, 1, 2, 10, 40]
    )  # five earlier runs; keep 2 full, 7 days, summaries 30 days

    state = monitor(root=str(repo), return_state=True)
    last = outcome(state).splitlines()[-1]  # what `python -m flows.monitor` prints last
    assert last.startswith("retrain: subflow run ") and " Completed " in last, last
    assert (
        "'retrain/retrain' is registered but not polled" in last and "work pool 'regionmed-test'" in last
    ), last

    with get_client(sync_client=True) as c:  # no retrain run waits in the pool's queue
        runs = c.read_flow_runs()
    retrains = [r for r in runs if r.deployment_id is not None]
    assert retrains == [], [(r.name, r.state.name) for r in retrains]
    monitor_run_id = state.state_details.flow_run_id
    lines = flow_logs(monitor_run_id)
    assert [m for m in lines if not m.startswith("Finished in state")][
        -1
    ] == last  # the run's last line says it too
    # the logged command names the interpreter; the monitor's long lines are one record each
    assert f"$ {shlex.quote(sys.executable)} -m regionmed monitor --params params.yaml" in "\n".join(lines)
    summary_line = next(m for m in lines if "; report: " in m)  # over 80 characters: rich wrapped it before
    assert "index.html; summary: " in summary_line and summary_line.endswith("summary.json"), summary_line
    # the report as a markdown artifact, with the HTML's path relative to the repository, no file:// link
    arts = drift_markdown(monitor_run_id)
    md = next(a.data for a in arts if a.key == "drift-report")
    assert "`monitoring/reports/" in md and "/index.html`" in md and str(repo) not in md
    assert not any(a.type == "link" or "file://" in str(a.data) for a in arts)
    # retention: the newest 2 full reports (this run's and the 0.5-day-old one), summaries to 30 days
    assert (reports[0] / "index.html").is_file()
    assert (
        [p.name for p in reports[1].iterdir()] == ["summary.json"] == [p.name for p in reports[3].iterdir()]
    )
    assert not reports[4].exists()


def test_a_deployment_a_runner_polls_gets_the_retrain_run(repo):
    from prefect.client.orchestration import get_client

    from flows.monitor import monitor, outcome
    from flows.serve import deployments

    with get_client(sync_client=True) as c:  # the work-pool deployment of the test before goes
        c.delete_deployment(c.read_deployment_by_name("retrain/retrain").id)
    deployment_id = deployments(repo)[0].apply()  # what `python -m flows.serve` registers
    with get_client(sync_client=True) as c:
        c.get_scheduled_flow_runs_for_deployments(
            [deployment_id]
        )  # the poll a runner makes every few seconds
        for _ in range(50):
            if c.read_deployment(deployment_id).last_polled is not None:
                break
            time.sleep(0.2)

    state = monitor(root=str(repo), return_state=True)
    last = outcome(state).splitlines()[-1]  # what `python -m flows.monitor` prints last
    assert last.startswith("retrain: deployment retrain/retrain run ") and " Scheduled; polled " in last, last
    assert "by a runner" in last
    run_id = last.split("(")[1].split(")")[0]
    with get_client(sync_client=True) as c:
        run = c.read_flow_run(run_id)
    assert run.deployment_id == deployment_id and run.state.is_scheduled() and "drift-triggered" in run.tags


def test_a_failed_gate_ends_the_retrain_with_its_message_and_no_traceback_in_the_log(tmp_path):
    """A one-stage pipeline whose gate fails (as the gate stage does: metrics/gate.json, exit 1)."""
    from flows.retrain import retrain

    decision = {
        "passed": False,
        "n_failed": 1,
        "comparisons": [
            {"metric": "hardneg/accuracy", "kind": "floor", "value": 0.5, "threshold": 0.7, "passed": False}
        ],
    }
    write = (
        f"import json, pathlib, sys; pathlib.Path('metrics').mkdir(exist_ok=True); "
        f"pathlib.Path('metrics/gate.json').write_text(json.dumps({decision!r})); sys.exit(1)"
    )
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    (tmp_path / "dvc.yaml").write_text(
        yaml.safe_dump(
            {"stages": {"gate": {"cmd": f'python -c "{write}"'}, "monitor": {"cmd": "echo monitor"}}}
        )
    )
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True)
    state = retrain(root=str(tmp_path), return_state=True)
    assert (
        state.is_failed()
        and "gate failed: 1 check(s) failed: hardneg/accuracy (floor: 0.5 vs 0.7)" in state.message
    )
    lines = flow_logs(state.state_details.flow_run_id)
    assert any("Task run failed with exception: GateFailed(" in m for m in lines), lines
    assert not any("Traceback" in m for m in lines), next(m for m in lines if "Traceback" in m)
