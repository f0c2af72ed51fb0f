"""The retrieval index's HNSW graphs: the exact answer at a high search breadth, the size threshold,
save/load, and a damaged or stale graph (exact search with a warning, never a wrong answer)."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pytest

from regionmed.inference.ann import GRAPH_FILE, HnswSettings
from regionmed.inference.index import INDEX_FILE, RetrievalIndex

DIM = 64


def settings(**overrides) -> HnswSettings:
    base = {
        "min_items": 1,
        "connectivity": 16,
        "expansion_add": 64,
        "expansion_search": 256,
        "build_threads": 1,
    }
    return HnswSettings(**{**base, **overrides})


def clustered(n: int, seed: int, clusters: int = 20) -> np.ndarray:
    """Unit vectors around 20 fixed random centres (embeddings are clustered, not uniform); ``seed``
    draws the points, so queries (another seed) fall among the same clusters."""
    centres = np.random.default_rng(12345).standard_normal((clusters, DIM))
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, DIM))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_index(n_images: int, n_reports: int, seed: int = 0) -> RetrievalIndex:
    vectors = clustered(n_images + n_reports, seed)
    items = [
        {"id": f"im{i}", "kind": "image" if i < n_images else "report", "modality": "CXR", "labels": []}
        for i in range(n_images + n_reports)
    ]
    return RetrievalIndex(items, vectors, "test", "v1")


def queries(n: int, seed: int = 99) -> np.ndarray:
    return clustered(n, seed)


def ids(results: list[dict]) -> list[str]:
    return [r["id"] for r in results]


@pytest.fixture(scope="module")
def built():
    """5,000 images and 300 reports, every kind with a graph at a high search breadth."""
    return make_index(5000, 300).build_ann(settings())


def test_hnsw_finds_the_exact_top_10_at_a_high_breadth(built):
    exact = make_index(5000, 300)
    assert built.search_mode("image") == "hnsw" and exact.search_mode("image") == "exact"
    hits = 0
    for q in queries(50):
        got, want = built.search(q, 10, "image"), exact.search(q, 10, "image")
        hits += len(set(ids(got)) & set(ids(want)))
        # the same format, the same (exact) scores, best first
        assert [set(r) for r in got] == [set(r) for r in want]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], atol=1e-6)
        assert [r["score"] for r in got] == sorted((r["score"] for r in got), reverse=True)
        assert {r["kind"] for r in got} == {"image"}
    assert hits / (50 * 10) == 1.0


def test_a_low_breadth_is_approximate_and_still_scored_exactly(built):
    """The check above can fail: one link per node and a breadth of one miss neighbours."""
    exact = make_index(5000, 300)
    sparse = make_index(5000, 300).build_ann(
        settings(connectivity=2, expansion_add=2, expansion_search=1, min_items=1000)
    )
    recall = np.mean(
        [
            len(set(ids(sparse.search(q, 10, "image"))) & set(ids(exact.search(q, 10, "image")))) / 10
            for q in queries(50)
        ]
    )
    assert recall < 1.0
    q = queries(1)[0]
    for r in sparse.search(q, 10, "image"):
        row = int(r["id"].removeprefix("im"))
        assert r["score"] == pytest.approx(float(exact.embeddings[row] @ q), abs=1e-6)


def test_the_size_threshold_picks_exact_or_hnsw_per_kind(tmp_path):
    index = make_index(400, 150).build_ann(settings(min_items=200))
    assert index.search_mode("image") == "hnsw" and index.search_mode("report") == "exact"
    index.save(tmp_path / "some")
    doc = json.loads((tmp_path / "some" / INDEX_FILE).read_text())
    assert set(doc["ann"]["kinds"]) == {"image"} and doc["ann"]["min_items"] == 200
    assert doc["ann"]["metric"] == "cos" and doc["ann"]["library"] == "usearch"

    small = make_index(400, 150).build_ann(settings(min_items=401))
    assert small.graphs == {} and small.search_mode("image") == "exact"
    small.save(tmp_path / "none")
    assert "ann" not in json.loads((tmp_path / "none" / INDEX_FILE).read_text())
    assert not list((tmp_path / "none").glob("*.usearch"))
    # saving a smaller index over a folder that had graphs leaves no stale graph behind
    small.save(tmp_path / "some")
    assert not list((tmp_path / "some").glob("*.usearch"))
    assert RetrievalIndex.load(tmp_path / "some").graphs == {}


def test_save_load_round_trip_memory_maps_and_answers_the_same(built, tmp_path):
    built.save(tmp_path / "index")
    back = RetrievalIndex.load(tmp_path / "index", mmap=True)
    assert back.ann_problem is None
    assert back.search_mode("image") == "hnsw" and back.search_mode("report") == "hnsw"
    assert back.graphs["image"].expansion_search == 256 and len(back.graphs["image"]) == 5000
    wider = RetrievalIndex.load(tmp_path / "index", expansion_search=300)  # the service's own breadth
    assert wider.graphs["image"].expansion_search == 300
    assert isinstance(back.embeddings.base, np.memmap) or isinstance(back.embeddings, np.memmap)
    for q in queries(10):
        for kind in ("image", "report"):
            assert back.search(q, 7, kind) == built.search(q, 7, kind)
    assert back.hnsw == built.hnsw


def test_a_single_threaded_build_is_reproducible(tmp_path):
    digests = []
    for name in ("a", "b"):
        make_index(2000, 10).build_ann(settings(min_items=100)).save(tmp_path / name)
        graph = tmp_path / name / GRAPH_FILE.format(kind="image")
        digests.append(hashlib.sha256(graph.read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_ties_are_ordered_by_row_in_both_modes():
    # 30 copies of one axis vector: every dot product is exactly 1 or 0 whatever the summation order
    # (with general vectors the BLAS kernel may score two copies of one vector an ulp apart)
    vectors = np.zeros((30, DIM), dtype=np.float32)
    vectors[:, 3] = 1.0
    items = [{"id": str(i), "kind": "image", "modality": "CT", "labels": []} for i in range(30)]
    exact = RetrievalIndex(items, vectors)
    hnsw = RetrievalIndex(items, vectors).build_ann(settings())
    want = [str(i) for i in range(5)]
    assert ids(exact.search(vectors[0], 5)) == want
    got = ids(hnsw.search(vectors[0], 5))
    # HNSW may return any 5 of the tied 30; whichever it returns come in row order
    assert got == sorted(got, key=int) and len(got) == 5


def damage(folder, how: str) -> None:
    graph = folder / GRAPH_FILE.format(kind="image")
    data = bytearray(graph.read_bytes())
    if how == "flipped bytes":
        mid = len(data) // 2
        data[mid : mid + 64] = bytes(255 - b for b in data[mid : mid + 64])
        graph.write_bytes(bytes(data))
    elif how == "truncated":
        graph.write_bytes(bytes(data[: len(data) // 3]))
    elif how == "missing":
        graph.unlink()
    elif how == "other embeddings":  # the graph is intact, embeddings.npy is another build's
        index = make_index(5000, 300, seed=7)
        np.save(folder / "embeddings.npy", index.embeddings)
    elif how == "ann record without a setting":
        doc = json.loads((folder / INDEX_FILE).read_text())
        del doc["ann"]["connectivity"]
        (folder / INDEX_FILE).write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "how", ["flipped bytes", "truncated", "missing", "other embeddings", "ann record without a setting"]
)
def test_a_damaged_graph_falls_back_to_exact_search_with_a_warning(built, tmp_path, caplog, how):
    folder = built.save(tmp_path / "index")
    damage(folder, how)
    with caplog.at_level(logging.WARNING, logger="regionmed.inference.index"):
        back = RetrievalIndex.load(folder, mmap=True)
    assert back.search_mode("image") == "exact" and back.ann_problem
    assert "exact" in caplog.text and back.ann_problem.split(";")[0] in caplog.text
    if how in ("flipped bytes", "truncated", "missing"):
        assert back.search_mode("report") == "hnsw"  # the report graph is intact
    reference = RetrievalIndex(back.items, np.array(back.embeddings))
    for q in queries(5):
        assert back.search(q, 10, "image") == reference.search(q, 10, "image")
