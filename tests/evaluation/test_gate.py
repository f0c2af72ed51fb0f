"""The promotion gate: floors, champion margin, baseline, missing metrics, direction; relative floors
and unmeasured metrics, so the default gate means something on a corpus without finding boxes."""

from __future__ import annotations

import contextlib
import json
import math

import numpy as np
import pytest

from regionmed.evaluation.gate import decide, default_direction, flatten_metrics
from regionmed.evaluation.gate_relative import relative_checks, unmeasured_metrics
from regionmed.evaluation.gate_stage import floors_note


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


def _summary(lenient=(0.80, 0.75, 0.85), chance=0.05, vs_prior_low=0.10, r5_diff=(0.05, -0.01, 0.11)):
    """An evaluation summary (metrics/eval.json's shape) with the entries the relative floors read."""

    def ci(v):
        return {"value": v[0], "low": v[1], "high": v[2], "n": 100} if v else {"value": None, "n": 0}

    return {
        "regionmed": {
            "grounding/full/lenient": ci(lenient),
            "chance/full/lenient": {"value": chance},
            "retrieval/i2t_R@5": ci((0.3, 0.25, 0.35)),
            "retrieval/i2t_median_rank": ci((4.0, 3.0, 5.0)),
        },
        "baseline": {"retrieval/i2t_R@5": ci((0.25, 0.2, 0.3))},
        "difference": {
            "retrieval/i2t_R@5": dict(zip(("value", "low", "high"), r5_diff, strict=True)),
            "retrieval/i2t_median_rank": {"value": 0.5, "low": 0.1, "high": 0.9},
        },
        "vs_prior": {"regionmed/grounding/full/lenient": {"value": 0.2, "low": vs_prior_low, "high": 0.3}},
    }


RELATIVE = {
    "above_chance": ["grounding/full/lenient"],
    "above_prior": ["grounding/full/lenient"],
    "not_below_baseline": ["retrieval/i2t_R@5"],
}


def test_relative_floors_compare_with_chance_the_text_prior_and_the_baseline():
    checks = relative_checks(_summary(), RELATIVE)
    assert [(c.kind, c.passed) for c in checks] == [
        ("above_chance", True),
        ("above_prior", True),
        ("not_below_baseline", True),  # the interval of the difference reaches 0: not worse beyond noise
    ]
    assert [c.value for c in checks] == [0.75, 0.10, 0.11] and [c.threshold for c in checks] == [0.05, 0, 0]
    # an interval down to chance, a text prior not beaten beyond noise, a baseline beaten beyond noise
    worse = relative_checks(
        _summary(lenient=(0.1, 0.05, 0.15), vs_prior_low=-0.02, r5_diff=(-0.1, -0.15, -0.02)), RELATIVE
    )
    assert [c.passed for c in worse] == [False, False, False]
    # lower is better: the difference's low end must reach 0
    rank = relative_checks(_summary(), {"not_below_baseline": ["retrieval/i2t_median_rank"]})
    assert not rank[0].passed and rank[0].value == 0.1
    with pytest.raises(ValueError, match="above_floor"):
        relative_checks(_summary(), {"above_floor": ["x"]})


def test_a_metric_the_test_split_cannot_measure_is_skipped_with_a_note_a_missing_one_fails():
    boxless = _summary(lenient=None)
    checks = relative_checks(boxless, {**RELATIVE, "above_chance": ["grounding/full/lenient", "typo/metric"]})
    by = {(c.kind, c.metric): c for c in checks}
    assert by[("above_chance", "grounding/full/lenient")].passed
    assert "not measured" in by[("above_chance", "grounding/full/lenient")].note
    assert by[("above_prior", "grounding/full/lenient")].passed
    assert not by[("above_chance", "typo/metric")].passed
    names = [
        "grounding/full/lenient",
        "vs_prior/grounding/full/lenient_low",
        "hardneg/accuracy",
        "grounding/x",
    ]
    unmeasured = unmeasured_metrics(boxless, names)
    # listed with no value, or of a family the evaluation wrote nothing of (no hard negatives without
    # boxes); a name missing from a family that is there is a typo: it fails
    assert unmeasured == {"grounding/full/lenient", "vs_prior/grounding/full/lenient_low", "hardneg/accuracy"}
    settings = {
        "champion": {"grounding/full/lenient": 0.85},
        "champion_margin": {"grounding/full/lenient": 0.02},
        "baseline": {},
        "must_beat_baseline": ["grounding/full/lenient"],
        "unmeasured": unmeasured,
    }
    floors = {"grounding/full/lenient": 0.8, "hardneg/accuracy": 0.9}
    d = decide({"retrieval/i2t_R@5": 0.3}, floors, floors_note="set for another corpus", **settings)
    skipped = [(c.metric, c.kind) for c in d.comparisons if c.passed and "not measured" in c.note]
    assert skipped == [("grounding/full/lenient", "champion"), ("grounding/full/lenient", "baseline")]
    assert d.passed  # the floors are another corpus's: reported only
    # floors set for this corpus: it must measure them
    d = decide({"retrieval/i2t_R@5": 0.3}, floors, **settings)
    assert kinds(d, passed=False) == [("grounding/full/lenient", "floor"), ("hardneg/accuracy", "floor")]
    assert {c.note for c in d.failures} == {
        "not measured on this test split, but gate.floors holds it for this corpus"
    }
    # a metric missing without being unmeasured fails as before
    d = decide({"retrieval/i2t_R@5": 0.3}, {"grounding/x": 0.5}, unmeasured=unmeasured)
    assert [c.note for c in d.failures] == ["missing in candidate"]


def test_absolute_floors_of_another_corpus_are_reported_not_enforced():
    note = floors_note(["synthetic"], "jsonl")
    assert "synthetic" in note and "jsonl" in note
    assert floors_note(["synthetic"], "synthetic") is None and floors_note(None, "jsonl") is None
    d = decide({"retrieval/i2t_R@5": 0.05}, {"retrieval/i2t_R@5": 0.15}, floors_note=note)
    assert d.passed and d.comparisons[0].note == note and d.comparisons[0].value == 0.05
    assert not decide({"retrieval/i2t_R@5": 0.05}, {"retrieval/i2t_R@5": 0.15}).passed
    relative = relative_checks(_summary(r5_diff=(-0.1, -0.15, -0.02)), RELATIVE)
    assert not decide({}, {}, relative=relative).passed  # the relative floors judge every corpus


def test_the_default_gate_judges_a_corpus_without_finding_boxes_by_what_it_can_measure(tmp_path):
    from helpers.params import default_params

    from regionmed.evaluation import gate_stage

    summary = _summary()  # the evaluation writes no grounding or hard-negative metric without finding boxes
    for model in ("regionmed", "baseline"):
        summary[model] = {
            m: v for m, v in summary[model].items() if not m.startswith(("grounding/", "chance/"))
        }
    summary["vs_prior"] = {}

    def gate(source: str, r5_diff=(0.05, -0.01, 0.11)) -> dict:
        summary["difference"]["retrieval/i2t_R@5"] = dict(zip(("value", "low", "high"), r5_diff, strict=True))
        (tmp_path / "eval.json").write_text(json.dumps(summary))
        params = default_params(
            {
                "corpus": {"source": source},
                "evaluate": {"metrics_file": str(tmp_path / "eval.json")},
                "gate": {
                    "decision_file": str(tmp_path / "gate.json"),
                    "champion_file": str(tmp_path / "no.json"),
                },
            }
        )
        with contextlib.suppress(gate_stage.GateFailed):  # the decision file is written either way
            gate_stage.run(params, log=lambda *_: None)
        return json.loads((tmp_path / "gate.json").read_text())

    # an imported corpus: grounding and hard negatives skipped by name, the synthetic corpus's floors
    # reported, retrieval judged against the baseline on the same test images
    real = gate("jsonl")
    assert real["passed"], [c for c in real["comparisons"] if not c["passed"]]
    notes = {(c["metric"], c["kind"]): c["note"] for c in real["comparisons"]}
    assert "not measured" in notes[("grounding/full/lenient", "baseline")]
    assert "not measured" in notes[("grounding/locfree/strict", "above_prior")]
    assert "reported, not enforced" in notes[("grounding/full/strict", "floor")]
    assert notes[("retrieval/i2t_R@5", "not_below_baseline")].startswith("paired")
    assert not gate("jsonl", r5_diff=(-0.1, -0.15, -0.02))["passed"]  # worse than the baseline beyond noise
    # the same numbers as a synthetic corpus: its floors hold, and it cannot leave them unmeasured
    synthetic = gate("synthetic")
    failed = {(c["metric"], c["kind"]) for c in synthetic["comparisons"] if not c["passed"]}
    assert failed == {
        ("grounding/full/lenient", "floor"),
        ("grounding/full/strict", "floor"),
        ("grounding/locfree/lenient", "floor"),
        ("hardneg/accuracy", "floor"),
    }


def test_a_champion_from_another_corpus_is_not_compared_with(tmp_path):
    from helpers.params import default_params

    from regionmed.evaluation import gate_stage

    summary = _summary()
    (tmp_path / "eval.json").write_text(json.dumps(summary))
    champion = {"tag": "regionmed:old", "bento": None, "metrics": {"retrieval/i2t_R@5": 0.9}}

    def gate(source: str, **record) -> dict:
        (tmp_path / "champion.json").write_text(json.dumps({**champion, **record}))
        params = default_params(
            {
                "corpus": {"source": source, "importer": {"path": "data/cxr/records.jsonl"}},
                "evaluate": {"metrics_file": str(tmp_path / "eval.json")},
                "gate": {
                    "decision_file": str(tmp_path / "gate.json"),
                    "champion_file": str(tmp_path / "champion.json"),
                    "floors": {},
                    "must_beat_baseline": [],
                    "champion_margin": {"retrieval/i2t_R@5": 0.03},
                    "relative_floors": {"above_chance": [], "above_prior": [], "not_below_baseline": []},
                },
            }
        )
        with contextlib.suppress(gate_stage.GateFailed):
            gate_stage.run(params, log=lambda *_: None)
        return json.loads((tmp_path / "gate.json").read_text())

    synthetic = {"source": "synthetic", "data": None}
    other = gate("jsonl", corpus=synthetic)  # the shipped champion, a candidate of the user's own data
    assert other["passed"] and other["corpus"] == {"source": "jsonl", "data": "data/cxr/records.jsonl"}
    (row,) = other["comparisons"]
    assert row["kind"] == "champion" and "was measured on" in row["note"] and "not compared" in row["note"]
    same = gate("synthetic", corpus=synthetic)  # the same corpus: R@5 0.3 is far below the champion's 0.9
    assert not same["passed"] and [c["metric"] for c in same["comparisons"] if not c["passed"]] == [
        "retrieval/i2t_R@5"
    ]
    assert not gate("jsonl")["passed"]  # a record from before champions carried their corpus: compared
