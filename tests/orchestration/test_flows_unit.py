"""The flows' wiring without running the pipeline: stage order, retry policy, failure classes, schedules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers.params import write_params

from flows._dvc import (
    GateFailed,
    StageFailed,
    ValidationFailed,
    classify_failure,
    is_transient,
    pipeline_stages,
    redact,
)
from flows.retrain import render_summary, stage_task

REPO_ROOT = Path(__file__).resolve().parents[2]
PIPELINE = [
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


def test_the_retrain_flow_runs_every_stage_but_monitor_in_dvcs_order():
    from regionmed.params import load_params

    exclude = load_params(REPO_ROOT / "params.yaml").flows.retrain.exclude_stages
    assert pipeline_stages(REPO_ROOT, exclude) == PIPELINE
    with pytest.raises(ValueError, match="does not have"):
        pipeline_stages(REPO_ROOT, ["no_such_stage"])


def test_the_retrain_docstring_names_every_stage_in_order():
    import fnmatch

    import flows.retrain

    chain = flows.retrain.__doc__.split("``dvc.yaml`` (", 1)[1].split(";", 1)[0]
    named = [" ".join(name.split()) for name in chain.split("→")]
    expanded = [stage for pattern in named for stage in PIPELINE if fnmatch.fnmatchcase(stage, pattern)]
    assert expanded == PIPELINE, named


def test_retries_only_for_retry_safe_stages():
    no_retry = ["validate_corpus", "gate", "package"]
    for stage in PIPELINE:
        t = stage_task(stage, 2, 5, no_retry)
        assert t.name == stage
        assert t.retries == (0 if stage in no_retry else 2), stage
        assert t.retry_condition_fn is is_transient
    # a verdict stage is never retried, whatever the params say
    assert stage_task("gate", 3, 5, []).retries == 0 and stage_task("validate_corpus", 3, 5, []).retries == 0


def test_only_transient_stage_failures_are_retried():
    from prefect.states import Failed

    def state(exc):
        return Failed(data=exc)

    assert is_transient(None, None, state(StageFailed("tokenizer", "lock", transient=True))) is True
    assert is_transient(None, None, state(StageFailed("tokenizer", "bug"))) is False
    assert is_transient(None, None, state(ValidationFailed("validate_corpus", "no"))) is False
    assert is_transient(None, None, state(RuntimeError("other"))) is False


def test_failures_are_classified_from_dvcs_output_and_the_stage_outputs(tmp_path):
    write_params(tmp_path / "params.yaml")  # the repository's: its metrics files relative to tmp_path
    locked = classify_failure(
        tmp_path,
        "tokenizer",
        255,
        [
            (
                "ERROR: Unable to acquire lock. Most likely another DVC "
                "process is running or was terminated abruptly."
            )
        ],
        "params.yaml",
    )
    assert locked.transient and "lock" in str(locked)
    killed = classify_failure(
        tmp_path,
        "pretrain_joint",
        255,
        [
            (
                "ERROR: failed to reproduce 'pretrain_joint': failed to "
                "run: python -m regionmed train ..., exited with -9"
            )
        ],
        "params.yaml",
    )
    assert killed.transient and "killed" in str(killed)
    bug = classify_failure(
        tmp_path,
        "evaluate",
        255,
        [
            "Traceback ...",
            "ValueError: boom",
            ("ERROR: failed to reproduce 'evaluate': failed to run: ..., exited with 1"),
        ],
        "params.yaml",
    )
    assert not bug.transient and type(bug) is StageFailed and "exited with 1" in str(bug)
    # verdicts come from the stages' own outputs
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/validation.json").write_text(
        json.dumps(
            {
                "success": False,
                "n_failed_critical": 2,
                "failed_critical": ["corpus_summary.min_images[n_images]", "labels.coverage"],
                "checks": [
                    {"id": "corpus_summary.min_images[n_images]", "observed": "4000 vs need >= 100000"}
                ],
            }
        )
    )
    v = classify_failure(tmp_path, "validate_corpus", 255, ["ERROR: failed to reproduce"], "params.yaml")
    assert isinstance(v, ValidationFailed) and not v.transient
    assert (
        "2 critical expectation(s) failed "
        "(corpus_summary.min_images[n_images]: observed 4000 vs need >= 100000; labels.coverage)"
    ) in str(v)
    (tmp_path / "metrics/gate.json").write_text(
        json.dumps(
            {
                "passed": False,
                "n_failed": 1,
                "comparisons": [
                    {
                        "metric": "hardneg/accuracy",
                        "kind": "floor",
                        "value": 0.5,
                        "threshold": 0.7,
                        "passed": False,
                    },
                    {
                        "metric": "retrieval/i2t_R@5",
                        "kind": "floor",
                        "value": 0.4,
                        "threshold": 0.2,
                        "passed": True,
                    },
                ],
            }
        )
    )
    g = classify_failure(tmp_path, "gate", 255, [], "params.yaml")
    assert isinstance(g, GateFailed) and "hardneg/accuracy (floor: 0.5 vs 0.7)" in str(g)
    assert "retrieval" not in str(g)
    # gate.require_champion without a readable champion record: no comparison, the gate's own message
    (tmp_path / "metrics/gate.json").write_text(
        json.dumps(
            {
                "passed": False,
                "n_failed": 1,
                "comparisons": [],
                "error": "gate.require_champion is true, but ...",
            }
        )
    )
    g = classify_failure(tmp_path, "gate", 255, [], "params.yaml")
    assert isinstance(g, GateFailed) and "gate failed: gate.require_champion is true, but ..." in str(g)


def test_validation_examples_never_reach_the_prefect_log():
    line = (
        "  CRITICAL text.length (critical): report length: observed 3 of 480; e.g. ['No acute findings...']"
    )
    assert "No acute" not in redact(line) and "examples omitted" in redact(line)
    assert len(redact("x" * 10_000)) < 2100


def test_the_summary_markdown_names_the_failed_stage_metrics_gate_and_bento():
    s = {
        "status": "completed",
        "failed_stage": None,
        "message": None,
        "stages": [
            {"stage": "build_corpus", "ran": False, "seconds": 1.2},
            {"stage": "gate", "ran": True, "seconds": 3.0},
        ],
        "metrics": {"retrieval/i2t_R@5": {"regionmed": 0.25, "baseline": 0.2}},
        "gate": {"passed": True, "n_failed": 0, "failed": []},
        "package": {"model_tag": "regionmed:abc", "bento_tag": "regionmed_service:def", "bentoml_home": "/x"},
    }
    md = render_summary(s)
    assert (
        "| build_corpus | unchanged (DVC cache) | 1.2 |" in md
        and "| retrieval/i2t_R@5 | 0.2500 | 0.2000 |" in md
    )
    assert "## Gate: passed" in md and "`regionmed_service:def`" in md
    failed = render_summary(
        {
            **s,
            "status": "failed",
            "failed_stage": "gate",
            "message": "gate failed: x",
            "gate": {"passed": False, "n_failed": 1, "failed": ["x"]},
            "package": {},
        }
    )
    assert "**Stopped at `gate`**: gate failed: x" in failed and "FAILED (1 checks: x)" in failed


def test_serve_deployments_take_their_schedules_from_params():
    from flows.serve import deployments
    from regionmed.params import load_params

    cfg = load_params(REPO_ROOT / "params.yaml").flows
    retrain, monitor = deployments(REPO_ROOT)
    assert (retrain.name, monitor.name) == ("retrain", "monitor")
    assert retrain.schedules[0].schedule.cron == cfg.retrain.cron
    assert monitor.schedules[0].schedule.cron == cfg.monitor.cron
    assert retrain.schedules[0].schedule.timezone == cfg.timezone
    assert retrain.parameters == {"root": str(REPO_ROOT), "params_file": "params.yaml"}
    assert monitor.parameters["until"] == "now"
    assert retrain.concurrency_limit == 1 and monitor.concurrency_limit == 1
    assert f"retrain/{retrain.name}" == cfg.monitor.retrain_deployment


def test_a_bad_cron_in_params_is_refused(tmp_path):
    from pydantic import ValidationError

    from flows.serve import deployments

    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["flows"]["retrain"]["cron"] = "every sunday"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises((ValidationError, ValueError)):
        deployments(tmp_path)


def test_prefect_yaml_declares_both_flows_with_the_params_schedules():
    from prefect.cli.deploy._models import PrefectYamlModel

    from flows.monitor import monitor
    from flows.retrain import retrain
    from regionmed.params import load_params

    cfg = load_params(REPO_ROOT / "params.yaml").flows
    doc = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    model = PrefectYamlModel.model_validate(doc)  # Prefect's own schema of prefect.yaml
    deps = {d.name: d for d in model.deployments}
    assert set(deps) == {"retrain", "monitor"}
    for name, flow_obj, cron in (
        ("retrain", retrain, cfg.retrain.cron),
        ("monitor", monitor, cfg.monitor.cron),
    ):
        d = deps[name]
        path, attr = d.entrypoint.split(":")
        assert (REPO_ROOT / path).is_file() and attr == flow_obj.fn.__name__ and flow_obj.name == name
        raw = next(x for x in doc["deployments"] if x["name"] == name)
        assert raw["schedules"][0]["cron"] == cron and raw["schedules"][0]["timezone"] == cfg.timezone
        assert d.work_pool.name and d.concurrency_limit == 1
        assert set(d.parameters) <= set(flow_obj.parameters.properties)
    assert cfg.monitor.retrain_deployment == "retrain/retrain"


def test_self_training_sets_the_localizer_line_and_keeps_the_rest_of_params_yaml():
    from flows.self_training import set_localizer

    text = (REPO_ROOT / "params.yaml").read_text()
    changed = set_localizer(text, "self")
    from regionmed.params import Params

    assert Params.model_validate(yaml.safe_load(changed)).annotate.localizer == "self"
    assert changed.count("\n") == text.count("\n")
    assert [a for a, b in zip(text.splitlines(), changed.splitlines(), strict=True) if a != b] == [
        line for line in text.splitlines() if line.strip().startswith("localizer:")
    ][:1]
    with pytest.raises(ValueError, match=r"annotate\.localizer"):
        set_localizer("seed: 0\n", "self")


def test_a_verdict_is_logged_without_its_traceback_an_unexpected_error_with_it():
    import logging
    import sys

    import flows  # noqa: F401  (installs the filter)
    from flows._dvc import VerdictTracebacks

    assert any(isinstance(f, VerdictTracebacks) for f in logging.getLogger("prefect.task_runs").filters)
    assert any(isinstance(f, VerdictTracebacks) for f in logging.getLogger("prefect.flow_runs").filters)

    def record(exc):
        try:
            raise exc
        except Exception:
            return logging.LogRecord(
                "prefect.task_runs", logging.ERROR, __file__, 1, "failed: %r", (exc,), sys.exc_info()
            )

    verdict = record(GateFailed("gate", "gate failed: x (floor: 0.5 vs 0.7)"))
    assert VerdictTracebacks().filter(verdict) and verdict.exc_info is None
    assert "Traceback" not in logging.Formatter().format(verdict)
    bug = record(StageFailed("evaluate", "evaluate failed (dvc exit 255)"))
    assert VerdictTracebacks().filter(bug) and "Traceback" in logging.Formatter().format(bug)
