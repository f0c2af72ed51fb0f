"""The annotate_regions stage on a Dask cluster: a LocalCluster of two worker processes writes the
annotated corpus the stage's own process writes, byte for byte, with the reports read and the ``self``
localizer's boxes placed in many tasks; and without any cluster, as before it existed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.params import default_params, tiny_model_config, with_updates
from helpers.tiny_service import TINY_MODEL

from regionmed.annotation import on_cluster, stage
from regionmed.annotation.annotate import annotate_corpus
from regionmed.corpus.schema import MANIFEST_FILE, read_manifest


@pytest.fixture(scope="module")
def annotator_model(tiny_corpus, tmp_path_factory) -> Path:
    """An exported (untrained) RegionMed model: its heatmaps are arbitrary, but a function of its weights."""
    import torch

    from regionmed.model.io import export_model
    from regionmed.model.regionclip import RegionCLIP
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.texts import corpus_texts

    folder = tmp_path_factory.mktemp("annotator") / "model"
    tokenizer = train_wordpiece_tokenizer(corpus_texts(tiny_corpus), 300)
    config = tiny_model_config(**TINY_MODEL)
    torch.manual_seed(0)
    export_model(RegionCLIP(config, vocab_size=len(tokenizer)), tokenizer, config, folder, {"phase": "test"})
    return folder


def _params(tmp: Path, corpus: Path, model: Path):
    return default_params(
        {
            "corpus": {"image_size": 64, "out_dir": str(corpus)},
            "annotate": {
                "localizer": "self",
                "self_model_dir": str(model),
                "hide_given_fraction": 0.6,  # train images without regions: findings and organs to place
                "batch_size": 8,
                "out_dir": str(tmp / "annotated"),
                "summary_file": str(tmp / "annotation.json"),
                "preview_file": str(tmp / "preview.png"),
            },
        }
    )


def _without_times(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("seconds", "seconds_total")}


def test_two_worker_processes_annotate_as_the_stage_process_does(
    tiny_corpus, annotator_model, tmp_path, monkeypatch, extractor
):
    # small tasks, so that both workers get several and results come back out of order
    monkeypatch.setattr(on_cluster, "REPORTS_PER_TASK", 25)
    monkeypatch.setattr(on_cluster, "QUERIES_PER_TASK", 20)  # two batches of 8 per task
    base = _params(tmp_path / "in_process", tiny_corpus, annotator_model)
    assert base.cluster.workers == 1 and base.cluster.address is None  # the default: in process

    # no cluster at all: the extractor and the localizer called in this process, as before the cluster
    plain = tmp_path / "plain"
    annotate_corpus(
        tiny_corpus, plain, base.annotate, base.seed, stage.make_localizer(base, tiny_corpus), extractor
    )
    in_process = stage.run(base, log=lambda *_: None).summary
    two = with_updates(
        _params(tmp_path / "two_workers", tiny_corpus, annotator_model), {"cluster": {"workers": 2}}
    )
    on_two = stage.run(two, log=lambda *_: None).summary

    manifests = [
        (folder / MANIFEST_FILE).read_bytes()
        for folder in (plain, Path(base.annotate.out_dir), Path(two.annotate.out_dir))
    ]
    assert manifests[1] == manifests[0] and manifests[2] == manifests[0]
    assert _without_times(on_two) == _without_times(in_process)
    written = json.loads(Path(two.annotate.summary_file).read_text())
    assert _without_times(written) == _without_times(in_process)
    # not an empty run: reports read in several tasks, boxes placed by the model, organs checked
    assert in_process["images_considered"] > 2 * on_cluster.REPORTS_PER_TASK
    annotated = [r for rs in read_manifest(two.annotate.out_dir)["regions"] for r in rs]
    placed = [r for r in annotated if r["origin"] == "annotated" and r["placed_by"] == "heatmap"]
    assert len(placed) > 3 * on_cluster.QUERIES_PER_TASK


def test_a_worker_builds_once_per_vocabulary_or_model_and_again_when_it_changes(monkeypatch):
    monkeypatch.setattr(on_cluster, "_held", {})
    builds = []

    def build(name):
        builds.append(name)
        return object()

    first = on_cluster._worker_cached("mentions", "token-a", lambda: build("a"))
    assert on_cluster._worker_cached("mentions", "token-a", lambda: build("a")) is first
    assert builds == ["a"]
    changed = on_cluster._worker_cached("mentions", "token-b", lambda: build("b"))
    assert changed is not first and builds == ["a", "b"]
    assert on_cluster._worker_cached("self", "token-a", lambda: build("model")) is not changed
    assert builds == ["a", "b", "model"]


def test_the_model_token_follows_the_folder_s_files(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"one")
    before = on_cluster._file_token({"model_dir": str(tmp_path)}, files=[weights])
    assert on_cluster._file_token({"model_dir": str(tmp_path)}, files=[weights]) == before
    weights.write_bytes(b"other weights")
    assert on_cluster._file_token({"model_dir": str(tmp_path)}, files=[weights]) != before
