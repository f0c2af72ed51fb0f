"""The service's contract through its ASGI app, in-process: every API, every limit, the API key, the log."""

from __future__ import annotations

import json
import threading
import uuid

import numpy as np
import pytest
from helpers.tiny_service import (
    DICOM_IDENTIFIERS,
    TEST_SERVING,
    bad_requests,
    dicom_bytes,
    jpeg_bytes,
    png_bytes,
    upload,
)

LIMITS = TEST_SERVING


def post(client, route: str, rid: str | None = None, **kwargs):
    headers = {"X-Request-ID": rid} if rid else {}
    return client.post(route, headers=headers, **kwargs)


def rows_of(log_dir, rid: str):
    from regionmed.monitoring.embedding_log import hash_request_id, read_log

    df = read_log(log_dir)
    return df[df["request"] == hash_request_id(rid)]


@pytest.fixture(scope="module")
def engine(tiny):
    from regionmed.inference.engine import Engine

    return Engine.from_dir(tiny["model"])


def test_health_and_metadata(client, tiny):
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    r = client.post("/metadata", json={})
    assert r.status_code == 200
    meta = r.json()
    assert meta["model"]["version"].startswith("dir-") and meta["model"]["origin"] == "env-dir"
    assert meta["model"]["embed_dim"] == 16 and meta["model"]["image_size"] == 64
    assert meta["index"] == {
        "split": "test",
        "n_images": meta["index"]["n_images"],
        "n_reports": meta["index"]["n_images"],
        "kinds": ["image", "report"],
    }
    assert meta["limits"]["max_texts_per_call"] == LIMITS["max_texts_per_call"]
    assert meta["batching"] == LIMITS["batching"] and meta["api_key_required"] is False


def test_encode_image_png_jpeg_dicom_match_the_engine(client, engine, tiny):
    from regionmed.inference.uploads import decode_upload

    images = [png_bytes(), jpeg_bytes(), dicom_bytes(), dicom_bytes(monochrome1=True)]
    files = [upload(f"im{i}", b, "images") for i, b in enumerate(images)]
    rid = uuid.uuid4().hex
    r = post(client, "/encode_image", rid, files=files)
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == rid
    emb = np.array(r.json())
    assert emb.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    expected = engine.encode_images([engine.prepare(decode_upload(b, 10**6)) for b in images])
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    # MONOCHROME1 is inverted on the way in, so its embedding differs from the same pixels as MONOCHROME2
    assert not np.allclose(emb[2], emb[3])
    logged = rows_of(tiny["log"], rid)
    assert (
        len(logged) == 4 and set(logged["endpoint"]) == {"encode_image"} and set(logged["kind"]) == {"image"}
    )
    assert sorted(logged["format"]) == ["dicom", "dicom", "jpeg", "png"]


def test_encode_text_matches_the_engine_and_logs_counts_not_text(client, engine, tiny):
    texts = ["a small pleural effusion in the left lung", "no finding"]
    rid = uuid.uuid4().hex
    r = post(client, "/encode_text", rid, json={"texts": texts})
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(np.array(r.json()), engine.encode_texts(texts), atol=1e-5)
    logged = rows_of(tiny["log"], rid)
    assert list(logged["n_chars"]) == [len(t) for t in texts]
    assert (logged["n_tokens"] > 2).all() and not logged["truncated"].any()


def test_zero_shot_with_labels_and_with_prompts(client, engine):
    labels = ["pleural effusion", "pneumonia", "no finding"]
    r = post(client, "/zero_shot", files=[upload("a.png", png_bytes())], data={"labels": json.dumps(labels)})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["classes"] == labels and out["mode"] == "labels"
    assert abs(sum(out["probabilities"]) - 1) < 1e-5 and out["top"] in labels
    from regionmed.inference.uploads import decode_upload

    _, probs = engine.zero_shot([engine.prepare(decode_upload(png_bytes(), 10**6))], labels)
    np.testing.assert_allclose(out["probabilities"], probs[0], atol=1e-5)
    prompts = ["a chest x-ray with a pleural effusion", "a normal chest x-ray"]
    r = post(
        client, "/zero_shot", files=[upload("a.png", png_bytes())], data={"prompts": json.dumps(prompts)}
    )
    assert r.status_code == 200 and r.json()["classes"] == prompts and r.json()["mode"] == "prompts"


def test_ground_returns_a_box_in_the_upload_a_score_and_a_heatmap(client):
    r = post(
        client, "/ground", files=[upload("a.jpg", jpeg_bytes(120, 60))], data={"phrase": "the left lung"}
    )
    assert r.status_code == 200, r.text
    out = r.json()
    x0, y0, x1, y1 = out["box"]
    assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    assert np.isfinite(out["score"]) and -1 <= out["score"] <= 1
    assert out["grid"] == [4, 4] and np.array(out["heatmap"]).shape == (4, 4)


def test_encode_regions_one_embedding_per_box(client, tiny):
    boxes = [[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]]
    rid = uuid.uuid4().hex
    r = post(
        client,
        "/encode_regions",
        rid,
        files=[upload("a.dcm", dicom_bytes())],
        data={"boxes": json.dumps(boxes)},
    )
    assert r.status_code == 200, r.text
    emb = np.array(r.json()["embeddings"])
    assert emb.shape == (2, 16)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    logged = rows_of(tiny["log"], rid)
    assert [list(b) for b in logged["box"]] == boxes and set(logged["kind"]) == {"region"}


@pytest.mark.parametrize("target", ["image", "report"])
def test_retrieve_by_text_and_by_image(client, target):
    r = post(client, "/retrieve", json={"text": "pleural effusion", "top_k": 3, "target": target})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["query"] == "text" and len(out["results"]) == 3
    scores = [x["score"] for x in out["results"]]
    assert scores == sorted(scores, reverse=True)
    for item in out["results"]:
        assert set(item) == {"id", "kind", "modality", "labels", "score"} and item["kind"] == target
    r = post(client, "/retrieve", files=[upload("a.png", png_bytes())], data={"top_k": "2", "target": target})
    assert r.status_code == 200 and r.json()["query"] == "image" and len(r.json()["results"]) == 2


def test_the_index_holds_no_report_text(tiny):
    from regionmed.corpus.schema import read_manifest

    stored = (tiny["index"] / "index.json").read_text()
    for report in read_manifest(tiny["corpus"], "test")["report"]:
        assert report not in stored


BAD_REQUESTS = bad_requests(LIMITS)


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_get_a_4xx_that_says_what_was_wrong(client, name):
    route, kwargs, status, words = BAD_REQUESTS[name]
    r = client.post(route, **kwargs)
    assert r.status_code == status, (name, r.status_code, r.text)
    body = r.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    assert words.lower() in body["error"].lower(), body
    assert "Traceback" not in r.text and 'File "' not in r.text


def test_no_bad_request_writes_a_log_record(client, tiny):
    rid = uuid.uuid4().hex
    for route, kwargs, _, _ in BAD_REQUESTS.values():
        kwargs = {**kwargs, "headers": {**kwargs.get("headers", {}), "X-Request-ID": rid}}
        assert client.post(route, **kwargs).status_code >= 400
    assert len(rows_of(tiny["log"], rid)) == 0


def test_api_key_guards_every_endpoint_but_health(client, monkeypatch):
    monkeypatch.setenv("REGIONMED_API_KEY", "s3cret-key")
    for path in ("/livez", "/readyz"):
        assert client.get(path).status_code == 200
    for path in ("/metadata", "/encode_text", "/schema.json", "/docs.json", "/metrics"):
        r = client.post(path, json={}) if path in ("/metadata", "/encode_text") else client.get(path)
        assert r.status_code == 401, (path, r.status_code)
        assert "API key" in r.json()["error"]
    assert client.post("/metadata", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = client.post("/metadata", json={}, headers={"Authorization": "Bearer s3cret-key"})
    assert ok.status_code == 200 and ok.json()["api_key_required"] is True
    assert (
        client.post("/encode_text", json={"texts": ["a"]}, headers={"X-API-Key": "s3cret-key"}).status_code
        == 200
    )


def test_the_log_never_holds_raw_text_pixels_or_dicom_identifiers(client, tiny):
    """Plant identifiers in every input the service reads, then grep every byte of the log for them."""
    secret = "zebra-quartz-7731"  # a token no tokenizer or model field would produce
    rid = f"patient-{secret}"
    dcm = dicom_bytes()
    calls = [
        ("/encode_image", {"files": [upload(f"{secret}.dcm", dcm, "images")]}),
        ("/encode_text", {"json": {"texts": [f"report of {secret}"]}}),
        (
            "/zero_shot",
            {"files": [upload(f"{secret}.dcm", dcm)], "data": {"labels": json.dumps([f"label {secret}"])}},
        ),
        ("/ground", {"files": [upload(f"{secret}.dcm", dcm)], "data": {"phrase": f"phrase {secret}"}}),
        ("/encode_regions", {"files": [upload(f"{secret}.dcm", dcm)], "data": {"boxes": "[[0, 0, 1, 1]]"}}),
        ("/retrieve", {"json": {"text": f"query {secret}"}}),
        ("/retrieve", {"files": [upload(f"{secret}.dcm", dcm)]}),
    ]
    for route, kwargs in calls:
        r = post(client, route, rid, **kwargs)
        assert r.status_code == 200, (route, r.text)
    logged = rows_of(tiny["log"], rid)
    assert len(logged) == len(calls)
    assert set(logged["endpoint"]) == {c[0].strip("/") for c in calls}
    raw = b"".join(p.read_bytes() for p in sorted(tiny["log"].glob("*.jsonl")))
    needles = [
        secret,
        rid,
        *DICOM_IDENTIFIERS.values(),
        "Testperson",
        "MRN",
        "report of",
        "phrase",
        "query",
        "label ",
        "DICM",
    ]
    for needle in needles:
        assert needle.encode() not in raw, needle
    from regionmed.monitoring.embedding_log import CORE_COLUMNS, DESCRIPTOR_KEYS

    for line in raw.splitlines():
        record = json.loads(line)
        assert set(record) <= {"v", *CORE_COLUMNS, *DESCRIPTOR_KEYS}, set(record)
        strings = {k: v for k, v in record.items() if isinstance(v, str)}
        assert set(strings) <= {"ts", "endpoint", "model_version", "request", "kind", "format"}


def test_concurrent_encode_image_requests_are_batched(client, service_cls, monkeypatch):
    """Adaptive batching: once BentoML's dispatcher has warmed up, concurrent requests share model calls."""
    from regionmed.inference.engine import Engine

    sizes: list[int] = []
    original = Engine.encode_pixels

    def spy(self, pixels):
        sizes.append(len(pixels))
        return original(self, pixels)

    monkeypatch.setattr(Engine, "encode_pixels", spy)
    errors: list[str] = []

    def call(i: int) -> None:
        r = client.post("/encode_image", files=[upload(f"{i}.png", png_bytes(seed=i), "images")])
        if r.status_code != 200 or len(r.json()) != 1:
            errors.append(r.text)

    for _round in range(4):  # the dispatcher's first ~11 calls train its latency model one by one
        threads = [threading.Thread(target=call, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors
    assert sum(sizes) == 48
    assert max(sizes) > 1 and max(sizes) <= LIMITS["batching"]["max_batch_size"], sizes


def test_device_choice():
    import torch

    from regionmed.inference.engine import resolve_device

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            resolve_device("cuda")


def test_a_folder_model_reports_the_repo_metrics_and_gate(tmp_path, monkeypatch, tiny):
    import json as _json

    from helpers.params import default_section, write_params

    from regionmed.serving.settings import resolve_model

    write_params(tmp_path / "params.yaml")  # the repository's params: gate.decision_file metrics/gate.json
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/gate.json").write_text(
        _json.dumps({"passed": True, "n_failed": 0, "candidate_metrics": {"retrieval/i2t_R@5": 0.4}})
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REGIONMED_PARAMS", raising=False)
    monkeypatch.setenv("REGIONMED_MODEL_DIR", str(tiny["model"]))
    source = resolve_model(default_section("serving"))
    assert source.origin == "env-dir" and source.version is None
    assert source.info == {"metrics": {"retrieval/i2t_R@5": 0.4}, "gate": {"passed": True, "n_failed": 0}}
