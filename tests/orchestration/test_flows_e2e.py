"""The flows for real: Prefect's test harness (a temporary API), real DVC, a clean copy of the repository
at the reduced size of the pipeline test. Nothing of DVC or Prefect is mocked.

One copy serves the whole module, in order: the retrain flow end to end (a Bento), a rerun that DVC
skips (with the DVC lock held at first: the first stage retries), the monitor flow without and with
injected drift (a retrain as a subflow, then through the served deployment), and last the two verdicts
that must stop the flow: a failed validation and a failed gate.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.pipeline_copy import clean_copy
from helpers.reduced_pipeline import REDUCED

pytestmark = pytest.mark.slow

# the reduced pipeline's test split has ~50 images: fewer rows needed, thresholds for that size
MONITOR_SMALL = {
    "monitor": {
        "min_rows": 40,
        "embedding_methods": {"model": 0.8, "mmd": 0.05},
        "descriptor_threshold": 0.5,
        "zero_shot_threshold": 0.4,
    },
    "flows": {"retrain": {"retries": 5, "retry_delay_s": 2}},
}


def permissive_gate() -> dict:
    """Every floor of params.yaml at -1 (REDUCED lists the floors it knew of; a floor added to params.yaml
    since would fail a 6-step model): the gate then checks only that the metrics exist."""
    floors = yaml.safe_load((Path(__file__).resolve().parents[2] / "params.yaml").read_text())["gate"][
        "floors"
    ]
    return {"gate": {"floors": dict.fromkeys(floors, -1.0)}}


def _merge(a: dict, b: dict) -> dict:
    from regionmed.params import deep_merge

    return deep_merge(a, b)


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """Prefect's temporary API for the module, and state folders of its own (the autouse fixture of
    tests/conftest.py sets them per test, after module fixtures have run)."""
    from prefect.testing.utilities import prefect_test_harness

    state = tmp_path_factory.mktemp("flow_state")
    with pytest.MonkeyPatch.context() as mp:
        for var in (
            "PREFECT_HOME",
            "BENTOML_HOME",
            "HF_HOME",
            "TORCHINDUCTOR_CACHE_DIR",
            "DVC_SITE_CACHE_DIR",
        ):
            mp.setenv(var, str(state / var.lower()))
        mp.setenv("OMP_NUM_THREADS", "1")  # the stages' subprocesses share a small CPU
        with prefect_test_harness(server_startup_timeout=180):
            yield state


@pytest.fixture(autouse=True)
def _same_state(harness, monkeypatch):
    for var in ("PREFECT_HOME", "BENTOML_HOME", "HF_HOME", "TORCHINDUCTOR_CACHE_DIR", "DVC_SITE_CACHE_DIR"):
        monkeypatch.setenv(var, str(harness / var.lower()))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, harness):
    """A clean copy, and the retrain flow run once on it."""
    from flows.retrain import retrain

    repo = clean_copy(
        tmp_path_factory.mktemp("flows") / "repo", _merge(_merge(REDUCED, permissive_gate()), MONITOR_SMALL)
    )
    start = time.perf_counter()
    state = retrain(root=str(repo), return_state=True)
    return {"repo": repo, "state": state, "seconds": time.perf_counter() - start}


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def task_runs(flow_run_id) -> dict[str, list]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with client() as c:
        runs = c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    out: dict[str, list] = {}
    for r in runs:
        out.setdefault(r.name, []).append(r)  # task runs are named after their stage
    return out


def child_flow_runs(parent_id) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with client() as c:
        return c.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent_id]))
        )


def artifact(key: str, flow_run_id) -> str:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with client() as c:
        arts = c.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
            )
        )
    assert arts, f"no artifact {key} for flow run {flow_run_id}"
    return arts[-1].data


def logs(flow_run_id, page: int = 200) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # send the queued log records before reading them back
    out, offset = [], 0
    with client() as c:
        while True:
            batch = c.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=page,
                offset=offset,
            )
            out += [e.message for e in batch]
            if len(batch) < page:
                return out
            offset += page


def set_params(repo: Path, change: dict) -> str:
    """Merge ``change`` into the copy's params.yaml; returns the old text (to restore)."""
    old = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(yaml.safe_dump(_merge(yaml.safe_load(old), change), sort_keys=False))
    return old


def write_window(repo: Path, shift: bool) -> int:
    """Log rows for the monitor: the reference's own images (no drift) or shifted ones (drift)."""
    from regionmed.monitoring.embedding_log import EmbeddingLogWriter
    from regionmed.monitoring.reference import Reference

    log_dir = repo / "monitoring/embeddings"
    shutil.rmtree(log_dir, ignore_errors=True)
    ref = Reference.load(repo / "models/monitor_reference")
    emb, desc = ref.embeddings["image"].copy(), ref.descriptors["image"].copy()
    if shift:  # injected drift: every embedding pulled towards one direction, twice the intensity
        direction = np.random.default_rng(0).normal(size=emb.shape[1])
        emb = emb + 1.5 * direction / np.linalg.norm(direction)
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        desc["mean"] = (desc["mean"] * 2).clip(0, 1)
    w = EmbeddingLogWriter(log_dir)
    for e, d in zip(emb, desc.to_dict("records"), strict=True):
        w.log(
            endpoint="encode_image",
            model_version=ref.model_versions[0],
            request="0123456789abcdef",
            kind="image",
            embeddings=e[None],
            descriptors=[{k: d[k] for k in ("width", "height", "mean", "std")}],
        )
    w.close()
    return len(emb)


def test_retrain_runs_every_stage_through_dvc_and_produces_a_bento(pipeline):
    repo, state = pipeline["repo"], pipeline["state"]
    assert state.is_completed(), state.message
    summary = state.result()
    stages = [r["stage"] for r in summary["stages"]]
    assert stages == [
        "build_corpus",
        "train_annotator",
        "annotate_regions",
        "validate_corpus",
        "tokenizer",
        "pretrain_global",
        "pretrain_region",
        "pretrain_joint",
        "pretrain_baseline",
        "evaluate",
        "gate",
        "package",
        "monitor_reference",
    ]
    assert all(r["ran"] for r in summary["stages"])  # a clean copy: every stage ran
    bento = json.loads((repo / "metrics/package.json").read_text())["bento_tag"]
    assert summary["package"]["bento_tag"] == bento and bento.startswith("regionmed_service:")
    name, version = bento.split(":")
    home = Path(summary["package"]["bentoml_home"])
    assert (
        home == Path(os.environ["BENTOML_HOME"])
        and (home / "bentos" / name / version / "bento.yaml").is_file()
    )
    assert summary["gate"]["passed"] is True and "retrieval/i2t_R@5" in summary["metrics"]
    run_id = state.state_details.flow_run_id
    runs = task_runs(run_id)
    assert set(stages) <= set(runs)
    md = artifact("retrain-summary", run_id)
    assert (
        "# Retrain: completed" in md and bento in md and "## Gate: passed" in md and "retrieval/i2t_R@5" in md
    )
    # each stage's output is in the Prefect log, and no report text is
    lines = logs(run_id)
    assert any("Running stage 'pretrain_joint'" in x for x in lines)
    assert any("built Bento" in x for x in lines)
    assert not any("FINDINGS:" in x or "IMPRESSION:" in x for x in lines)
    print(f"retrain flow, clean copy: {pipeline['seconds']:.0f} s")


def test_a_rerun_waits_out_a_held_dvc_lock_then_dvc_skips_every_stage(pipeline):
    from dvc.lock import make_lock

    from flows.retrain import retrain

    repo = pipeline["repo"]
    lock = make_lock(str(repo / ".dvc/tmp/lock"), tmp_dir=str(repo / ".dvc/tmp"))
    lock.lock()  # another DVC process "holds" the workspace for ~10 s
    timer = threading.Timer(10, lock.unlock)
    timer.start()
    start = time.perf_counter()
    try:
        state = retrain(root=str(repo), return_state=True)
    finally:
        timer.join()  # the lock is released by the timer, in any case
    assert state.is_completed(), state.message
    summary = state.result()
    assert not any(r["ran"] for r in summary["stages"]), summary["stages"]
    first = task_runs(state.state_details.flow_run_id)["build_corpus"][0]
    assert first.run_count >= 2 and first.state.is_completed()  # retried: the lock was transient
    print(f"retrain rerun, all stages unchanged (after the lock): {time.perf_counter() - start:.0f} s")


def test_monitor_without_drift_publishes_the_report_and_does_not_retrain(pipeline):
    from flows.monitor import monitor

    repo = pipeline["repo"]
    n = write_window(repo, shift=False)
    state = monitor(root=str(repo), trigger="subflow", return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["status"] == "no_drift" and result["retrain"] is None
    assert result["summary"]["current"]["rows"]["image"] == n
    assert result["report"].startswith("monitoring/reports/") and (repo / result["report"]).is_file()
    run_id = state.state_details.flow_run_id
    md = artifact("drift-report", run_id)
    assert "# Drift: no drift" in md and "image/embeddings/model" in md and "image/embeddings/mmd" in md
    assert f"`{result['report']}`" in md and "file://" not in md
    assert child_flow_runs(run_id) == []


def test_monitor_with_injected_drift_retrains_as_a_subflow(pipeline):
    from flows.monitor import monitor

    repo = pipeline["repo"]
    write_window(repo, shift=True)
    state = monitor(root=str(repo), return_state=True)  # trigger auto: no deployment registered -> subflow
    assert state.is_completed(), state.message
    result = state.result()
    assert result["status"] == "drift" and "image/embeddings/model" in result["summary"]["drifted_checks"]
    assert result["retrain"]["mode"] == "subflow" and result["retrain"]["state"] == "Completed"
    children = child_flow_runs(state.state_details.flow_run_id)
    retrain_runs = [r for r in children if str(r.id) == result["retrain"]["flow_run_id"]]
    assert len(retrain_runs) == 1 and retrain_runs[0].state.is_completed()
    assert "# Drift: drift" in artifact("drift-report", state.state_details.flow_run_id)


def test_monitor_with_injected_drift_starts_the_served_retrain_deployment(pipeline, monkeypatch, tmp_path):
    from prefect.runner import Runner

    from flows.monitor import monitor
    from flows.serve import deployments

    repo = pipeline["repo"]
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the runner loads flows/retrain.py from here
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    write_window(repo, shift=True)
    runner = Runner(name="test-runner", query_seconds=1, limit=1)
    deployment_id = runner.add_deployment(
        deployments(repo)[0]
    )  # the retrain deployment `python -m flows.serve` serves
    with client() as c:  # the runner's poll (auto picks a deployment only when something polls it)
        c.get_scheduled_flow_runs_for_deployments([deployment_id])
        for _ in range(50):
            if c.read_deployment(deployment_id).last_polled is not None:
                break
            time.sleep(0.2)
    state = monitor(root=str(repo), return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert result["retrain"]["mode"] == "deployment" and result["retrain"]["deployment"] == "retrain/retrain"
    with client() as c:
        run = c.read_flow_run(result["retrain"]["flow_run_id"])
        assert run.parameters == {"root": str(repo), "params_file": "params.yaml"}
        assert run.state.is_scheduled() and "drift-triggered" in run.tags
    asyncio.run(runner.start(run_once=True))  # a worker of one run: executes the scheduled retrain
    with client() as c:
        run = c.read_flow_run(result["retrain"]["flow_run_id"])
    assert run.state.is_completed(), run.state


def test_a_failed_validation_stops_the_flow_without_retries_or_training(pipeline):
    from flows.retrain import retrain

    repo = pipeline["repo"]
    old = set_params(repo, {"validation": {"thresholds": {"min_images": 100_000}}})
    try:
        state = retrain(root=str(repo), return_state=True)
    finally:
        (repo / "params.yaml").write_text(old)
    assert state.is_failed()
    assert "validation failed" in state.message and "critical expectation" in state.message
    run_id = state.state_details.flow_run_id
    runs = task_runs(run_id)
    v = runs["validate_corpus"]
    assert len(v) == 1 and v[0].state.is_failed() and v[0].run_count == 1  # a verdict: no retry
    assert "tokenizer" not in runs and "pretrain_global" not in runs and "package" not in runs
    md = artifact("retrain-summary", run_id)
    assert "**Stopped at `validate_corpus`**" in md and "validation failed" in md


def test_a_failed_gate_stops_the_flow_before_packaging(pipeline):
    from flows.retrain import retrain

    repo = pipeline["repo"]
    before = json.loads((repo / "metrics/package.json").read_text())["bento_tag"]
    old = set_params(repo, {"gate": {"floors": {"grounding/full/lenient": 1.01}}})
    try:
        state = retrain(root=str(repo), return_state=True)
    finally:
        (repo / "params.yaml").write_text(old)
    assert state.is_failed()
    assert "gate failed" in state.message and "grounding/full/lenient" in state.message
    runs = task_runs(state.state_details.flow_run_id)
    assert runs["gate"][0].state.is_failed() and runs["gate"][0].run_count == 1
    assert "package" not in runs
    assert json.loads((repo / "metrics/package.json").read_text())["bento_tag"] == before
    md = artifact("retrain-summary", state.state_details.flow_run_id)
    assert "**Stopped at `gate`**" in md and "FAILED" in md
