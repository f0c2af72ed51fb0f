"""The served model through two faults, on a real ``bentoml serve`` (tests/helpers/servers.py) of a tiny
model: its embedding-log disk fills (a small tmpfs), and its worker process is SIGKILLed under load.

- A full log disk never reaches a client: every call is answered; the log pauses (metadata says so,
  /metrics counts the rows dropped) and resumes when space is back, with only whole lines in it.
- A killed worker is restarted by the server; only the requests in flight at the kill fail (counted),
  /readyz answers only once a worker with the model loaded is back, and the embedding log holds the rows
  of every answered request (it loses at most the in-flight ones).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from helpers.faults import fill_disk, record_measure, small_disk
from helpers.params import write_params
from helpers.servers import served_repo
from helpers.tiny_service import TEST_SERVING, build_tiny, png_bytes, upload

from regionmed.monitoring.embedding_log import hash_request_id, read_log

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(600)]

DROPPED_METRIC = "regionmed_embedding_log_dropped_rows_total"
RESTART_BACKLOG_S = 5.0  # after /readyz answers, the requests queued meanwhile may still be shed
CLIENTS = 4  # concurrent clients under load: at most this many requests are in flight at the kill
IMAGE = png_bytes()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """``(server, log_dir, disk)``: the tiny model served with its embedding log on a 4 MB tmpfs (``disk``
    is None where mounting is not permitted: the log is then a plain folder)."""
    root = tmp_path_factory.mktemp("service")
    tiny = build_tiny(root / "tiny")
    log_dir = root / "log-faults"  # the folder served_repo gives the server named "faults"
    tiny["params"] = write_params(
        root / "params.yaml",
        {"serving": {**TEST_SERVING, "batching": {"max_batch_size": 8, "max_latency_ms": 200}}},
    )
    with _log_disk(log_dir) as disk, pytest.MonkeyPatch.context() as env:
        env.setenv("BENTOML_HOME", str(root / "bentoml_home"))  # the server's store (module-wide)
        server = served_repo(tiny, root, "faults")
        try:
            yield next(server), log_dir, disk
        finally:
            server.close()


@contextlib.contextmanager
def _log_disk(folder: Path):
    """:func:`small_disk` of 4 MB at ``folder``, or the plain folder (None) where mounting is refused."""
    disk = small_disk(folder, "4m")
    try:
        mounted = disk.__enter__()
    except pytest.skip.Exception:
        folder.mkdir(parents=True, exist_ok=True)
        yield None
        return
    try:
        yield mounted
    finally:
        disk.__exit__(None, None, None)


def _encode(url: str, request_id: str, timeout: float = 30) -> httpx.Response:
    """Two images in one ``encode_image`` call: two rows in the log, under this request's id (an image
    carries its request's id through the batcher)."""
    return httpx.post(
        f"{url}/encode_image",
        files=[upload("a.png", IMAGE, "images"), upload("b.png", IMAGE, "images")],
        headers={"X-Request-ID": request_id},
        timeout=timeout,
    )


def _metadata(url: str) -> dict:
    return httpx.post(f"{url}/metadata", json={}, timeout=30).json()


def _dropped(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(DROPPED_METRIC)]
    return sum(values)


def test_a_full_log_disk_pauses_the_log_not_the_service_and_logging_resumes(served):
    server, log_dir, disk = served
    if disk is None:
        pytest.skip("cannot mount a tmpfs here: run as root")
    assert _encode(server.url, "before-full").status_code == 200
    filler = fill_disk(disk, leave_bytes=0)
    calls = [f"while-full-{i}" for i in range(30)]
    answers = [_encode(server.url, rid).status_code for rid in calls]
    assert answers == [200] * len(calls), "a full log disk never reaches a client"
    state = _metadata(server.url)["embedding_log"]
    # the log file's last page may still take a few lines; then every row is dropped and counted
    assert state["paused"] is True and state["rows_dropped"] > 0
    assert _dropped(server.url) == state["rows_dropped"], "/metrics counts what metadata says"
    assert "logging paused" in server.log()

    filler.unlink()
    assert _encode(server.url, "after-space").status_code == 200
    state = _metadata(server.url)["embedding_log"]
    assert state["paused"] is False and "logging resumed" in server.log()
    log = read_log(log_dir)
    assert log.attrs["skipped_lines"] == 0, "only whole lines: the monitor reads every one"
    rows = log["request"].value_counts()
    assert rows.get(hash_request_id("before-full")) == 2 and rows.get(hash_request_id("after-space")) == 2
    logged = sum(int(rows.get(hash_request_id(rid), 0)) for rid in calls)
    assert {int(rows.get(hash_request_id(rid), 0)) for rid in calls} <= {0, 2}, "a call's rows go in together"
    assert logged + state["rows_dropped"] == 2 * len(calls), "every row is in the log or counted as dropped"
    record_measure(
        "embedding-log disk full (service)",
        calls=len(calls),
        rows_logged=logged,
        rows_dropped=state["rows_dropped"],
    )


def _worker_pids(server) -> list[int]:
    """The server's worker processes (the arbiter's children that serve the app)."""
    pids = []
    for pid in server.pids()[1:]:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "_bentoml_impl.worker" in cmdline or "worker" in cmdline.split("-m", 1)[-1][:60]:
            pids.append(pid)
    return pids


def test_a_killed_worker_is_restarted_and_only_requests_in_flight_fail(served):
    server, log_dir, _disk = served
    (old_worker,) = _worker_pids(server)
    results: list[tuple[str, float, float, int | str]] = []  # request id, start, end, status or error
    stop = threading.Event()

    def client(k: int) -> None:
        n = 0
        while not stop.is_set():
            rid, start = f"load-{k}-{n}-{uuid.uuid4().hex[:8]}", time.monotonic()
            try:
                outcome: int | str = _encode(server.url, rid, timeout=120).status_code
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            results.append((rid, start, time.monotonic(), outcome))
            n += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(3)
    killed_at = time.monotonic()
    os.kill(old_worker, signal.SIGKILL)  # the worker, not the arbiter
    ready_at, not_ready = None, 0
    while ready_at is None and time.monotonic() - killed_at < 240:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                ready_at = time.monotonic()
                break
        except httpx.HTTPError:
            pass
        not_ready += 1
        time.sleep(0.05)
    assert ready_at is not None, server.log()
    new_workers = _worker_pids(server)
    time.sleep(3)  # load on the new worker
    stop.set()
    for t in threads:
        t.join(timeout=150)

    assert new_workers and old_worker not in new_workers, "the server started a new worker"
    assert not_ready > 0, "/readyz did not answer ready while no worker held the model"
    failed = [r for r in results if r[3] != 200]
    in_flight = [r for r in results if r[1] < killed_at < r[2]]
    # a 503 is the service's answer to a request it cannot take now (no worker holds the model, or
    # shed as overloaded: the cold first batch, the backlog the new worker meets): a client retries
    # it; any other failure is a request that was in flight when the worker died
    shed = [r for r in failed if r[3] == 503]
    restarting = [r for r in shed if killed_at <= r[1] <= ready_at + RESTART_BACKLOG_S]
    died_with_worker = [r for r in failed if r not in shed]
    assert len(died_with_worker) <= CLIENTS, failed
    assert {r[0] for r in died_with_worker} <= {r[0] for r in in_flight}, failed
    assert any(r[1] > ready_at and r[3] == 200 for r in results), "answers again after the restart"
    logged = set(read_log(log_dir)["request"])
    answered = {hash_request_id(r[0]) for r in results if r[3] == 200}
    assert answered <= logged, "every answered request has its rows in the log"
    lost = {hash_request_id(r[0]) for r in results} - logged
    assert len(lost) <= len(in_flight), (len(lost), len(in_flight))
    record_measure(
        "bentoml worker killed",
        ready_again_after_s=round(ready_at - killed_at, 1),
        requests=len(results),
        in_flight=len(in_flight),
        failed=len(failed),
        answered_503=len(shed),
        answered_503_while_restarting=len(restarting),
        without_log_rows=len(lost),
    )
