"""The train_annotator stage and ``annotate.localizer: auto``: nothing trained, nothing placed where every
finding the reports name is boxed (the synthetic default); an annotator trained on the boxed images
places the rest where they are not; a corpus with too few boxes gets a record saying so."""

from __future__ import annotations

import json
from pathlib import Path

from helpers.params import default_params
from helpers.reduced_pipeline import REDUCED

from regionmed.annotation import annotator_stage, stage
from regionmed.annotation.annotator import ANNOTATOR_RECORD
from regionmed.corpus.schema import read_manifest


def _params(tmp: Path, corpus: Path, **annotate):
    return default_params(
        {
            "corpus": {"image_size": 64, "out_dir": str(corpus)},
            "model": REDUCED["model"],
            "train": {**REDUCED["train"], "batch_size": 8},
            "phases": {"global": {"steps": 2}, "region": {"steps": 2}, "joint": {"steps": 2}},
            "annotate": {
                "localizer": "auto",
                "out_dir": str(tmp / "annotated"),
                "summary_file": str(tmp / "annotation.json"),
                "preview_file": str(tmp / "preview.png"),
                "annotator_dir": str(tmp / "annotator"),
                **annotate,
            },
        }
    )


def test_a_corpus_whose_findings_are_boxed_trains_nothing_and_places_nothing(tiny_corpus, tmp_path):
    params = _params(tmp_path, tiny_corpus)
    result = annotator_stage.run(params, tmp_path / "scratch", log=lambda *_: None)
    assert not result.plan.train and "every finding the reports name is boxed" in result.plan.reason
    assert [p.name for p in (tmp_path / "annotator").iterdir()] == [ANNOTATOR_RECORD]
    record = json.loads((tmp_path / "annotator" / ANNOTATOR_RECORD).read_text())
    assert record["trained"] is False and record["images_to_place"] == 0
    summary = stage.run(params, log=lambda *_: None).summary
    assert summary["resolved"] == "none" and summary["note"] == record["reason"]
    assert (
        read_manifest(params.annotate.out_dir)["regions"].tolist()
        == read_manifest(tiny_corpus)["regions"].tolist()
    )


def test_too_few_boxed_images_is_said_and_nothing_is_placed(tiny_corpus, tmp_path):
    params = _params(tmp_path, tiny_corpus, hide_given_fraction=0.9, annotator_min_boxed=10_000)
    result = annotator_stage.run(params, tmp_path / "scratch", log=lambda *_: None)
    plan = result.plan
    assert not plan.train and plan.images_to_place > 0 and 0 < plan.boxed_train_images < 10_000
    assert "annotate.annotator_min_boxed 10000" in plan.reason
    summary = stage.run(params, log=lambda *_: None).summary
    assert summary["resolved"] == "none" and summary["regions_kept"]["none"]["total"] == 0
    assert summary["images_to_place"] == plan.images_to_place  # the stage and the plan agree


def test_an_annotator_trained_on_the_boxed_images_places_the_rest(tiny_corpus, tmp_path):
    params = _params(tmp_path, tiny_corpus, hide_given_fraction=0.9, annotator_min_boxed=5)
    logged = []
    result = annotator_stage.run(params, tmp_path / "scratch", log=logged.append)
    assert result.plan.train and (tmp_path / "annotator" / "config.json").is_file()
    assert [line for line in logged if "phase" in line] == [
        f"train_annotator: phase {p}" for p in ("global", "region", "joint")
    ]
    assert not (tmp_path / "scratch").exists()  # round one's corpus and models are gone
    record = json.loads((tmp_path / "annotator" / ANNOTATOR_RECORD).read_text())
    assert record["trained"] is True and set(record["phases"]) == {"global", "region", "joint"}
    summary = stage.run(params, log=lambda *_: None).summary
    assert summary["resolved"] == "self" and "annotator" in summary["note"]
    placed = summary["regions_kept"]["self"]
    assert placed["total"] > 0 and set(placed["by_placement"]) <= {"heatmap", "annotator_anatomy"}
    assert summary["box_quality"]["all"]["recall"]["value"] > 0  # scored against the hidden boxes
