"""Process-wide switches set once at every entry point: no telemetry, no hub downloads.

Values already in the environment win, so a user can still opt in to anything.
"""

from __future__ import annotations

import os

QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
    "ITERATIVE_DO_NOT_TRACK": "1",
    "DVCLIVE_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def configure_environment() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
