"""What a training run's fingerprint covers: a checkpoint is resumed only by the same run."""

from __future__ import annotations

import copy

import pytest
from helpers.params import default_params

from regionmed.corpus.schema import MANIFEST_FILE
from regionmed.model.io import WEIGHTS_FILE
from regionmed.training.train import run_fingerprint

PHASES = {
    "global": {"steps": 10, "lr": 0.001, "global_only": True, "loss_weights": {"global": 1.0}},
    "region": {"steps": 20, "lr": 0.0005, "freeze_image_layers": 2, "loss_weights": {"region": 1.0}},
    "joint": {"steps": 30, "lr": 0.0003, "loss_weights": {"global": 1.0, "region": 2.0}},
    "baseline": {"steps": None, "lr": 0.0005, "global_only": True, "loss_weights": {"global": 1.0}},
}


@pytest.fixture
def run(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / MANIFEST_FILE).write_bytes(b"manifest v1")
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "tokenizer.json").write_text('{"vocab": 1}')
    (tmp_path / "init").mkdir()
    (tmp_path / "init" / WEIGHTS_FILE).write_bytes(b"weights v1")

    def fingerprint(phase="region", **changes):
        raw = {"phases": copy.deepcopy(PHASES)}
        for dotted, value in changes.items():
            *path, key = dotted.split("__")
            node = raw
            for part in path:
                node = node.setdefault(part, {})
            node[key] = value
        return run_fingerprint(
            default_params(raw), phase, tmp_path / "corpus", tmp_path / "tokenizer", tmp_path / "init"
        )

    return fingerprint, tmp_path


@pytest.mark.parametrize(
    "change",
    [
        {"phases__region__lr": 0.001},
        {"phases__region__loss_weights": {"region": 1.0, "grounding": 1.0}},
        {"phases__region__freeze_image_layers": 0},
        {"phases__region__steps": 21},
        {"seed": 1},
        {"train__batch_size": 16},
        {"model__embed_dim": 64},
    ],
)
def test_what_defines_the_run_changes_the_fingerprint(run, change):
    fingerprint, _ = run
    assert fingerprint(**change) != fingerprint()


def test_other_phases_and_stages_params_leave_it_alone(run):
    fingerprint, _ = run
    assert fingerprint(phases__joint__lr=0.01) == fingerprint()
    assert fingerprint(evaluate__n_boot=50, gate__floors={"x": 1.0}) == fingerprint()
    # the corpus counts as built (its manifest), however it was built
    assert fingerprint(cluster__workers=4, corpus__shard_size=7) == fingerprint()


def test_the_baselines_budget_follows_the_progressive_phases(run):
    fingerprint, _ = run
    assert fingerprint("baseline", phases__joint__steps=31) != fingerprint("baseline")


@pytest.mark.parametrize(
    "path", ["corpus/" + MANIFEST_FILE, "tokenizer/tokenizer.json", "init/" + WEIGHTS_FILE]
)
def test_the_corpus_manifest_tokenizer_and_warm_start_weights_are_in_it(run, path):
    fingerprint, root = run
    before = fingerprint()
    (root / path).write_bytes(b"changed")
    assert fingerprint() != before
