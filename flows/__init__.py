"""Prefect flows around the DVC pipeline: ``retrain`` (the stages, one task each) and ``monitor``
(a drift report on the serving log, which starts ``retrain`` on drift). docs/monitoring.md.

    python -m flows.retrain     # the pipeline once, under Prefect
    python -m flows.monitor     # one drift report (and a retrain on drift)
    python -m flows.serve       # both, on their cron schedules from params.yaml (one machine)
"""

from regionmed.env import configure_environment

configure_environment()  # no telemetry from Prefect, DVC, BentoML in any flow process

from flows._dvc import quiet_verdict_tracebacks  # noqa: E402  (after the environment is set)

quiet_verdict_tracebacks()  # a failed validation or gate logs its message, not a traceback
