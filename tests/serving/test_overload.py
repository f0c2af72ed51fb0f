"""Shedding load through the real ``bentoml serve``: a 503 says the service is overloaded (with
``Retry-After``), not BentoML's generic 'unexpected error'."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from helpers.params import write_params
from helpers.servers import served_repo
from helpers.tiny_service import TEST_SERVING, png_bytes, upload


@pytest.fixture(scope="module")
def impatient_server(tiny, serving_root):
    """max_latency_ms 1: nearly every queued request is shed."""
    params = serving_root / "impatient-params.yaml"
    write_params(
        params, {"serving": {**TEST_SERVING, "batching": {"max_batch_size": 2, "max_latency_ms": 1}}}
    )
    yield from served_repo(tiny, serving_root, "impatient", params)


def test_shed_requests_get_a_503_that_says_overloaded(impatient_server):
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        with httpx.Client(base_url=impatient_server.url, timeout=60) as c:
            for _ in range(3):
                r = c.post(
                    "/zero_shot",
                    files=[upload("a.png", png_bytes(seed=i))],
                    data={"labels": json.dumps(["pneumonia", "no finding"])},
                )
                s = c.post("/encode_image", files=[upload("a.png", png_bytes(seed=i), "images")])
                with lock:
                    answers.extend([r, s])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted({r.status_code for r in answers})
    assert set(statuses) <= {200, 503}, statuses
    shed = [r for r in answers if r.status_code == 503]
    assert shed, f"nothing was shed at max_latency_ms 1 ({statuses}): the check saw no 503"
    for r in shed:
        body = r.json()
        assert body["code"] == "overloaded" and "overloaded" in body["error"], body
        assert "unexpected error" not in body["error"]
        assert r.headers.get("retry-after") == "1"
