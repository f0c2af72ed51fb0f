"""The promotion gate: floors, champion margin, baseline, missing metrics, direction."""

from __future__ import annotations

import json
import math

import numpy as np

from regionmed.evaluation.gate import decide, default_direction, flatten_metrics


def kinds(decision, passed=None):
    return [(c.metric, c.kind) for c in decision.comparisons if passed is None or c.passed == passed]


def test_floors_only_without_champion():
    d = decide({"auroc": 0.8, "recall@1": 0.2}, floors={"auroc": 0.75, "recall@1": 0.3})
    assert not d.passed
    assert kinds(d, passed=False) == [("recall@1", "floor")]
    assert kinds(d) == [("auroc", "floor"), ("recall@1", "floor")]  # nothing else applies
    assert decide({"auroc": 0.75}, floors={"auroc": 0.75}).passed  # the floor itself passes


def test_champion_margin_float_and_dict():
    floors = {"auroc": 0.5, "recall@1": 0.0}
    champ = {"auroc": 0.80, "recall@1": 0.30}
    # 0.02 tolerance: 0.79 is within, 0.27 is not
    d = decide({"auroc": 0.79, "recall@1": 0.27}, floors, champion=champ, champion_margin=0.02)
    assert kinds(d, passed=False) == [("recall@1", "champion")]
    thr = {c.metric: c.threshold for c in d.comparisons if c.kind == "champion"}
    assert math.isclose(thr["auroc"], 0.78) and math.isclose(thr["recall@1"], 0.28)
    # dict margin: only its keys; a negative margin demands an improvement
    d = decide({"auroc": 0.805, "recall@1": 0.1}, floors, champion=champ, champion_margin={"auroc": -0.01})
    assert kinds(d, passed=False) == [("auroc", "champion")]
    assert ("recall@1", "champion") not in kinds(d)
    assert decide(
        {"auroc": 0.81, "recall@1": 0.1}, floors, champion=champ, champion_margin={"auroc": -0.01}
    ).passed


def test_champion_without_the_metric_is_noted_not_failed():
    d = decide(
        {"auroc": 0.9, "new_metric": 0.5},
        {"auroc": 0.5, "new_metric": 0.1},
        champion={"auroc": 0.8},
        champion_margin=0.0,
    )
    assert d.passed
    note = next(c.note for c in d.comparisons if c.metric == "new_metric" and c.kind == "champion")
    assert "champion has no value" in note


def test_baseline_must_be_strictly_beaten():
    base = {"pointing": 0.40, "auroc": 0.70}
    d = decide({"pointing": 0.40, "auroc": 0.71}, {}, baseline=base, must_beat_baseline=["pointing", "auroc"])
    assert kinds(d, passed=False) == [("pointing", "baseline")]  # a tie does not beat the baseline
    d = decide({"pointing": 0.5}, {}, baseline={}, must_beat_baseline=["pointing"])
    assert not d.passed and d.failures[0].note == "baseline value missing"
    d = decide({"pointing": 0.5}, {}, baseline=None, must_beat_baseline=["pointing"])
    assert not d.passed


def test_missing_or_nan_metric_fails_without_keyerror():
    d = decide(
        {"auroc": float("nan")},
        {"auroc": 0.5, "recall@1": 0.1},
        champion={"recall@1": 0.2},
        champion_margin=0.0,
        baseline={"recall@1": 0.1},
        must_beat_baseline=["recall@1"],
    )
    assert not d.passed
    fails = {(c.metric, c.kind): c.note for c in d.failures}
    assert fails[("recall@1", "floor")] == "missing in candidate"
    assert fails[("recall@1", "champion")] == "missing in candidate"
    assert fails[("recall@1", "baseline")] == "missing in candidate"
    assert fails[("auroc", "floor")] == "candidate value is NaN/None"
    assert "missing in candidate" in d.table()


def test_direction_lower_is_better():
    assert default_direction("i2t/median_rank") == "lower" and default_direction("i2t/recall@1") == "higher"
    # floor of a lower-is-better metric is a ceiling; champion margin allows champion + margin
    d = decide(
        {"i2t/median_rank": 4.0},
        {"i2t/median_rank": 5.0},
        champion={"i2t/median_rank": 3.0},
        champion_margin=0.5,
    )
    assert kinds(d, passed=False) == [("i2t/median_rank", "champion")]
    assert [c.threshold for c in d.comparisons] == [5.0, 3.5]
    d = decide(
        {"latency": 2.0},
        {},
        baseline={"latency": 3.0},
        must_beat_baseline=["latency"],
        directions={"latency": "lower"},
    )
    assert d.passed
    # an explicit direction overrides the name rule
    assert not decide({"rank": 4.0}, {"rank": 5.0}, directions={"rank": "higher"}).passed


def test_decision_serialises_and_tables():
    d = decide({"a": 0.1, "b": 0.9}, {"a": 0.5, "b": 0.5})
    blob = json.loads(json.dumps(d.to_dict()))
    assert blob["passed"] is False and blob["n_failed"] == 1 and len(blob["comparisons"]) == 2
    text = d.table()
    assert text.splitlines()[0].startswith("gate: FAILED (1 of 2")
    assert "a" in text and "NO" in text and "\nb " not in text  # only failures by default
    assert "b" in d.table(only_failed=False)
    assert decide({"a": 1.0}, {"a": 0.5}).table() == "gate: PASSED (0 of 1 checks failed)"


def test_flatten_metrics_keeps_numbers_only():
    nested = {
        "zs": {
            "auroc": {"nodule": 0.9, "mass": np.float64(0.8)},
            "skipped": ["x"],
            "n": 3,
            "mode": "argmax",
            "arr": np.zeros(3),
        },
        "ok": True,
    }
    assert flatten_metrics(nested) == {"zs/auroc/nodule": 0.9, "zs/auroc/mass": 0.8, "zs/n": 3.0, "ok": 1.0}
