"""`dvc repro` at a reduced size with the boxes of 90% of train images hidden: annotate_regions
draws regions from their reports (the ``prior`` localizer), validation accepts them, training reads
them at ``train.annotated_region_weight``, and the evaluation runs on the untouched test split. Then
one self-training round (flows/self_training.py, real Prefect and DVC): the trained model annotates
the hidden images (``self``) and every later stage reruns on its regions."""

from __future__ import annotations

import json
import sys

import pytest
from helpers.pipeline_copy import clean_copy, run
from helpers.reduced_pipeline import REDUCED

from regionmed.corpus.schema import read_manifest
from regionmed.params import load_params


@pytest.mark.slow
def test_dvc_repro_with_90_percent_of_boxes_hidden_annotates_trains_and_evaluates(tmp_path):
    repo = clean_copy(
        tmp_path / "repo",
        {
            **REDUCED,
            "annotate": {"localizer": "prior", "hide_given_fraction": 0.9},
            "train": {**REDUCED["train"], "annotated_region_weight": 0.5},
            # images with no finding and no placeable organ stay without regions after annotation
            "validation": {"thresholds": {**REDUCED["validation"]["thresholds"], "min_region_fraction": 0.5}},
            # the round reruns the stages up to the gate (packaging and monitoring have their own tests)
            "flows": {"retrain": {"exclude_stages": ["package", "monitor_reference", "monitor"]}},
        },
    )
    first = run(["dvc", "repro", "gate"], repo)
    order = [line.split("'")[1] for line in first.stdout.splitlines() if line.startswith("Running stage")]
    assert order.index("build_corpus") < order.index("annotate_regions") < order.index("validate_corpus")

    source, annotated = read_manifest(repo / "data/corpus"), read_manifest(repo / "data/corpus_annotated")
    assert (source["regions"].map(len) > 0).mean() > 0.9  # build_corpus's output keeps every box
    assert all(r["origin"] == "given" for rs in source["regions"] for r in rs)
    origins = [r["origin"] for rs in annotated["regions"] for r in rs]
    # the boxes of 90% of train images were hidden: about as many regions are drawn as stay given (a
    # phrase without location words, or a zone without a side, gets no prior box)
    assert origins.count("annotated") > origins.count("given") / 2 > 0
    # hidden images keep no anatomy box: the prior frames their words with the corpus's mean organs
    assert {r["placed_by"] for rs in annotated["regions"] for r in rs if r["origin"] == "annotated"} == {
        "corpus_anatomy"
    }
    test_before = source[source["split"] == "test"]["regions"].tolist()
    assert annotated[annotated["split"] == "test"]["regions"].tolist() == test_before  # the truth stays

    summary = json.loads((repo / "metrics/annotation.json").read_text())
    assert summary["images_hidden"] > 0 and summary["regions_kept"]["prior"]["total"] == origins.count(
        "annotated"
    )
    assert 0 <= summary["box_quality"]["all"]["pointing"]["value"] <= 1
    assert (repo / "reports/annotation_preview.png").stat().st_size > 1000
    validation = json.loads((repo / "metrics/validation.json").read_text())
    assert validation["success"] is True
    evaluation = json.loads((repo / "metrics/eval.json").read_text())
    assert 0 <= evaluation["regionmed"]["grounding/full/lenient"]["value"] <= 1
    assert "Data and pipelines are up to date" in run(["dvc", "repro", "gate"], repo).stdout

    # one self-training round, as documented (docs/annotation.md): the model trained above annotates
    # the hidden images and the later stages retrain on its regions
    weights = (repo / "models/regionmed/model.safetensors").read_bytes()
    # `make test` exports the Makefile's PREFECT_API_URL (for its flow targets), where no server runs
    # in a test: without it the round starts Prefect's temporary API, as a first run by hand would
    run(
        [sys.executable, "-m", "flows.self_training", "--root", ".", "--params-file", "params.yaml"],
        repo,
        unset=("PREFECT_API_URL",),
    )
    params = load_params(repo / "params.yaml")
    assert params.annotate.localizer == "self"
    assert (repo / params.annotate.self_model_dir / "config.json").is_file()
    summary = json.loads((repo / "metrics/annotation.json").read_text())
    assert summary["localizer"] == "self" and summary["regions_kept"]["self"]["total"] > 0
    self_origins = [
        r["origin"] for rs in read_manifest(repo / "data/corpus_annotated")["regions"] for r in rs
    ]
    assert self_origins.count("given") == origins.count("given") and self_origins.count("annotated") > 0
    assert (repo / "models/regionmed/model.safetensors").read_bytes() != weights  # retrained
    assert json.loads((repo / "metrics/gate.json").read_text())["passed"] is True
    assert "Data and pipelines are up to date" in run(["dvc", "repro", "gate"], repo).stdout
