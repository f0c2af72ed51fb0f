"""The real thing: `bentoml serve` from the repo and the built Bento, on free loopback ports.

Every API over HTTP (httpx and BentoML's Python client), every kind of bad input → its 4xx, the
API key, the loopback bind; each server is started by a fixture and stopped (SIGTERM to its own
process group) when the module is done.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers.api_calls import TIMEOUT, call_every_api, check_answers, check_bad_requests
from helpers.servers import REPO_ROOT, Server, server_env
from helpers.tiny_service import TEST_SERVING, dicom_bytes

KEY = "integration-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def repo_server(tiny, serving_root):
    import os

    env = server_env(
        REGIONMED_PARAMS=str(tiny["params"]),
        REGIONMED_MODEL_DIR=str(tiny["model"]),
        REGIONMED_INDEX_DIR=str(tiny["index"]),
        REGIONMED_API_KEY=KEY,
        REGIONMED_EMBEDDING_LOG_DIR=str(serving_root / "log-repo"),
        BENTOML_HOME=os.environ["BENTOML_HOME"],
    )
    server = Server(
        ["regionmed.serving.service:RegionMedService"], env, REPO_ROOT, serving_root / "repo-server.log"
    )
    try:
        server.startup_s = server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def bento_server(packaged, serving_root):
    import os

    env = server_env(
        BENTOML_HOME=os.environ["BENTOML_HOME"], REGIONMED_EMBEDDING_LOG_DIR=str(serving_root / "log-bento")
    )
    server = Server([packaged["record"]["bento_tag"]], env, serving_root, serving_root / "bento-server.log")
    try:
        server.startup_s = server.wait_ready()
        yield server
    finally:
        server.stop()


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.rsplit(":", 1)
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def test_repo_server_binds_loopback_only_by_default(repo_server):
    addresses = listening_addresses(repo_server.port)
    assert addresses == {"0100007F"}, addresses  # 127.0.0.1, and neither 0.0.0.0 nor ::


def test_repo_server_answers_every_api(repo_server):
    check_answers(call_every_api(repo_server.url, AUTH), dim=16)


def test_repo_server_python_client(repo_server, tmp_path):
    import bentoml

    image = tmp_path / "scan.dcm"
    image.write_bytes(dicom_bytes())
    with bentoml.SyncHTTPClient(repo_server.url, token=KEY, timeout=60) as client:
        assert len(client.encode_text(texts=["a small effusion"])[0]) == 16
        assert np.array(client.encode_image(images=[image, image])).shape == (2, 16)
        zs = client.zero_shot(image=image, labels=["pneumonia", "no finding"])
        assert zs["classes"] == ["pneumonia", "no finding"]
        assert len(client.ground(image=image, phrase="the right lung")["box"]) == 4
        assert len(client.encode_regions(image=image, boxes=[[0, 0, 0.5, 0.5]])["embeddings"]) == 1
        assert len(client.retrieve(text="kidney cyst", top_k=2)["results"]) == 2
        assert client.metadata()["api_key_required"] is True


def test_repo_server_rejects_each_bad_input_with_its_4xx(repo_server):
    check_bad_requests(repo_server.url, AUTH, TEST_SERVING)


def test_repo_server_needs_the_key_except_for_health(repo_server):
    assert httpx.get(f"{repo_server.url}/readyz", timeout=TIMEOUT).status_code == 200
    assert httpx.get(f"{repo_server.url}/livez", timeout=TIMEOUT).status_code == 200
    r = httpx.post(f"{repo_server.url}/metadata", json={}, timeout=TIMEOUT)
    assert r.status_code == 401 and "API key" in r.json()["error"]
    assert (
        httpx.post(
            f"{repo_server.url}/metadata", json={}, headers={"X-API-Key": KEY}, timeout=TIMEOUT
        ).status_code
        == 200
    )


def test_repo_server_logs_what_it_served(repo_server, serving_root):
    from regionmed.monitoring.embedding_log import read_log

    call_every_api(repo_server.url, AUTH)
    df = read_log(serving_root / "log-repo")
    assert {"encode_image", "encode_text", "zero_shot", "ground", "encode_regions", "retrieve"} <= set(
        df["endpoint"]
    )
    assert df["model_version"].str.startswith("dir-").all()


def test_the_built_bento_serves_the_packaged_model(bento_server, packaged):
    from helpers.params import default_section

    answers = call_every_api(bento_server.url, {})
    check_answers(answers, dim=16)
    meta = answers["metadata"].json()
    assert meta["model"]["version"] == packaged["record"]["model_tag"] and meta["model"]["origin"] == "bento"
    assert meta["metrics"]["retrieval/i2t_R@5"] == 0.5 and meta["gate"]["passed"] is True
    serving = default_section("serving")  # the params the model was packaged with (the repository's)
    assert meta["limits"]["max_upload_bytes"] == serving.max_upload_bytes
    assert answers["retrieve"].json()["index"]["model_version"] == packaged["record"]["model_tag"]
    check_bad_requests(bento_server.url, {}, serving.model_dump())
    assert listening_addresses(bento_server.port) == {"0100007F"}
