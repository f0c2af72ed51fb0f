"""Fixtures of the serving tests: a tiny model, its params file, a packaged Bento, server processes.

Everything lives under the session's temp folder: the BentoML home, the embedding log, the model.
The service module reads its settings when imported, so it is imported only inside fixtures,
after ``REGIONMED_PARAMS`` and friends are set.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.params import write_params
from helpers.tiny_service import TEST_SERVING, build_tiny, package_tiny


@pytest.fixture(scope="session")
def serving_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "serving"
    root.mkdir(exist_ok=True)
    # the same folder tests/conftest.py gives BENTOML_HOME; set for the session, before bentoml is imported
    os.environ.setdefault("BENTOML_HOME", str(tmp_path_factory.getbasetemp() / "state" / "bentoml_home"))
    return root


@pytest.fixture(scope="session")
def tiny(serving_root) -> dict[str, Path]:
    """corpus/, model/, index/, params.yaml (small limits) and log/ of a tiny untrained model."""
    paths = build_tiny(serving_root / "tiny")
    params = {"serving": {**TEST_SERVING, "embedding_log": {"dir": str(serving_root / "log")}}}
    paths["params"] = write_params(serving_root / "params.yaml", params)
    paths["log"] = serving_root / "log"
    return paths


@pytest.fixture(scope="session")
def service_cls(tiny):
    """The service class, imported with the tiny model and the test params."""
    os.environ["REGIONMED_PARAMS"] = str(tiny["params"])
    os.environ["REGIONMED_MODEL_DIR"] = str(tiny["model"])
    os.environ["REGIONMED_INDEX_DIR"] = str(tiny["index"])
    os.environ.pop("REGIONMED_EMBEDDING_LOG_DIR", None)
    os.environ.pop("REGIONMED_API_KEY", None)
    from regionmed.serving import service

    assert service.SETTINGS.max_texts_per_call == TEST_SERVING["max_texts_per_call"], (
        "service imported too early"
    )
    return service.RegionMedService


@pytest.fixture(scope="session")
def client(service_cls):
    """The service's ASGI app in-process (model loaded once per session: a second app in the same
    process registers BentoML's Prometheus metrics twice and fails to start)."""
    from starlette.testclient import TestClient

    with TestClient(service_cls.to_asgi(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def packaged(serving_root, tiny):
    """``package()`` run once on the tiny model in a scratch project: store model + Bento + champion."""
    return package_tiny(serving_root / "project", tiny)
