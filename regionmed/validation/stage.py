"""The ``validate_corpus`` stage: the expectation suites on the annotated corpus, a verdict and a report.

The work is :func:`regionmed.validation.validate.validate_corpus` (a result, never an exception for
bad data); this module writes ``validation.metrics_file`` and ``validation.report_file`` and says
what failed. A failed critical expectation is a failed check, :class:`ValidationFailed` (exit
status 1), raised once the outputs are written; a corpus or suite that cannot be read is bad input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from regionmed.errors import BadInput, CheckFailed
from regionmed.params_pipeline import PipelineParams
from regionmed.validation.report import write_outputs
from regionmed.validation.result import ValidationResult
from regionmed.validation.validate import validate_corpus


class ValidationFailed(CheckFailed):
    """A critical expectation failed: the pipeline stops before training (the outputs say which)."""


@dataclass(frozen=True)
class ValidationStageResult:
    result: ValidationResult
    metrics_file: Path
    report_file: Path

    @property
    def passed(self) -> bool:
        return self.result.success

    def summary_line(self) -> str:
        head = self.result.summary().splitlines()[0]
        return f"{head}; report: {self.report_file}; result: {self.metrics_file}"


def run(
    params: PipelineParams,
    corpus: str | Path | None = None,
    metrics: str | Path | None = None,
    report: str | Path | None = None,
    timings: str | Path | None = None,
    log=print,
) -> ValidationStageResult:
    """Validate ``annotate.out_dir`` (or ``corpus``); write the metrics, the report and, if asked, the
    timings (kept out of the metrics: they would make the file differ run to run)."""
    v = params.validation
    try:
        result = validate_corpus(corpus or params.stage_corpus, params)
    except (FileNotFoundError, ValueError, KeyError) as exc:  # no manifest, an unreadable suite...
        raise BadInput(str(exc)) from None
    metrics, report = Path(metrics or v.metrics_file), Path(report or v.report_file)
    write_outputs(result, metrics, report, timings)
    for line in result.summary().splitlines()[1:]:  # each failed expectation, one line
        log(line)
    done = ValidationStageResult(result, metrics, report)
    if not done.passed:
        raise ValidationFailed(done.summary_line())
    return done
