"""The ``gate`` stage: a thin wrapper around :func:`regionmed.evaluation.gate.decide`.

Reads ``evaluate.metrics_file`` and the champion record, writes the decision (``gate.decision_file``)
and returns it, or raises :class:`GateFailed` (a failed check, exit status 1) once it is written.

The absolute floors (``gate.floors``) hold on the corpus sources they were set for
(``gate.floors_sources``); the relative floors (``gate.relative_floors``) on every corpus. A metric the
test split cannot measure (no finding boxes) is skipped with a note in every check. The decision
records the corpus it judged (source and import path); a champion measured on another corpus is not
compared with (a record from before champions carried their corpus is).

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
from regionmed.evaluation.gate import Comparison, GateDecision, decide
from regionmed.evaluation.gate_relative import relative_checks, unmeasured_metrics
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
    relative = g.relative_floors.model_dump()
    corpus = corpus_identity(params)
    other_corpus = champion is not None and champion.get("corpus", corpus) != corpus
    decision = decide(
        candidate=gate_view(summary, "regionmed"),
        floors=g.floors,
        champion=None if other_corpus else (champion or {}).get("metrics"),
        champion_margin=g.champion_margin,
        baseline=gate_view(summary, "baseline"),
        must_beat_baseline=g.must_beat_baseline,
        unmeasured=unmeasured_metrics(summary, _checked(g), "regionmed"),
        floors_note=floors_note(g.floors_sources, params.corpus.source),
        relative=relative_checks(summary, relative, "regionmed"),
    )
    # the metrics the gate judged; package stores them as the champion's, for the next gate
    judged = {
        *g.floors,
        *g.must_beat_baseline,
        *(g.champion_margin if isinstance(g.champion_margin, dict) else ()),
        *(m for metrics in relative.values() for m in metrics),
    }
    if other_corpus:  # another corpus's test split: its numbers say nothing of this one's
        decision.comparisons.append(
            Comparison(
                "-",
                "champion",
                None,
                None,
                True,
                note=f"champion {champion.get('tag')} was measured on {champion['corpus']}: not compared",
            )
        )
    document = {
        **decision.to_dict(),
        "champion": (champion or {}).get("tag"),
        "corpus": corpus,
        "candidate_metrics": {k: v for k, v in gate_view(summary, "regionmed").items() if k in judged},
    }
    _write(g.decision_file, document)
    for line in decision.table(only_failed=not decision.passed).splitlines()[1:]:
        log(line)
    result = GateResult(decision)
    if not result.passed:
        raise GateFailed(f"{result.summary_line()}; nothing is packaged (details: {g.decision_file})")
    return result


def _checked(g) -> set[str]:
    """Every metric a floor, the champion or the baseline check names."""
    margins = g.champion_margin if isinstance(g.champion_margin, dict) else {}
    return {*g.floors, *g.must_beat_baseline, *margins}


def corpus_identity(params: PipelineParams) -> dict[str, str | None]:
    """The corpus a decision's metrics were measured on: its source and, for an import, the data path."""
    c = params.corpus
    return {"source": c.source, "data": None if c.source == "synthetic" else c.importer.path}


def floors_note(sources: list[str] | None, source: str) -> str | None:
    """Why the absolute floors are not enforced on this corpus (None: they are)."""
    if sources is None or source in sources:
        return None
    return (
        f"gate.floors are set for {'/'.join(sources)} corpora, this one is {source}: reported, not "
        "enforced (the relative floors judge it)"
    )


def _write(path: str, document: dict) -> None:
    atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
