"""The ``gate`` stage: a thin wrapper around :func:`regionmed.evaluation.gate.decide`.

Reads ``evaluate.metrics_file`` and the champion record, writes the decision (``gate.decision_file``)
and returns it, or raises :class:`GateFailed` (a failed check, exit status 1) once it is written.

The champion is whatever ``package`` recorded last (``gate.champion_file``, committed with the
repository: regionmed/evaluation/champion.py); with no champion only the floors and the baseline
checks apply, unless ``gate.require_champion`` makes a missing record an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from regionmed.atomic import atomic_write_text
from regionmed.errors import CheckFailed, require
from regionmed.evaluation.champion import ChampionUnavailable, read_champion
from regionmed.evaluation.gate import GateDecision, decide
from regionmed.evaluation.summary import gate_view
from regionmed.params_pipeline import PipelineParams


class GateFailed(CheckFailed):
    """A floor, the champion comparison or a must-beat-baseline check failed: nothing is packaged."""


@dataclass(frozen=True)
class GateResult:
    decision: GateDecision

    @property
    def passed(self) -> bool:
        return self.decision.passed

    def summary_line(self) -> str:
        return self.decision.table().splitlines()[0]  # "gate: PASSED (0 of 12 checks failed)"


def run(params: PipelineParams, log=print) -> GateResult:
    """The decision, also written to ``gate.decision_file``; its table logged (every check when it
    passed, the failed ones when not). When ``gate.require_champion`` is set and the champion record
    cannot be read, the decision file says so (not passed, ``error``: nothing can be packaged from it)
    and ``ChampionUnavailable`` is raised."""
    g = params.gate
    summary = json.loads(
        require(params.evaluate.metrics_file, "the evaluation metrics", "evaluate").read_text()
    )
    try:
        champion = read_champion(g.champion_file, required=g.require_champion)
    except ChampionUnavailable as exc:
        _write(
            g.decision_file,
            {"passed": False, "n_failed": 1, "comparisons": [], "champion": None, "error": str(exc)},
        )
        raise
    decision = decide(
        candidate=gate_view(summary, "regionmed"),
        floors=g.floors,
        champion=(champion or {}).get("metrics"),
        champion_margin=g.champion_margin,
        baseline=gate_view(summary, "baseline"),
        must_beat_baseline=g.must_beat_baseline,
    )
    # the metrics the gate judged; package stores them as the champion's, for the next gate
    judged = {
        *g.floors,
        *g.must_beat_baseline,
        *(g.champion_margin if isinstance(g.champion_margin, dict) else ()),
    }
    document = {
        **decision.to_dict(),
        "champion": (champion or {}).get("tag"),
        "candidate_metrics": {k: v for k, v in gate_view(summary, "regionmed").items() if k in judged},
    }
    _write(g.decision_file, document)
    for line in decision.table(only_failed=not decision.passed).splitlines()[1:]:
        log(line)
    result = GateResult(decision)
    if not result.passed:
        raise GateFailed(f"{result.summary_line()}; nothing is packaged (details: {g.decision_file})")
    return result


def _write(path: str, document: dict) -> None:
    atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
