"""The stage around validate_corpus: the CLI's exit code and outputs, and `dvc repro` stopping on a bad
corpus."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from helpers.pipeline_copy import clean_copy, run
from helpers.validation_corpus import SMALL

from regionmed.params import deep_merge

REPO = Path(__file__).resolve().parents[2]
STUB_OUT = "stub_training_output"
# A stand-in for training: it consumes the corpus only after validate_corpus has written its result.
STUB_STAGE = {
    "cmd": f"{sys.executable} -c \"import pathlib; p = pathlib.Path('{STUB_OUT}'); p.mkdir(); "
    "(p / 'model.txt').write_text('trained')\"",
    "deps": ["data/corpus", "metrics/validation.json"],
    "outs": [STUB_OUT],
}


def _params_file(path: Path, overrides: dict) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    path.write_text(yaml.safe_dump(deep_merge(deep_merge(params, SMALL), overrides), sort_keys=False))
    return path


def test_cli_exits_nonzero_names_the_failure_and_writes_both_outputs(broken_copy, tmp_path):
    def edit(df, _):
        leaked = df.loc[df["split"] == "train", "patient_id"].iloc[0]
        df.loc[df.index[df["split"] == "test"][0], "patient_id"] = leaked
        return df

    corpus = broken_copy(edit)
    params = _params_file(tmp_path / "params.yaml", {})
    out = tmp_path / "out"
    proc = run(
        [
            sys.executable,
            "-m",
            "regionmed",
            "validate",
            "--params",
            str(params),
            "--corpus",
            str(corpus),
            "--metrics",
            str(out / "v.json"),
            "--report",
            str(out / "v.html"),
        ],
        REPO,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert "FAILED" in proc.stderr and "corpus_patients.patient_single_split[n_splits]" in proc.stderr
    assert len(proc.stderr.splitlines()) <= 6  # a short summary, not a dump
    result = json.loads((out / "v.json").read_text())
    assert result["success"] is False and result["failed_critical"] == [
        "corpus_patients.patient_single_split[n_splits]"
    ]
    page = (out / "v.html").read_text()
    assert "FAILED" in page and "patient_single_split" in page and "test,train" in page
    assert "<script" not in page and "http" not in page  # static and offline


def test_cli_passes_on_a_good_corpus_and_its_metrics_are_deterministic(good_corpus, tmp_path):
    """Training stages depend on the metrics file: an unchanged corpus must give the same bytes."""
    from regionmed.validation import validate_corpus
    from regionmed.validation.report import write_outputs

    params = _params_file(tmp_path / "params.yaml", {})
    proc = run(
        [
            sys.executable,
            "-m",
            "regionmed",
            "validate",
            "--params",
            str(params),
            "--corpus",
            str(good_corpus),
            "--metrics",
            str(tmp_path / "v.json"),
            "--report",
            str(tmp_path / "v.html"),
            "--timings",
            str(tmp_path / "t.json"),
        ],
        REPO,
    )
    assert "validate_corpus passed" in proc.stderr
    assert json.loads((tmp_path / "v.json").read_text())["success"] is True
    assert json.loads((tmp_path / "t.json").read_text())["elapsed_s"] > 0
    from regionmed.params import load_params

    again = validate_corpus(good_corpus, load_params(params))
    write_outputs(again, tmp_path / "v2.json", tmp_path / "v2.html")
    assert (tmp_path / "v2.json").read_bytes() == (tmp_path / "v.json").read_bytes()


def test_every_stage_that_reads_the_corpus_waits_for_validation():
    """Training must depend on validate_corpus's result, or `dvc repro` could train before it runs."""
    from helpers.stage_closure import resolved_stages

    stages = resolved_stages()
    validate = stages["validate_corpus"]
    assert "data/corpus_annotated" in validate["deps"] and validate["metrics"] == ["metrics/validation.json"]

    def gated(name: str, seen=()) -> bool:
        deps = stages[name]["deps"]
        if "metrics/validation.json" in deps or name == "validate_corpus":
            return True
        producers = [
            other
            for other, st in stages.items()
            if other not in seen and other != name and any(o in deps for o in st["outs"])
        ]
        return any(
            gated(p, (*seen, name)) for p in producers if p not in ("build_corpus", "annotate_regions")
        )

    # the annotation step comes before validation, which checks what it drew: annotate_regions and the
    # annotator it places with (train_annotator's model is no output of the pipeline, only of that step)
    annotation = ("train_annotator", "annotate_regions")
    readers = [
        n
        for n, st in stages.items()
        if n not in ("build_corpus", *annotation, "validate_corpus")
        and any(d.startswith("data/corpus") for d in st["deps"])
    ]
    assert [n for n in readers if not gated(n)] == []
    annotator_readers = [n for n, st in stages.items() if "models/annotator" in st["deps"]]
    assert annotator_readers == ["annotate_regions"]


def test_dvc_repro_stops_at_validate_corpus_and_trains_nothing(tmp_path):
    # A split that leaves ~3 test images: the build succeeds, but labels are missing from test.
    bad = deep_merge(SMALL, {"corpus": {"split": {"train": 0.97, "val": 0.02, "test": 0.01}}})
    repo = clean_copy(tmp_path / "repo", bad)
    dvc_yaml = yaml.safe_load((repo / "dvc.yaml").read_text())
    dvc_yaml["stages"]["stub_train"] = STUB_STAGE
    (repo / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))

    proc = run(["dvc", "repro", "stub_train"], repo, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "validate_corpus" in output and "corpus_label_coverage.label_coverage[n_images]" in output
    assert not (repo / STUB_OUT).exists()
    # nothing trained: models/ holds only train_annotator's record that this corpus needs no annotator
    assert sorted(str(f.relative_to(repo)) for f in (repo / "models").rglob("*") if f.is_file()) == [
        "models/annotator/annotator.json"
    ]
    assert json.loads((repo / "models/annotator/annotator.json").read_text())["trained"] is False
    assert json.loads((repo / "metrics/validation.json").read_text())["success"] is False
    assert (repo / "reports/validation.html").is_file()  # left in the workspace to read (not cached)

    # The same pipeline with the configured split passes the gate and reaches "training".
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["corpus"]["split"] = {"train": 0.8, "val": 0.1, "test": 0.1}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro", "stub_train"], repo)
    assert (repo / STUB_OUT / "model.txt").is_file()
    shown = run(["dvc", "metrics", "show", "--json"], repo).stdout
    assert '"n_failed_critical": 0' in shown.replace(" ", "").replace('":0', '": 0')
