"""Where a drift-triggered retrain runs (``flows.monitor.trigger``), and the line that says so.

- ``deployment``: ``run_deployment(..., timeout=0)`` of ``flows.monitor.retrain_deployment``. The run
  is Scheduled in the deployment's queue; a worker (``prefect worker start``) or a runner
  (``python -m flows.serve``) executes it on its own machine, under its own concurrency limit.
- ``subflow``: the retrain flow inside this run, in this process.
- ``auto``: the deployment only when something polls it (``is_polled``: the API saw a worker or runner
  ask for its runs within Prefect's foreman timeout, 60 s by default), else the subflow. A deployment
  registered once (``flows.serve`` or ``prefect deploy`` share ``$PREFECT_HOME/prefect.db`` with the
  temporary API of a plain ``python -m flows.monitor``) but with nothing polling it would leave the
  run Scheduled for ever.
- ``none``: report only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger


def find_deployment(name: str) -> Any | None:
    """The deployment ``<flow>/<deployment>`` if the API knows it, else None."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            return client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None


def poll_timeout_s() -> float:
    """After this long without a poll Prefect's foreman marks a deployment not ready; we use the same."""
    from prefect.settings import get_current_settings

    return float(get_current_settings().server.services.foreman.deployment_last_polled_timeout_seconds)


def poller(deployment: Any) -> str:
    """Who runs the deployment's runs: a worker of its work pool's queue, or a runner."""
    if deployment.work_pool_name:
        return f"a worker of work pool {deployment.work_pool_name!r}, queue {deployment.work_queue_name!r}"
    return "a runner (python -m flows.serve)"


def is_polled(deployment: Any, now: datetime | None = None) -> tuple[bool, str]:
    """Whether a worker or runner asked for this deployment's runs recently, and a phrase saying so."""
    last = deployment.last_polled
    if last is None:
        return False, f"nothing has ever polled it (needs {poller(deployment)})"
    age = ((now or datetime.now(UTC)) - last).total_seconds()
    if age > poll_timeout_s():
        return (
            False,
            f"last polled {age:.0f} s ago, over {poll_timeout_s():.0f} s (needs {poller(deployment)})",
        )
    return True, f"polled {age:.0f} s ago by {poller(deployment)}"


def trigger_retrain(mode: str, deployment: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Start a retrain run as ``mode`` says (module docstring); returns how, why, and the run's id and
    state."""
    logger = get_run_logger()
    if mode == "none":
        logger.warning("drift found; flows.monitor.trigger is 'none': no retraining started")
        return {"mode": "none", "reason": "flows.monitor.trigger is 'none'"}
    reason = f"flows.monitor.trigger is {mode!r}"
    if mode in ("auto", "deployment"):
        found = find_deployment(deployment)
        if found is None:
            reason = f"no deployment {deployment!r} is registered"
            if mode == "deployment":
                raise RuntimeError(
                    f"drift found, but {reason} (python -m flows.serve, or prefect deploy --all)"
                )
        else:
            polled, why = is_polled(found)
            if polled or mode == "deployment":
                return _start_deployment(deployment, parameters, why if polled else f"not polled: {why}")
            reason = f"deployment {deployment!r} is registered but not polled: {why}"
        logger.info("%s: retraining as a subflow of this run", reason)
    from flows.retrain import retrain

    state = retrain(**parameters, return_state=True)
    run_id = getattr(state.state_details, "flow_run_id", None)
    logger.info("retrain subflow ended %s%s", state.name, f": {state.message}" if state.message else "")
    return {
        "mode": "subflow",
        "reason": reason,
        "flow_run_id": str(run_id) if run_id else None,
        "state": state.name,
        "message": state.message,
    }


def _start_deployment(deployment: str, parameters: dict[str, Any], why: str) -> dict[str, Any]:
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    run = run_deployment(
        deployment, parameters=parameters, timeout=0, as_subflow=True, tags=["drift-triggered"]
    )
    state = run.state.name if run.state else "Scheduled"
    log = logger.info if not why.startswith("not polled") else logger.warning
    log("drift found: started %s run %s (%s), %s; %s", deployment, run.name, run.id, state, why)
    return {
        "mode": "deployment",
        "deployment": deployment,
        "reason": why,
        "flow_run_id": str(run.id),
        "flow_run_name": run.name,
        "state": state,
    }


def retrain_line(retrain: dict[str, Any] | None) -> str:
    """The monitor's last line: whether a retrain started, how, and the run's id and state."""
    if retrain is None:
        return "retrain: not started (no drift)"
    if retrain["mode"] == "none":
        return f"retrain: not started ({retrain['reason']})"
    if retrain["mode"] == "deployment":
        return (
            f"retrain: deployment {retrain['deployment']} run {retrain['flow_run_name']} "
            f"({retrain['flow_run_id']}) {retrain['state']}; {retrain['reason']}"
        )
    message = f": {retrain['message']}" if retrain.get("message") else ""
    return f"retrain: subflow run {retrain['flow_run_id']} {retrain['state']}{message} ({retrain['reason']})"
