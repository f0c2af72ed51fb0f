"""No part of any request in anything the real ``bentoml serve`` writes; a 4xx is one log line.

A marker is planted in every field of every kind of bad request of the 4xx catalogue (texts,
labels, phrases, file names, image bytes, JSON bodies, form fields, query strings, headers, the
multipart boundary, the path) and of accepted requests; then every byte the server process wrote
(its stdout and stderr, its working folder, its temp folder, its BentoML home, the embedding log)
is searched for the marker. The server runs in a folder of its own so that "every byte" is a
finite set of files.
"""

from __future__ import annotations

import io
import json
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
from helpers.servers import Server, server_env
from helpers.tiny_service import TEST_SERVING, bad_requests, jpeg_bytes, png_bytes, upload

MARKER = "ZqxPatientJaneDoe4711"
TIMEOUT = httpx.Timeout(60.0, connect=5.0)
MARKED_HEADERS = {
    "User-Agent": f"agent-{MARKER}",
    "X-Patient-Note": MARKER,
    "Cookie": f"session={MARKER}",
    "Referer": f"http://{MARKER}.example/",
}


@pytest.fixture(scope="module")
def private_server(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("private-server")
    for sub in ("cwd", "tmp", "bentoml", "log"):
        (root / sub).mkdir()
    env = server_env(
        REGIONMED_PARAMS=str(tiny["params"]),
        REGIONMED_MODEL_DIR=str(tiny["model"]),
        REGIONMED_INDEX_DIR=str(tiny["index"]),
        REGIONMED_EMBEDDING_LOG_DIR=str(root / "log"),
        BENTOML_HOME=str(root / "bentoml"),
        TMPDIR=str(root / "tmp"),
    )
    server = Server(["regionmed.serving.service:RegionMedService"], env, root / "cwd", root / "server.log")
    server.root = root
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def _mark(value):
    """Plant the marker in every non-blank string of a JSON value (keeping what makes it bad)."""
    if isinstance(value, str):
        return value if not value.strip() else f"{MARKER}{value}{MARKER}"
    if isinstance(value, list):
        return [_mark(v) for v in value]
    if isinstance(value, dict):
        return {k: _mark(v) for k, v in value.items()}
    return value


def _mark_form_value(value: str) -> str:
    try:
        return json.dumps(_mark(json.loads(value)))
    except ValueError:
        return _mark(value)


def png_with_text(marker: str) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("PatientName", marker)
    buf = io.BytesIO()
    Image.open(io.BytesIO(png_bytes())).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def marked_bad_requests() -> dict[str, tuple[str, dict, int]]:
    """The 4xx catalogue (``tiny.bad_requests``) with the marker in every field it has, plus the
    kinds of bad request only a marker can show (an invalid body quoting it, a path, a boundary)."""
    out = {}
    for name, (route, kwargs, status, _words) in bad_requests(TEST_SERVING).items():
        kw = dict(kwargs)
        if "files" in kw:
            kw["files"] = [
                (field, (f"{MARKER}-{fname}", data, ctype)) for field, (fname, data, ctype) in kw["files"]
            ]
        if "data" in kw:
            kw["data"] = {**{k: _mark_form_value(v) for k, v in kw["data"].items()}, "note": MARKER}
        elif "files" in kw:
            kw["data"] = {"note": MARKER}
        if "json" in kw:
            kw["json"] = {**_mark(kw["json"]), "note": MARKER}
        if "content" in kw and len(kw["content"]) < 1000:
            kw["content"] = kw["content"] + MARKER.encode()
        out[name] = (f"{route}?patient={MARKER}", kw, status)
    long_text = f"{MARKER} " + "x" * TEST_SERVING["max_text_chars"] + f" {MARKER}"
    out.update(
        {
            "text too long, marker at both ends": ("/encode_text", {"json": {"texts": [long_text]}}, 400),
            "invalid json quoting the marker": (
                "/encode_text",
                {
                    "content": f'{{"texts": ["{MARKER}", '.encode(),
                    "headers": {"content-type": "application/json"},
                },
                400,
            ),
            "marker as the multipart boundary": (
                "/encode_text",
                {
                    "content": f"--{MARKER}\r\nnonsense {MARKER}".encode(),
                    "headers": {"content-type": f"multipart/form-data; boundary={MARKER}"},
                },
                400,
            ),
            "phrase too long": (
                "/ground",
                {"files": [upload(f"{MARKER}.png", png_bytes())], "data": {"phrase": long_text}},
                400,
            ),
            "labels too long": (
                "/zero_shot",
                {
                    "files": [upload(f"{MARKER}.png", png_bytes())],
                    "data": {"labels": json.dumps([long_text, "b"])},
                },
                400,
            ),
            "prompts and labels": (
                "/zero_shot",
                {
                    "files": [upload(f"{MARKER}.png", png_bytes())],
                    "data": {"labels": json.dumps([MARKER]), "prompts": json.dumps([MARKER])},
                },
                400,
            ),
            "image with the marker in a text chunk, too many boxes": (
                "/encode_regions",
                {
                    "files": [upload(f"{MARKER}.png", png_with_text(MARKER))],
                    "data": {"boxes": json.dumps([[0, 0, 1, 1]] * (TEST_SERVING["max_boxes_per_call"] + 1))},
                },
                400,
            ),
            "marker in the path": (f"/{MARKER}", {"json": {"texts": [MARKER]}}, 404),
            "wrong type for top_k": ("/retrieve", {"json": {"text": MARKER, "top_k": MARKER}}, 400),
        }
    )
    return out


def accepted_requests() -> dict[str, tuple[str, dict]]:
    labels = json.dumps([f"{MARKER} effusion", "no finding"])
    return {
        "encode_text": ("/encode_text", {"json": {"texts": [f"{MARKER} has a small effusion"]}}),
        "encode_image": (
            "/encode_image",
            {
                "files": [
                    upload(f"{MARKER}.png", png_with_text(MARKER), "images"),
                    upload(f"{MARKER}.jpg", jpeg_bytes(), "images", "image/jpeg"),
                ]
            },
        ),
        "zero_shot": (
            "/zero_shot",
            {"files": [upload(f"{MARKER}.png", png_bytes())], "data": {"labels": labels}},
        ),
        "ground": (
            "/ground",
            {"files": [upload(f"{MARKER}.png", png_bytes())], "data": {"phrase": f"{MARKER} lung"}},
        ),
        "retrieve": ("/retrieve", {"json": {"text": f"{MARKER} kidney cyst", "top_k": 2}}),
    }


def _post(client: httpx.Client, route: str, kwargs: dict, request_id: str) -> httpx.Response:
    kwargs = {
        **kwargs,
        "headers": {**MARKED_HEADERS, "X-Request-ID": request_id, **kwargs.get("headers", {})},
    }
    return client.post(route, **kwargs)


def _disconnect_mid_body(port: int, request_id: str) -> None:
    """Declare a 5000-byte body, send part of it (with the marker), then hang up."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            (
                f"POST /encode_text?patient={MARKER} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: 5000\r\nX-Request-ID: {request_id}\r\n"
                f"X-Patient-Note: {MARKER}\r\n\r\n" + '{"texts": ["' + MARKER
            ).encode()
        )
        time.sleep(0.5)


def _every_byte_written(server: Server) -> dict[Path, bytes]:
    files = {server.log_file: server.log_file.read_bytes()}
    for sub in ("cwd", "tmp", "bentoml", "log"):
        for path in (server.root / sub).rglob("*"):
            if path.is_file():
                files[path] = path.read_bytes()
    return files


def test_no_request_data_in_anything_the_server_writes(private_server):
    bad, good = marked_bad_requests(), accepted_requests()
    with httpx.Client(base_url=private_server.url, timeout=TIMEOUT) as client:
        for i, (name, (route, kwargs, status)) in enumerate(bad.items()):
            r = _post(client, route, kwargs, f"bad-{i}")
            assert r.status_code == status, (name, r.status_code, r.text)
        for name, (route, kwargs) in good.items():
            r = _post(client, route, kwargs, f"good-{name}")
            assert r.status_code == 200, (name, r.status_code, r.text)
    for i in range(3):
        _disconnect_mid_body(private_server.port, f"gone-{i}")
    time.sleep(1.0)
    private_server.stop()  # flushes and closes everything it wrote

    written = _every_byte_written(private_server)
    assert any(p.suffix == ".jsonl" for p in written), (
        "the embedding log was not written: nothing was checked"
    )
    leaks = [str(p) for p, data in written.items() if MARKER.encode().lower() in data.lower()]
    assert not leaks, f"the marker reached {leaks}"

    log = private_server.log_file.read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
    assert "[ERROR]" not in log, log[-3000:]
    lines = log.splitlines()
    for i, (name, (_route, _kw, status)) in enumerate(bad.items()):
        mine = [ln for ln in lines if re.search(rf"request=bad-{i} ", ln)]
        assert len(mine) == 1, (name, mine)
        assert "[WARNING]" in mine[0] and f"status={status} error=" in mine[0], (name, mine[0])
        assert re.search(r"in=\d+B out=\d+B", mine[0]), mine[0]
    for name in good:
        mine = [ln for ln in lines if f"request=good-{name} " in ln]
        assert len(mine) == 1 and "[INFO]" in mine[0] and "status=200" in mine[0], (name, mine)
    for i in range(3):  # a client that hung up is a disconnect, not a 500
        mine = [ln for ln in lines if f"request=gone-{i} " in ln]
        assert len(mine) == 1 and "disconnected" in mine[0] and "status=500" not in mine[0], mine
    assert "status=500" not in log


def test_a_server_fault_keeps_its_traceback_without_the_message():
    import logging

    from regionmed.serving.logs import WITHHELD, RequestDataFilter

    try:
        try:
            raise KeyError(MARKER)
        except KeyError as inner:
            raise RuntimeError(f"failed on {MARKER}") from inner
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", None, sys.exc_info()
        )
    assert RequestDataFilter().filter(record) is True
    text = logging.Formatter().format(record)
    assert MARKER not in text
    assert "RuntimeError" in text and "KeyError" in text and WITHHELD in text and "Traceback" in text
