"""The ``gate`` stage: a thin wrapper around :func:`regionmed.evaluation.gate.decide`.

The champion is whatever ``package`` recorded last (``gate.champion_file``: its metrics); with
no champion only the floors and the baseline checks apply.
"""

from __future__ import annotations

import json
from pathlib import Path

from regionmed.evaluation.gate import GateDecision, decide
from regionmed.evaluation.summary import gate_view
from regionmed.params import Params


def read_champion(path: str | Path) -> dict | None:
    p = Path(path)
    if not p.exists():
        return None
    return json.loads(p.read_text())


def run_gate(params: Params) -> GateDecision:
    g = params.gate
    summary = json.loads(Path(params.evaluate.metrics_file).read_text())
    champion = read_champion(g.champion_file)
    decision = decide(candidate=gate_view(summary, "regionmed"), floors=g.floors,
                      champion=(champion or {}).get("metrics"), champion_margin=g.champion_margin,
                      baseline=gate_view(summary, "baseline"), must_beat_baseline=g.must_beat_baseline)
    out = Path(g.decision_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the metrics the gate judged; package stores them as the champion's, for the next gate
    judged = {*g.floors, *g.must_beat_baseline, *(g.champion_margin if isinstance(g.champion_margin, dict) else ())}
    document = {**decision.to_dict(), "champion": (champion or {}).get("tag"),
                "candidate_metrics": {k: v for k, v in gate_view(summary, "regionmed").items() if k in judged}}
    out.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return decision
