"""The README's main command (`dvc repro`) from a clean copy of the repository, at a reduced size."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from helpers.dask_cluster import dask_cluster
from helpers.pipeline_copy import clean_copy, run, set_params
from helpers.reduced_pipeline import REDUCED, TINY_STEPS
from helpers.stage_closure import resolved_stages, traced_reads, undeclared_reads

from regionmed.corpus.schema import read_manifest
from regionmed.model.io import load_model
from regionmed.strict import TRACE_ENV

TRAINING_STAGES = ("pretrain_global", "pretrain_region", "pretrain_joint", "pretrain_baseline")
LATER_STAGES = ("evaluate", "gate")


def rerun_stages(stdout: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", stdout))


@pytest.mark.slow
def test_dvc_repro_from_a_clean_copy_runs_every_stage_and_a_rerun_is_a_no_op(tmp_path):
    repo = clean_copy(tmp_path / "repo", REDUCED)
    trace = tmp_path / "params_read.jsonl"
    first = run(["dvc", "repro"], repo, extra_env={TRACE_ENV: str(trace)})
    for stage in ("build_corpus", "validate_corpus", "tokenizer", *TRAINING_STAGES, *LATER_STAGES):
        assert f"Running stage '{stage}'" in first.stdout, stage
    # every param a stage read is declared in dvc.yaml (tests/test_dvc_deps.py checks the code deps)
    stages = resolved_stages(repo)
    reads = traced_reads(trace, stages)
    assert set(reads) >= {"build_corpus", "validate_corpus", "tokenizer", *TRAINING_STAGES, *LATER_STAGES}
    assert {name: undeclared_reads(keys, stages[name]["params"]) for name, keys in reads.items()} == {
        name: [] for name in reads
    }
    summary = json.loads((repo / "data/corpus/build.json").read_text())
    assert summary["n_kept"] == 480 and summary["n_rejected"] == 0
    assert len(read_manifest(repo / "data/corpus")) == 480
    assert json.loads((repo / "metrics/validation.json").read_text())["success"] is True
    for phase, folder in (
        ("global", "global"),
        ("region", "region"),
        ("joint", "regionmed"),
        ("baseline", "baseline"),
    ):
        metrics = json.loads((repo / f"metrics/train_{phase}.json").read_text())
        assert metrics["steps"] == (3 * TINY_STEPS if phase == "baseline" else TINY_STEPS)
        model, _ = load_model(repo / "models" / folder)
        assert model.global_only == (phase in ("global", "baseline"))
    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    for model in ("regionmed", "baseline"):
        for metric in ("retrieval/i2t_R@5", "grounding/full/lenient", "hardneg/accuracy", "vqa/accuracy"):
            assert 0 <= evaluation[model][metric]["value"] <= 1, (model, metric)
    assert "grounding/full/lenient" in evaluation["difference"]
    assert (repo / "reports/eval.md").read_text().count("grounding/full/lenient") >= 1
    assert len(list((repo / "reports/eval_gallery").glob("*.png"))) == 2
    assert json.loads((repo / "metrics/gate.json").read_text())["passed"] is True
    second = run(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date" in second.stdout

    # an impossible floor: the gate fails, names the metric, and dvc repro stops there
    params_text = (repo / "params.yaml").read_text()
    params = yaml.safe_load(params_text)
    params["gate"]["floors"]["grounding/full/lenient"] = 1.01
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    failed = run(["dvc", "repro"], repo, check=False)
    assert rerun_stages(failed.stdout) == {"gate"}
    assert failed.returncode != 0
    assert "grounding/full/lenient" in failed.stdout + failed.stderr
    assert json.loads((repo / "metrics/gate.json").read_text())["passed"] is False
    assert "Running stage 'package'" not in failed.stdout
    (repo / "params.yaml").write_text(params_text)

    # the same pipeline on a real Dask cluster (a scheduler and two worker processes on loopback), up
    # to the evaluation: exactly the stages that read `cluster` rerun, and their data are the local
    # run's, byte for byte (package and monitor_reference read it too; their embedding passes are
    # tested on workers in tests/inference/test_image_tasks.py)
    local_lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    with dask_cluster(tmp_path / "dask", n_workers=2) as cluster:
        set_params(repo, {"cluster": {"address": cluster.address}})
        on_cluster = run(["dvc", "repro", "evaluate"], repo)
        with cluster.client() as client:
            # the scheduler's recent transitions: the keys of the tasks it ran (finished ones are forgotten)
            ran = client.run_on_scheduler(
                lambda dask_scheduler: [str(t[0]) for t in dask_scheduler.transition_log]
            )
    stages = resolved_stages(repo)
    reading_cluster = {name for name, stage in stages.items() if "cluster" in str(stage.get("params"))}
    after_evaluate = {"package", "monitor_reference"}
    assert {
        "build_corpus",
        "annotate_regions",
        "validate_corpus",
        "evaluate",
    } | after_evaluate <= reading_cluster
    assert rerun_stages(on_cluster.stdout) == reading_cluster - after_evaluate, on_cluster.stdout
    for task in ("build synthetic", "re-hash images", "embed images (regionmed)"):
        assert any(key.startswith(task) for key in ran), (task, sorted(set(ran))[:20])
    cluster_lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for name in ("build_corpus", "annotate_regions"):  # their data (metrics and reports carry timings)
        data_outs = [
            [o for o in lock[name]["outs"] if o["path"].startswith("data/")]
            for lock in (cluster_lock, local_lock)
        ]
        assert data_outs[0] == data_outs[1] != [], name
    assert json.loads((repo / "metrics/validation.json").read_text())["success"] is True
