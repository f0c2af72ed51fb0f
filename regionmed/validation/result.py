"""The outcome of a validation: one entry per expectation run, plus what was skipped and why."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CheckResult:
    suite: str
    check: str  # meta.check in the suite file: the name a failure is reported under
    expectation: str  # the GX expectation type
    columns: list[str]
    severity: str  # critical | warning
    success: bool
    observed: Any  # GX's observed_value, or "k of n unexpected"
    unexpected_count: int | None = None
    element_count: int | None = None
    examples: list[Any] = field(default_factory=list)  # failing rows (index columns + value), truncated
    description: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)  # the arguments after parameters were filled in
    error: str | None = None

    @property
    def id(self) -> str:
        return f"{self.suite}.{self.check}" + (f"[{','.join(self.columns)}]" if self.columns else "")

    @property
    def blocking(self) -> bool:
        return not self.success and self.severity == "critical"

    def one_line(self) -> str:
        detail = self.error or f"observed {_short(self.observed)}"
        if self.examples:
            detail += f"; e.g. {_short(self.examples[:3], 160)}"
        return f"{self.id} ({self.severity}): {self.description or self.expectation}: {detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, **asdict(self)}


@dataclass
class ValidationResult:
    corpus_dir: str
    source: str
    regions_required: bool
    qa_required: bool
    checks: list[CheckResult]
    skipped: list[dict]
    stats: dict[str, Any]
    elapsed_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        """False when any critical expectation failed: the pipeline must stop."""
        return not self.critical_failures

    @property
    def critical_failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.blocking]

    @property
    def warnings(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success and c.severity != "critical"]

    def failed_checks(self, severity: str | None = None) -> set[str]:
        return {c.check for c in self.checks if not c.success and severity in (None, c.severity)}

    def summary(self) -> str:
        head = (
            f"validate_corpus {'passed' if self.success else 'FAILED'}: {len(self.checks)} expectations on "
            f"{self.stats.get('n_images')} images ({self.source}); {len(self.critical_failures)} critical "
            f"failure(s), {len(self.warnings)} warning(s), {len(self.skipped)} skipped; "
            f"{self.elapsed_s:.1f} s"
        )
        lines = [head]
        lines += [f"  CRITICAL {c.one_line()}" for c in self.critical_failures]
        lines += [f"  warning  {c.one_line()}" for c in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Machine-readable result (DVC metrics): headline numbers first, then every check.

        Deterministic for a given corpus and params (no timings, no clock): training stages depend on
        this file, so re-validating an unchanged corpus must not make them rerun.
        """
        return _plain(
            {
                "success": self.success,
                "n_expectations": len(self.checks),
                "n_failed_critical": len(self.critical_failures),
                "n_failed_warning": len(self.warnings),
                "n_skipped": len(self.skipped),
                "failed_critical": sorted({c.id for c in self.critical_failures}),
                "failed_warning": sorted({c.id for c in self.warnings}),
                "corpus": {
                    "dir": self.corpus_dir,
                    "source": self.source,
                    "regions_required": self.regions_required,
                    "qa_required": self.qa_required,
                },
                "stats": self.stats,
                "checks": [c.to_dict() for c in self.checks],
                "skipped": self.skipped,
            }
        )

    def timings_dict(self) -> dict[str, float]:
        return {"elapsed_s": round(self.elapsed_s, 3), **{k: round(v, 3) for k, v in self.timings.items()}}


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(_plain(value), default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN to None, tuples/sets to lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
