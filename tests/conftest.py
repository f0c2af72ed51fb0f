"""Shared fixtures: quiet, offline, project-local state for every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from regionmed.env import configure_environment

configure_environment()
REPO_ROOT = Path(__file__).resolve().parents[1]
MEDPIX_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "medpix2-sample"


@pytest.fixture(scope="session")
def tiny_params():
    """Params for a small synthetic corpus (fast, still every modality and finding)."""
    from helpers.params import default_params

    return default_params({"corpus": {"image_size": 64, "synthetic": {"n_images": 240}}})


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory, tiny_params):
    from regionmed.corpus.build import build_corpus

    out = tmp_path_factory.mktemp("corpus") / "corpus"
    build_corpus(tiny_params, out, progress=False)
    return out


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory, monkeypatch):
    state = tmp_path_factory.getbasetemp() / "state"
    for var in ("PREFECT_HOME", "BENTOML_HOME", "HF_HOME", "TORCHINDUCTOR_CACHE_DIR", "DVC_SITE_CACHE_DIR"):
        if var not in os.environ:
            monkeypatch.setenv(var, str(state / var.lower()))
