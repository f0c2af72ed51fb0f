"""One failure policy (regionmed/errors.py): every stage exits 2 with a one-line message naming it when
its input or settings are bad, 1 when a check fails on usable input, never with a traceback."""

from __future__ import annotations

import json

import pytest
from helpers.params import write_params
from typer.testing import CliRunner

from regionmed.cli import app
from regionmed.errors import EXIT_BAD_INPUT, EXIT_BROKE, EXIT_CHECK_FAILED, BadInput, CheckFailed, StageBroke


def invoke(args: list[str]):
    result = CliRunner().invoke(app, args)
    assert "Traceback" not in result.output, result.output
    return result


def missing_inputs(tmp) -> dict:
    """Settings whose every input path is a folder or file that does not exist under ``tmp``."""
    nowhere = str(tmp / "nowhere")
    return {
        "corpus": {"out_dir": nowhere},
        "annotate": {"out_dir": nowhere},
        "evaluate": {
            "candidate": nowhere,
            "baseline": nowhere,
            "metrics_file": str(tmp / "no-eval.json"),
        },
        "gate": {"decision_file": str(tmp / "no-gate.json"), "champion_file": str(tmp / "champion.json")},
        "serving": {"index_dir": nowhere, "model_dir": nowhere, "embedding_log": {"dir": nowhere}},
        "monitor": {"reference_dir": nowhere},
    }


# stage -> (its command, what the message names)
BAD_INPUT = {
    "build_corpus": (["corpus", "build"], "corpus.importer.path"),
    "annotate_regions": (["annotate"], "run the build_corpus stage first"),
    "validate_corpus": (["validate"], "nowhere"),
    "tokenizer": (["train", "tokenizer", "--out", "{tmp}/tok"], "run the annotate_regions stage first"),
    "pretrain_global": (
        [
            "train",
            "phase",
            "global",
            "--tokenizer",
            "{tmp}/tok",
            "--out",
            "{tmp}/m",
            "--metrics",
            "{tmp}/m.json",
        ],
        "run the annotate_regions stage first",
    ),
    "evaluate": (["evaluate"], "run the annotate_regions stage first"),
    "gate": (["gate"], "run the evaluate stage first"),
    "package": (["package", "--no-build"], "run the gate stage first"),
    "monitor_reference": (["monitor-reference"], "run the package stage first"),
    "monitor": (["monitor"], "nowhere"),
}


@pytest.mark.parametrize("stage", sorted(BAD_INPUT))
def test_bad_input_exits_2_with_one_line_naming_the_stage(stage, tmp_path):
    overrides = missing_inputs(tmp_path)
    if stage == "build_corpus":  # an importer without its file
        overrides["corpus"].update(source="jsonl", importer={"path": None})
    params = write_params(tmp_path / "params.yaml", overrides)
    command, words = BAD_INPUT[stage]
    args = [a.format(tmp=tmp_path) for a in command] + ["--params", str(params)]
    result = invoke(args)
    assert result.exit_code == EXIT_BAD_INPUT, result.output
    message = [line for line in result.output.splitlines() if line.startswith(f"{stage}: bad input: ")]
    assert len(message) == 1 and words in message[0], result.output


def test_an_unknown_phase_and_a_bad_params_file_exit_2(tmp_path):
    params = write_params(tmp_path / "params.yaml", missing_inputs(tmp_path))
    phase = ["train", "phase", "warmup", "--tokenizer", "t", "--out", "o", "--metrics", "m.json"]
    result = invoke([*phase, "--params", str(params)])
    assert result.exit_code == EXIT_BAD_INPUT and "params has no phases.warmup" in result.output
    (tmp_path / "bad.yaml").write_text("seed: [unclosed\n")
    result = invoke(["gate", "--params", str(tmp_path / "bad.yaml")])
    assert result.exit_code == EXIT_BAD_INPUT and "gate: bad settings: " in result.output


def test_a_failed_gate_exits_1_and_writes_its_decision(tmp_path):
    eval_file = tmp_path / "eval.json"
    eval_file.write_text(json.dumps({"regionmed": {"hardneg/accuracy": {"value": 0.5}}, "baseline": {}}))
    overrides = missing_inputs(tmp_path)
    overrides["evaluate"]["metrics_file"] = str(eval_file)
    overrides["gate"].update(
        floors={"hardneg/accuracy": 0.9},
        must_beat_baseline=[],
        champion_margin=0.02,
        relative_floors={"above_chance": [], "above_prior": [], "not_below_baseline": []},
    )
    result = invoke(["gate", "--params", str(write_params(tmp_path / "params.yaml", overrides))])
    assert result.exit_code == EXIT_CHECK_FAILED, result.output
    assert "gate: check failed: gate: FAILED (1 of 1 checks failed)" in result.output
    assert "hardneg/accuracy" in result.output  # the failed row of the table
    assert json.loads((tmp_path / "no-gate.json").read_text())["passed"] is False


def test_package_refusing_a_model_the_gate_failed_exits_1(tmp_path):
    overrides = missing_inputs(tmp_path)
    (tmp_path / "no-gate.json").write_text(json.dumps({"passed": False, "n_failed": 2}))
    result = invoke(["package", "--no-build", "--params", str(write_params(tmp_path / "p.yaml", overrides))])
    assert (
        result.exit_code == EXIT_CHECK_FAILED
        and "package: check failed: the gate did not pass" in result.output
    )


def test_a_failed_critical_expectation_exits_1_after_writing_both_outputs(tiny_corpus, tmp_path):
    overrides = {
        "annotate": {"out_dir": str(tiny_corpus)},
        "validation": {
            "metrics_file": str(tmp_path / "v.json"),
            "report_file": str(tmp_path / "v.html"),
            "thresholds": {"min_images": 100_000},
        },
    }
    result = invoke(["validate", "--params", str(write_params(tmp_path / "params.yaml", overrides))])
    assert result.exit_code == EXIT_CHECK_FAILED, result.output
    assert "validate_corpus: check failed: validate_corpus FAILED" in result.output
    assert (
        json.loads((tmp_path / "v.json").read_text())["success"] is False and (tmp_path / "v.html").is_file()
    )


def test_a_bug_is_its_traceback_and_status_3(monkeypatch, tmp_path):
    from regionmed.evaluation import gate_stage

    def broken(*_, **__):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(gate_stage, "run", broken)
    result = CliRunner().invoke(app, ["gate", "--params", str(write_params(tmp_path / "p.yaml"))])
    assert result.exit_code == EXIT_BROKE
    assert "Traceback" in result.output and "gate: broke (the traceback above)" in result.output


def test_the_error_classes_carry_the_policy():
    from regionmed.corpus.records import BuildError
    from regionmed.evaluation.champion import ChampionUnavailable
    from regionmed.params_loader import ParamsError
    from regionmed.serving.package import BentoBuildFailed, GateNotPassed, PackageError

    for error in (BuildError, ParamsError, PackageError):
        assert issubclass(error, BadInput) and error.exit_code == EXIT_BAD_INPUT
    for error in (ChampionUnavailable, GateNotPassed):
        assert issubclass(error, CheckFailed) and error.exit_code == EXIT_CHECK_FAILED
    assert issubclass(BentoBuildFailed, StageBroke) and BentoBuildFailed.exit_code == EXIT_BROKE
