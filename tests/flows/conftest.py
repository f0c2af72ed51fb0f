"""Fixtures of the flow tests.

This folder is named ``flows`` like the package it tests, and pytest puts ``tests/`` on ``sys.path``
(``pythonpath`` in pyproject.toml), where ``tests/flows`` would be found as a namespace package
``flows``. Import the real package first, from the repository root.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
# E402: the real package must be on the path (only when it is not yet) before this import
import flows  # noqa: E402

assert flows.__file__ and Path(flows.__file__).parent == REPO_ROOT / "flows", flows
