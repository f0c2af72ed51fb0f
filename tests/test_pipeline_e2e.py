"""The README's main command (`dvc repro`) from a clean copy of the repository, at a reduced size."""

from __future__ import annotations

import json

import pytest

from pipeline_copy import clean_copy, run
from regionmed.corpus.schema import read_manifest

REDUCED = {"corpus": {"image_size": 64, "synthetic": {"n_images": 200}}}


@pytest.mark.slow
def test_dvc_repro_from_a_clean_copy_builds_everything_and_a_rerun_is_a_no_op(tmp_path):
    repo = clean_copy(tmp_path / "repo", REDUCED)
    first = run(["dvc", "repro"], repo)
    assert "build_corpus" in first.stdout
    summary = json.loads((repo / "data/corpus/build.json").read_text())
    assert summary["n_kept"] == 200 and summary["n_rejected"] == 0
    assert len(read_manifest(repo / "data/corpus")) == 200
    second = run(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date" in second.stdout
    status = run(["dvc", "status"], repo)
    assert "up to date" in status.stdout
