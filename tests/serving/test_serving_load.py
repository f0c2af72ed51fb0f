"""Load: a real server under concurrent mixed valid and invalid requests, loopback only.

For ``LOAD_SECONDS`` (the spec: 60 s) or ``MAX_REQUESTS``, whichever comes first, ``CONCURRENCY``
clients send a fixed mix; then: no 5xx at all, every bad request got its 4xx, the embedding log
holds exactly one record per served embedding (none lost, none extra), and the server's memory
(all its processes) levelled off.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections import Counter

import httpx
import pytest
from helpers.servers import REPO_ROOT, Server, server_env
from helpers.tiny_service import TEST_SERVING, dicom_bytes, jpeg_bytes, png_bytes, upload

LOAD_SECONDS = 60.0
MAX_REQUESTS = 20_000
CONCURRENCY = 16
RSS_SAMPLE_S = 1.0
MAX_LATE_GROWTH = 1.15  # the last quarter's peak RSS over the first quarter's, after warm-up...
MAX_LATE_GROWTH_BYTES = 64 * 2**20  # ...plus this much slack


def mix():
    """(name, route, kwargs, expected status, embeddings logged when served)."""
    pngs = [png_bytes(40 + 7 * i, 50 + 5 * i, seed=i) for i in range(4)]
    limits = TEST_SERVING
    return [
        (
            "image x1",
            "/encode_image",
            lambda r: {"files": [upload("a.png", r.choice(pngs), "images")]},
            200,
            1,
        ),
        (
            "image x2",
            "/encode_image",
            lambda r: {
                "files": [upload("a.png", r.choice(pngs), "images"), upload("b.jpg", jpeg_bytes(), "images")]
            },
            200,
            2,
        ),
        ("dicom", "/encode_image", lambda r: {"files": [upload("a.dcm", dicom_bytes(), "images")]}, 200, 1),
        (
            "texts",
            "/encode_text",
            lambda r: {"json": {"texts": [f"finding number {r.randint(0, 99)}", "no finding"]}},
            200,
            2,
        ),
        (
            "zero-shot",
            "/zero_shot",
            lambda r: {
                "files": [upload("a.png", r.choice(pngs))],
                "data": {"labels": json.dumps(["pneumonia", "no finding"])},
            },
            200,
            1,
        ),
        ("retrieve", "/retrieve", lambda r: {"json": {"text": "pleural effusion", "top_k": 3}}, 200, 1),
        ("bad image", "/encode_image", lambda r: {"files": [upload("a.png", b"garbage", "images")]}, 400, 0),
        (
            "too many texts",
            "/encode_text",
            lambda r: {"json": {"texts": ["a"] * (limits["max_texts_per_call"] + 1)}},
            400,
            0,
        ),
        (
            "too large",
            "/encode_text",
            lambda r: {
                "content": b"x" * (limits["max_upload_bytes"] + 1),
                "headers": {"content-type": "application/json"},
            },
            413,
            0,
        ),
        (
            "bad box",
            "/encode_regions",
            lambda r: {
                "files": [upload("a.png", r.choice(pngs))],
                "data": {"boxes": "[[0.9, 0.1, 0.2, 0.5]]"},
            },
            400,
            0,
        ),
        (
            "bomb",
            "/encode_image",
            lambda r: {"files": [upload("a.dcm", dicom_bytes(rows=3000, cols=3000), "images")]},
            400,
            0,
        ),
    ]


@pytest.fixture(scope="module")
def load_server(tiny, serving_root):
    env = server_env(
        REGIONMED_PARAMS=str(tiny["params"]),
        REGIONMED_MODEL_DIR=str(tiny["model"]),
        REGIONMED_INDEX_DIR=str(tiny["index"]),
        REGIONMED_EMBEDDING_LOG_DIR=str(serving_root / "log-load"),
        BENTOML_HOME=os.environ["BENTOML_HOME"],
    )
    server = Server(
        ["regionmed.serving.service:RegionMedService"], env, REPO_ROOT, serving_root / "load-server.log"
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


async def drive(url: str, server: Server) -> tuple[Counter, Counter, int, list[tuple[float, int]], list[str]]:
    kinds = mix()
    statuses: Counter = Counter()
    wrong: Counter = Counter()
    expected_records = 0
    rss: list[tuple[float, int]] = []
    failures: list[str] = []
    sent = 0
    start = time.perf_counter()
    deadline = start + LOAD_SECONDS

    async def client_loop(seed: int) -> None:
        nonlocal expected_records, sent
        rng = random.Random(seed)
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(
            base_url=url, timeout=httpx.Timeout(60.0, connect=5.0), limits=limits
        ) as c:
            while time.perf_counter() < deadline and sent < MAX_REQUESTS:
                sent += 1
                name, route, make, status, n = kinds[rng.randrange(len(kinds))]
                try:
                    r = await c.post(route, **make(rng))
                except httpx.HTTPError as exc:
                    failures.append(f"{name}: {type(exc).__name__}")
                    continue
                statuses[r.status_code] += 1
                if r.status_code != status:
                    wrong[(name, r.status_code)] += 1
                    if len(failures) < 20:
                        failures.append(f"{name}: {r.status_code} {r.text[:200]}")
                elif status == 200:
                    expected_records += n

    async def sampler() -> None:
        while time.perf_counter() < deadline:
            rss.append((time.perf_counter() - start, server.rss_bytes()))
            await asyncio.sleep(RSS_SAMPLE_S)

    await asyncio.gather(sampler(), *(client_loop(i) for i in range(CONCURRENCY)))
    return statuses, wrong, expected_records, rss, failures


@pytest.mark.slow
@pytest.mark.timeout(LOAD_SECONDS + 300)
def test_mixed_load_no_5xx_no_lost_records_bounded_memory(load_server, serving_root):
    from regionmed.monitoring.embedding_log import read_log

    before = len(read_log(serving_root / "log-load"))
    statuses, wrong, expected, rss, failures = asyncio.run(drive(load_server.url, load_server))
    total = sum(statuses.values())
    print(
        f"\nload: {total} requests in {LOAD_SECONDS:.0f} s ({total / LOAD_SECONDS:.1f}/s), "
        f"statuses {dict(statuses)}, {expected} embeddings served, "
        f"RSS {rss[0][1] / 2**20:.0f} -> {max(r for _, r in rss) / 2**20:.0f} MiB"
    )
    assert not failures or not [f for f in failures if "Error" in f], failures
    assert not [s for s in statuses if s >= 500], (statuses, failures)
    assert not wrong, (wrong, failures)
    assert statuses[200] > 0 and statuses[400] > 0 and statuses[413] > 0
    logged = read_log(serving_root / "log-load")
    assert len(logged) - before == expected, "embedding log records lost or duplicated"
    assert logged.attrs["skipped_lines"] == 0
    quarter = max(1, len(rss) // 4)
    early = max(r for _, r in rss[quarter : 2 * quarter])  # after a quarter of warm-up
    late = max(r for _, r in rss[-quarter:])
    assert late <= early * MAX_LATE_GROWTH + MAX_LATE_GROWTH_BYTES, (early / 2**20, late / 2**20)
