"""Process-wide switches set once at every entry point: no telemetry, no hub downloads.

The switches are data, ``quiet.env`` beside this module, which the Makefile includes too. Values
already in the environment win, so a user can still opt in to anything.
"""

from __future__ import annotations

import os
from pathlib import Path

QUIET_ENV_FILE = Path(__file__).with_name("quiet.env")


def read_env_file(path: str | Path) -> dict[str, str]:
    """``NAME=value`` lines (``#`` comments and blank lines skipped) as a dict."""
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            out[name.strip()] = value.strip()
    return out


QUIET_ENV = read_env_file(QUIET_ENV_FILE)


def configure_environment() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
