"""Serve both flows on one machine, on the cron schedules of ``params.yaml`` (``flows:``).

    export PREFECT_API_URL=http://127.0.0.1:4200/api   # before the server too, when not on port 4200
    prefect server start --host 127.0.0.1      # shell 1 (holds it): the API + UI at http://127.0.0.1:4200
    python -m flows.serve                      # shell 2 (holds it too)

``serve`` registers the deployments ``retrain/retrain`` and ``monitor/monitor`` with their
schedules and runs their flow runs in this process until stopped (Ctrl-C pauses the schedules).
Without a running server Prefect's temporary API cannot schedule anything: start one first.
For a work pool (a Prefect server or Prefect Cloud, workers on Kubernetes or Docker) use
``prefect.yaml`` instead (``prefect deploy --all``): one or the other, as both register the same
names and the later replaces (and unpauses) the other's deployments. docs/monitoring.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import serve
from prefect.schedules import Cron

from flows.monitor import monitor
from flows.retrain import retrain


def deployments(root: str | Path = ".", params_file: str = "params.yaml") -> list:
    """The two deployments, with schedules and parameters from the params file."""
    from regionmed.params import load_params

    root = Path(root).resolve()
    cfg = load_params(root / params_file).flows
    parameters = {"root": str(root), "params_file": params_file}
    retrain_name, monitor_name = "retrain", "monitor"
    if cfg.monitor.retrain_deployment != f"retrain/{retrain_name}":
        raise ValueError(
            f"flows.monitor.retrain_deployment is {cfg.monitor.retrain_deployment!r}, but this serves "
            f"'retrain/{retrain_name}'"
        )
    return [
        retrain.to_deployment(
            name=retrain_name,
            schedule=Cron(cfg.retrain.cron, timezone=cfg.timezone),
            parameters=parameters,
            concurrency_limit=1,
            tags=["regionmed"],
            description="The DVC pipeline, one task per stage (flows/retrain.py)",
        ),
        monitor.to_deployment(
            name=monitor_name,
            schedule=Cron(cfg.monitor.cron, timezone=cfg.timezone),
            parameters={**parameters, "until": "now"},
            concurrency_limit=1,
            tags=["regionmed"],
            description="Drift report on the serving log; retrain on drift (flows/monitor.py)",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="the repository")
    ap.add_argument("--params", default="params.yaml", help="params file, relative to --root")
    args = ap.parse_args(argv)
    serve(*deployments(args.root, args.params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
