"""The ``gate`` stage: a thin wrapper around :func:`regionmed.evaluation.gate.decide`.

The champion is whatever ``package`` recorded last (``gate.champion_file``, committed with the
repository: regionmed/evaluation/champion.py); with no champion only the floors and the baseline
checks apply, unless ``gate.require_champion`` makes a missing record an error.
"""

from __future__ import annotations

import json
from pathlib import Path

from regionmed.evaluation.champion import ChampionUnavailable, read_champion
from regionmed.evaluation.gate import GateDecision, decide
from regionmed.evaluation.summary import gate_view
from regionmed.params_pipeline import PipelineParams


def run_gate(params: PipelineParams) -> GateDecision:
    """The decision, also written to ``gate.decision_file``. When ``gate.require_champion`` is set and the
    champion record cannot be read, the decision file says so (not passed, ``error``: nothing can be
    packaged from it) and ``ChampionUnavailable`` is raised."""
    g = params.gate
    summary = json.loads(Path(params.evaluate.metrics_file).read_text())
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
    return decision


def _write(path: str, document: dict) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
