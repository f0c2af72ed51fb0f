"""The demo page's server side without a browser: static files in the app and the Bento, the key
middleware's open prefix, ``preview``, ``metadata``'s labels and drift status, the location check."""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
from helpers.tiny_service import dicom_bytes, png_bytes, upload

from regionmed.serving.demo import DEMO_DIR, drift_status
from regionmed.serving.location_check import check_location_words
from regionmed.serving.middleware import RequestGuardMiddleware


def test_the_page_and_every_asset_it_names_are_served_and_nothing_comes_from_another_host(client):
    page = client.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(assets) == ["demo.css", "demo.js", "draw.js"]
    for name in assets:
        r = client.get(f"/ui/{name}")
        assert r.status_code == 200 and r.content == (DEMO_DIR / name).read_bytes()
    for path in DEMO_DIR.iterdir():  # no CDN, no font service, no analytics: nothing but this origin
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text()), path.name
    assert client.get("/ui", follow_redirects=False).status_code in (307, 308)


@pytest.mark.parametrize(
    ("method", "path", "opened"),
    [
        ("GET", "/ui/", True),
        ("GET", "/ui/demo.js", True),
        ("HEAD", "/ui", True),
        ("GET", "/healthz", True),
        ("POST", "/ui/", False),
        ("GET", "/uix", False),
        ("GET", "/ui-other/x", False),
        ("GET", "/metadata", False),
        ("POST", "/zero_shot", False),
    ],
)
def test_only_the_page_s_static_files_and_health_need_no_key(monkeypatch, method, path, opened):
    import asyncio

    monkeypatch.setenv("DEMO_TEST_KEY", "k")
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = RequestGuardMiddleware(app, 1000, "DEMO_TEST_KEY", open_prefixes=("/ui",))
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": method, "path": path, "headers": [(b"content-length", b"0")]}
    asyncio.run(guard(scope, receive, send))
    assert (sent[0]["status"] == 200) == opened and bool(reached) == opened


def test_preview_is_the_letterboxed_model_input_and_keeps_nothing(client, service_cls, tiny):
    from PIL import Image

    from regionmed.corpus.images import letterbox

    data = png_bytes(80, 60, seed=4)
    r = client.post("/preview", files=[upload("a.png", data)])
    assert r.status_code == 200, r.text
    out = r.json()
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(out["image"].split(",", 1)[1]))))
    expected, fit = letterbox(np.asarray(Image.open(io.BytesIO(data))), out["size"])
    assert shown.shape == (out["size"], out["size"]) and np.abs(shown.astype(int) - expected).max() <= 1
    assert out["fit"] == {
        "width": 80,
        "height": 60,
        "size": out["size"],
        "scale_x": fit.scale_x,
        "scale_y": fit.scale_y,
        "pad_x": fit.pad_x,
        "pad_y": fit.pad_y,
    }
    assert (out["width"], out["height"], out["format"]) == (80, 60, "png")
    dcm = client.post("/preview", files=[upload("s.dcm", dicom_bytes(48, 40))]).json()
    assert dcm["format"] == "dicom" and dcm["fit"]["height"] == 40
    bad = client.post("/preview", files=[upload("x.txt", b"plain text")])
    assert bad.status_code == 400 and "not a readable" in bad.json()["error"]


def test_metadata_gives_the_label_vocabulary_and_the_last_drift_verdict(client, tiny, tmp_path, monkeypatch):
    index = json.loads((tiny["index"] / "index.json").read_text())
    vocabulary = sorted({label for item in index["items"] for label in item["labels"]})
    summary = tmp_path / "drift.json"
    monkeypatch.setenv("REGIONMED_DRIFT_SUMMARY", str(summary))
    meta = client.post("/metadata", json={}).json()
    assert meta["labels"] == vocabulary and len(vocabulary) >= 3
    assert meta["drift"] is None and meta["demo_page"] == "/ui/"
    summary.write_text(
        json.dumps(
            {
                "status": "drift",
                "drift": True,
                "drifted_checks": ["text/embeddings/mmd"],
                "message": "drift",
                "window": {},
                "current": {"rows": 5},
            }
        )
    )
    drift = client.post("/metadata", json={}).json()["drift"]  # read per call: no restart after a monitor run
    assert (
        drift["status"] == "drift"
        and drift["drifted_checks"] == ["text/embeddings/mmd"]
        and "current" not in drift
    )


def test_drift_status_of_a_missing_or_broken_summary(tmp_path, monkeypatch):
    monkeypatch.delenv("REGIONMED_DRIFT_SUMMARY", raising=False)
    assert drift_status(None) is None and drift_status(tmp_path / "none.json") is None
    (tmp_path / "bad.json").write_text("{not json")
    assert drift_status(tmp_path / "bad.json")["status"] == "unreadable"


def test_ground_says_which_location_words_its_box_contradicts(client):
    r = client.post(
        "/ground", files=[upload("a.png", png_bytes())], data={"phrase": "a mass in the left lower zone"}
    )
    check = r.json()["location_check"]
    assert [w["word"] for w in check["words"]] == ["left", "lower"]
    assert check == check_location_words("a mass in the left lower zone", r.json()["box"])


@pytest.mark.parametrize(
    ("phrase", "box", "disagreeing"),
    [
        # the patient's right is the image's left (x < 0.5)
        ("nodule in the right upper zone", [0.1, 0.05, 0.3, 0.25], []),
        ("nodule in the right upper zone", [0.7, 0.05, 0.9, 0.25], ["right"]),
        ("nodule in the Right upper zone", [0.7, 0.7, 0.9, 0.9], ["Right", "upper"]),
        ("effusion at the left base, lower zone", [0.6, 0.7, 0.9, 0.95], []),
        ("mass in the left mid zone", [0.45, 0.4, 0.55, 0.6], []),  # a midline box contradicts no side
        ("mass in the middle", [0.1, 0.8, 0.3, 0.95], ["middle"]),
        ("bright spot", [0.0, 0.0, 1.0, 1.0], []),
        ("leftover uppercase", [0.0, 0.0, 0.2, 0.2], []),  # whole words only
    ],
)
def test_location_words_against_the_box(phrase, box, disagreeing):
    check = check_location_words(phrase, box)
    assert [w["word"] for w in check["words"] if not w["agrees"]] == disagreeing
    assert check["disagrees"] == bool(disagreeing)
    for w in check["words"]:
        assert phrase[w["start"] : w["end"]] == w["word"]


def test_the_bento_carries_the_page(packaged):
    from regionmed.serving.package import resolve_bentoml_home

    name, ver = packaged["record"]["bento_tag"].split(":")
    src = resolve_bentoml_home(packaged["params"]) / "bentos" / name / ver / "src" / "regionmed/serving/demo"
    assert sorted(p.name for p in src.iterdir()) == sorted(p.name for p in DEMO_DIR.iterdir())


def test_preview_writes_nothing_to_the_embedding_log(client, tiny):
    import uuid

    from regionmed.monitoring.embedding_log import hash_request_id, read_log

    quiet, logged = uuid.uuid4().hex, uuid.uuid4().hex
    assert (
        client.post(
            "/preview", headers={"X-Request-ID": quiet}, files=[upload("a.png", png_bytes())]
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/ground",
            headers={"X-Request-ID": logged},
            files=[upload("a.png", png_bytes())],
            data={"phrase": "left lung"},
        ).status_code
        == 200
    )  # the control: ground logs its phrase
    requests = set(read_log(tiny["log"])["request"])
    assert hash_request_id(logged) in requests and hash_request_id(quiet) not in requests
