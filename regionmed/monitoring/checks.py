"""The result types of a drift run: one :class:`Check` per score, a :class:`KindResult` per kind.

Shared by the checks (``drift.py``) and the HTML report (``drift_report.py``), so that neither
imports the other's module for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

STATUS_DRIFT, STATUS_OK, STATUS_NOT_ENOUGH = "drift", "no_drift", "not_enough_data"


@dataclass
class Check:
    name: str
    kind: str
    group: str  # embeddings | descriptor | zero_shot
    method: str
    threshold: float
    score: float | None = None
    drift: bool | None = None
    status: str = STATUS_NOT_ENOUGH  # drift | no_drift | not_enough_data | no_data
    column: str | None = None

    def to_dict(self) -> dict[str, Any]:
        score = None if self.score is None or not np.isfinite(self.score) else round(float(self.score), 6)
        out = {
            "name": self.name,
            "kind": self.kind,
            "group": self.group,
            "method": self.method,
            "threshold": self.threshold,
            "score": score,
            "drift": self.drift,
            "status": self.status,
        }
        if self.column:
            out["column"] = self.column
        return out


@dataclass
class KindResult:
    kind: str
    checks: list[Check]
    rows_reference: int
    rows_current: int
    rows_used: dict[str, int] = field(default_factory=dict)
    components: int | None = None
    snapshot: Any = None
    seconds: float = 0.0
