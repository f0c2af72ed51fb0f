"""Unusual uploads through the real ``bentoml serve``: EXIF orientation, formats that are not
accepted, a header over Pillow's own bomb limit, a phrase the model has no word of, more decoded
pixels in one request than its budget, big images reduced while decoding."""

from __future__ import annotations

import io
import json
import time

import httpx
import numpy as np
import pytest
from helpers.hostile_images import (
    bright_box,
    decoded_as_stored,
    displayed,
    header_bomb_png,
    oriented_jpeg,
    other_format,
    stored_pixels,
)
from helpers.servers import served_repo
from helpers.tiny_service import TEST_SERVING, png_bytes, upload
from PIL import Image

TIMEOUT = httpx.Timeout(60.0, connect=5.0)


@pytest.fixture(scope="module")
def server(tiny, serving_root):
    yield from served_repo(tiny, serving_root, "hostile")


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        yield c


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("orientation", [6, 8])
def test_an_oriented_jpeg_is_served_as_a_viewer_shows_it(client, orientation):
    jpeg = oriented_jpeg(stored_pixels(), orientation)
    shown = displayed(decoded_as_stored(jpeg), orientation)  # the same pixels, turned, lossless
    h, w = shown.shape[:2]
    x0, y0, x1, y1 = bright_box(shown)
    box = [x0 / w, y0 / h, x1 / w, y1 / h]  # drawn on the image as a viewer shows it

    def regions(name, data):
        r = client.post("/encode_regions", files=[upload(name, data)], data={"boxes": json.dumps([box])})
        assert r.status_code == 200, r.text
        return np.array(r.json()["embeddings"])

    def image(name, data):
        r = client.post("/encode_image", files=[upload(name, data, "images")])
        assert r.status_code == 200, r.text
        return np.array(r.json())

    np.testing.assert_allclose(regions("a.jpg", jpeg), regions("a.png", _png(shown)), atol=1e-5)
    np.testing.assert_allclose(image("a.jpg", jpeg), image("a.png", _png(shown)), atol=1e-5)
    turned_wrong = image("b.png", _png(decoded_as_stored(jpeg)))
    assert not np.allclose(image("a.jpg", jpeg), turned_wrong, atol=1e-3), (
        "the check cannot tell the two apart"
    )
    g_jpeg = client.post("/ground", files=[upload("a.jpg", jpeg)], data={"phrase": "the left lung"}).json()
    g_png = client.post(
        "/ground", files=[upload("a.png", _png(shown))], data={"phrase": "the left lung"}
    ).json()
    np.testing.assert_allclose(g_jpeg["box"], g_png["box"], atol=1e-5)


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "BMP", "WEBP"])
def test_formats_other_than_png_jpeg_dicom_are_refused(client, fmt):
    r = client.post("/encode_image", files=[upload(f"a.{fmt.lower()}", other_format(fmt), "images")])
    assert r.status_code == 400, (fmt, r.status_code, r.text)
    assert "not accepted" in r.json()["error"] and "unsupported_format" in r.json()["error"], r.text


def test_a_header_over_pillows_bomb_limit_is_refused_with_the_configured_limit(client):
    r = client.post("/encode_image", files=[upload("bomb.png", header_bomb_png(), "images")])
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert f"limit {TEST_SERVING['max_image_pixels']}" in error and "image_too_large" in error, error
    assert "178956970" not in error and "decompression bomb" not in error.lower(), error


def test_a_phrase_of_unknown_tokens_gets_a_warning(client):
    known = client.post("/ground", files=[upload("a.png", png_bytes())], data={"phrase": "the left lung"})
    unknown = client.post("/ground", files=[upload("a.png", png_bytes())], data={"phrase": "☃☃ ☃"})
    assert known.status_code == unknown.status_code == 200, (known.text, unknown.text)
    assert known.json()["warning"] is None
    assert "no word the model knows" in unknown.json()["warning"]


def _flat_png(width: int, height: int, value: int) -> bytes:
    return _png(np.full((height, width), value, dtype=np.uint8))


def test_a_request_over_its_pixel_budget_is_refused_before_decoding(client):
    side = int(TEST_SERVING["max_image_pixels"] ** 0.5)  # each image at the per-image limit
    n_fit = TEST_SERVING["max_request_pixels"] // (side * side)
    ok = client.post(
        "/encode_image", files=[upload(f"{i}.png", _flat_png(side, side, i), "images") for i in range(n_fit)]
    )
    assert ok.status_code == 200, ok.text
    over = client.post(
        "/encode_image",
        files=[upload(f"{i}.png", _flat_png(side, side, i), "images") for i in range(n_fit + 1)],
    )
    assert over.status_code == 413, (over.status_code, over.text)
    assert "serving.max_request_pixels" in over.json()["error"], over.text


def test_big_images_are_reduced_while_decoding_and_logged_at_their_own_size(server, client, serving_root):
    from regionmed.monitoring.embedding_log import read_log

    big = _flat_png(1000, 600, 90)
    r = client.post(
        "/encode_image", files=[upload("big.png", big, "images")], headers={"X-Request-ID": "reduce-check"}
    )
    assert r.status_code == 200, r.text
    time.sleep(0.5)
    df = read_log(serving_root / "log-hostile")
    from regionmed.monitoring.embedding_log import hash_request_id

    mine = df[df["request"] == hash_request_id("reduce-check", "")]
    assert list(mine["width"]) == [1000] and list(mine["height"]) == [600], mine[["width", "height"]]
