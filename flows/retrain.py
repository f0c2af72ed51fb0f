"""The ``retrain`` flow: the DVC pipeline under Prefect, one task per stage.

    python -m flows.retrain [--root .] [--params params.yaml]

Runs every stage of ``dvc.yaml`` (build_corpus → train_annotator → annotate_regions → validate_corpus →
tokenizer → pretrain_* → evaluate → gate → package → monitor_reference; ``flows.retrain.exclude_stages``
leaves out ``monitor``) in DVC's order, one at a time, each as ``dvc repro --single-item <stage>``: DVC
skips a stage whose deps, params and code are unchanged, so a rerun on the same inputs is cheap. Each
stage's output streams into the task's Prefect log.

Retries (``flows.retrain.retries``) only for retry-safe stages and only for transient failures
(the DVC lock held by someone else, a killed process): ``validate_corpus`` and ``gate`` give verdicts
and ``package`` has side effects outside DVC (the BentoML store, the champion record), so they are
never retried, and neither is a stage whose code raised. A failed validation or gate stops the flow
in a Failed state whose message says why. At the end (or at the failure) a markdown artifact
``retrain-summary`` lists the stages, the headline metrics, the gate decision and the new Bento tag.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows._dvc import VERDICT_STAGES, StageFailed, is_transient, pipeline_stages, run_stage
from regionmed.evaluation.headline import KEY_METRICS

ARTIFACT_KEY = "retrain-summary"


@task(cache_policy=NO_CACHE, persist_result=False)
def dvc_stage(root: str, stage: str, params_file: str = "params.yaml") -> dict[str, Any]:
    """One DVC stage (``dvc repro --single-item``), its output in this task's log."""
    logger = get_run_logger()
    return run_stage(root, stage, logger.info, params_file=params_file).to_dict()


def stage_task(stage: str, retries: int, retry_delay_s: float, no_retry: list[str]):
    """The stage's task, named after it, with retries only where they are safe."""
    safe = stage not in VERDICT_STAGES and stage not in no_retry
    return dvc_stage.with_options(
        name=stage,
        task_run_name=stage,
        retries=retries if safe else 0,
        retry_delay_seconds=retry_delay_s,
        retry_condition_fn=is_transient,
    )


@flow(name="retrain", log_prints=True)
def retrain(
    root: str = ".", params_file: str = "params.yaml", self_training_round: bool = False
) -> dict[str, Any]:
    """Run the DVC pipeline stage by stage; returns the stages' runs, metrics, gate decision and Bento tag.
    ``self_training_round``: then annotate the unboxed images with the trained model and retrain
    (flows/self_training.py); the summary describes the second pass."""
    from regionmed.params import load_params

    logger = get_run_logger()
    root_path = Path(root).resolve()
    params = load_params(root_path / params_file)
    cfg = params.flows.retrain
    stages = pipeline_stages(root_path, cfg.exclude_stages)
    logger.info("retrain in %s: %d stages: %s", root_path, len(stages), " -> ".join(stages))
    runs: list[dict[str, Any]] = []
    for stage in stages:
        try:
            runs.append(
                stage_task(stage, cfg.retries, cfg.retry_delay_s, cfg.no_retry_stages)(
                    str(root_path), stage, params_file
                )
            )
        except StageFailed as exc:
            summary = collect_summary(root_path, params, runs, failed=exc)
            create_markdown_artifact(
                render_summary(summary), key=ARTIFACT_KEY, description=f"retrain stopped at {stage}"
            )
            raise
    if self_training_round:
        from flows.self_training import self_training_round as round_flow

        runs += round_flow(str(root_path), params_file)
        params = load_params(root_path / params_file)
    summary = collect_summary(root_path, params, runs)
    create_markdown_artifact(
        render_summary(summary),
        key=ARTIFACT_KEY,
        description=f"retrain: gate {'passed' if summary['gate'].get('passed') else 'not passed'}, "
        f"Bento {summary['package'].get('bento_tag')}",
    )
    logger.info(
        "retrain done: %d stages ran, %d unchanged; Bento %s",
        sum(r["ran"] for r in runs),
        sum(not r["ran"] for r in runs),
        summary["package"].get("bento_tag"),
    )
    return summary


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def collect_summary(
    root: Path, params, runs: list[dict], failed: StageFailed | None = None
) -> dict[str, Any]:
    """Stages, headline metrics (candidate and baseline), the gate decision and the package record."""
    evaluation = _json(root / params.evaluate.metrics_file)
    names = list(dict.fromkeys([*KEY_METRICS, *params.gate.floors, *params.gate.must_beat_baseline]))
    metrics = {}
    for name in names:
        row = {m: evaluation.get(m, {}).get(name, {}).get("value") for m in ("regionmed", "baseline")}
        if any(v is not None for v in row.values()):
            metrics[name] = row
    gate = _json(root / params.gate.decision_file)
    package = _json(root / params.serving.metrics_file)
    done = {r["stage"] for r in runs}  # completed in this run (ran or unchanged)
    return {
        "status": "failed" if failed else "completed",
        "failed_stage": failed.stage if failed else None,
        "message": str(failed) if failed else None,
        "stages": runs,
        "metrics": metrics if "evaluate" in done else {},
        "gate": {
            "passed": gate.get("passed"),
            "n_failed": gate.get("n_failed"),
            "failed": [c.get("metric") for c in gate.get("comparisons", []) if not c.get("passed")],
        }
        if "gate" in done or (failed and failed.stage == "gate")
        else {},
        "package": {k: package.get(k) for k in ("model_tag", "bento_tag", "bentoml_home", "gate_passed")}
        if "package" in done
        else {},
    }


def render_summary(s: dict[str, Any]) -> str:
    def fmt(v):
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))

    lines = [f"# Retrain: {s['status']}", ""]
    if s["failed_stage"]:
        lines += [f"**Stopped at `{s['failed_stage']}`**: {s['message']}", ""]
    lines += ["| stage | result | seconds |", "|---|---|---|"]
    lines += [
        f"| {r['stage']} | {'ran' if r['ran'] else 'unchanged (DVC cache)'} | {r['seconds']} |"
        for r in s["stages"]
    ]
    if s["failed_stage"]:
        lines.append(f"| {s['failed_stage']} | **failed** | |")
    if s["metrics"]:
        lines += [
            "",
            "## Metrics (test split)",
            "",
            "| metric | RegionMed | global-only baseline |",
            "|---|---|---|",
        ]
        lines += [
            f"| {k} | {fmt(v.get('regionmed'))} | {fmt(v.get('baseline'))} |" for k, v in s["metrics"].items()
        ]
    if s["gate"]:
        g = s["gate"]
        verdict = (
            "passed"
            if g.get("passed")
            else f"FAILED ({g.get('n_failed')} checks: {', '.join(g.get('failed', []))})"
        )
        lines += ["", f"## Gate: {verdict}"]
    if s["package"]:
        p = s["package"]
        lines += [
            "",
            "## Package",
            "",
            f"- model: `{p.get('model_tag')}`",
            f"- Bento: `{p.get('bento_tag')}`",
            f"- store: `{p.get('bentoml_home')}`",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from regionmed.env import configure_environment

    configure_environment()
    ap = argparse.ArgumentParser(prog="python -m flows.retrain", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="the repository (where dvc.yaml is)")
    ap.add_argument("--params", default="params.yaml", help="params file, relative to --root")
    args = ap.parse_args(argv)
    state = retrain(root=args.root, params_file=args.params, return_state=True)
    print(
        f"retrain: {state.name}{': ' + state.message if state.message and not state.is_completed() else ''}",
        file=sys.stderr,
    )
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    sys.exit(main())
