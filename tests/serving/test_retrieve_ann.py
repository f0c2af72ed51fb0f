"""``retrieve`` through HNSW graphs: the service loads them (memory-mapped) and answers as exact search
does; a damaged graph gives exact answers and a warning; ``package`` stores the graphs with the model.

The service runs in a fresh process per case (one BentoML app per process: a second registers its
Prometheus metrics twice), in-process there through Starlette's TestClient.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers.params import write_params
from helpers.servers import REPO_ROOT, server_env
from helpers.tiny_service import TEST_SERVING, package_tiny

from regionmed.inference.ann import GRAPH_FILE, HnswSettings
from regionmed.inference.index import RetrievalIndex

QUERY = "pleural effusion in the left lung"
TOP_K = 5
HNSW = HnswSettings(min_items=1, connectivity=8, expansion_add=32, expansion_search=16, build_threads=1)

# Asks the service (started from the environment) for both targets; prints one JSON line.
ASK_SERVICE = f"""
import json
from starlette.testclient import TestClient
from regionmed.serving.service import RegionMedService

with TestClient(RegionMedService.to_asgi(), raise_server_exceptions=False) as client:
    asks = {{t: {{"text": {QUERY!r}, "top_k": {TOP_K}, "target": t}} for t in ("image", "report")}}
    answers = {{t: client.post("/retrieve", json=body).json() for t, body in asks.items()}}
print("ANSWERS " + json.dumps(answers))
"""


@pytest.fixture(scope="module")
def exact_answers(tiny):
    from regionmed.inference.engine import Engine

    index = RetrievalIndex.load(tiny["index"])
    query = Engine.from_dir(tiny["model"]).encode_texts([QUERY])[0]
    return {target: index.search(query, TOP_K, target) for target in ("image", "report")}


def ask_service(tiny, index_dir, work) -> tuple[dict, str]:
    serving = {**TEST_SERVING, "embedding_log": {"dir": str(work / "log")}, "ann": {"expansion_search": 64}}
    params = write_params(work / "params.yaml", {"serving": serving})
    env = server_env(
        REGIONMED_PARAMS=str(params),
        REGIONMED_MODEL_DIR=str(tiny["model"]),
        REGIONMED_INDEX_DIR=str(index_dir),
        BENTOML_HOME=os.environ["BENTOML_HOME"],
    )
    proc = subprocess.run(
        [sys.executable, "-c", ASK_SERVICE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("ANSWERS "))
    return json.loads(line.removeprefix("ANSWERS ")), proc.stderr


def assert_same_results(got: list[dict], want: list[dict]) -> None:
    assert [{k: v for k, v in r.items() if k != "score"} for r in got] == [
        {k: v for k, v in r.items() if k != "score"} for r in want
    ]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-5)


@pytest.fixture(scope="module")
def hnsw_index(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hnsw") / "index"
    RetrievalIndex.load(tiny["index"]).build_ann(HNSW).save(folder)
    return folder


def test_retrieve_answers_through_the_graphs(tiny, hnsw_index, exact_answers, tmp_path):
    answers, _ = ask_service(tiny, hnsw_index, tmp_path)
    for target in ("image", "report"):
        out = answers[target]
        assert out["index"]["search"] == "hnsw", out
        assert out["index"]["n_items"] == RetrievalIndex.load(tiny["index"]).count(target)
        assert_same_results(out["results"], exact_answers[target])


def test_a_damaged_graph_is_searched_exactly_with_a_warning(tiny, hnsw_index, exact_answers, tmp_path):
    folder = tmp_path / "index"
    shutil.copytree(hnsw_index, folder)
    graph = folder / GRAPH_FILE.format(kind="image")
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    answers, stderr = ask_service(tiny, folder, tmp_path)
    assert answers["image"]["index"]["search"] == "exact"
    assert answers["report"]["index"]["search"] == "hnsw"
    assert "SHA-256" in stderr and "searched exactly" in stderr
    for target in ("image", "report"):
        assert_same_results(answers[target]["results"], exact_answers[target])


def test_package_stores_the_graphs_with_the_model(tiny, tmp_path):
    from bentoml._internal.models import ModelStore

    from regionmed.serving.package import resolve_bentoml_home
    from regionmed.serving.settings import STORE_INDEX_SUBDIR

    ann = {"min_items": 1, "connectivity": 8, "expansion_add": 32, "expansion_search": 16, "build_threads": 1}
    run = package_tiny(tmp_path / "project", tiny, ann=ann, build_bento=False)
    home = resolve_bentoml_home(run["params"])
    stored = RetrievalIndex.load(
        ModelStore(home / "models").get(run["record"]["model_tag"]).path_of(STORE_INDEX_SUBDIR)
    )
    repo_copy = RetrievalIndex.load(run["params"].serving.index_dir)
    for index in (stored, repo_copy):
        assert index.ann_problem is None
        assert index.search_mode("image") == "hnsw" and index.search_mode("report") == "hnsw"
        assert index.hnsw == HnswSettings(**ann)
