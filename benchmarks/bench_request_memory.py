"""Memory and health latency of a served worker under worst-case image requests.

    python benchmarks/bench_request_memory.py [--model-dir models/regionmed] [--concurrency 3]
                                              [--results benchmarks/results/request_memory.json]

A real ``bentoml serve`` of ``regionmed.serving.service:RegionMedService`` (this checkout's code and
``params.yaml``; model as in ``bench_serving.py``: ``--model-dir`` or an untrained model of the
params' architecture). For each scenario, ``--concurrency`` clients each send one ``encode_image``
request at the same moment while this script polls ``/readyz`` (every 50 ms, 5 s timeout) and samples
the RSS of the server's whole process tree (every 50 ms). Reported per scenario: the answers'
status codes (and the error of a refused one), peak RSS, RSS before and 2 s after the load (and
the difference), ``/readyz`` latency (median, max) while the requests ran.

Scenarios (all inside the documented per-call limits: ``max_images_per_call`` 32, ``max_image_pixels``
16.7 M, ``max_upload_bytes`` 10 MB):

- ``32 x 4096^2 PNG``: 32 grayscale 4096 x 4096 PNGs per request (flat blocks: they compress to kB);
- ``4 x 4096^2 PNG``: 4 of them (64 M pixels, the default ``max_request_pixels``);
- ``4 x 4096^2 JPEG``: 4 RGB JPEGs of that size.

Client and server share the machine's cores. Compare numbers within one machine. The figures go to
``--results`` (default benchmarks/results/request_memory.json).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from regionmed.env import configure_environment
from regionmed.publish.record import Record, results_option

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_serving import make_model, start_server, stop_server

REPO = Path(__file__).resolve().parents[1]

SIDE = 4096
SAMPLE_S = 0.05


def big_image(fmt: str, seed: int) -> bytes:
    """A ``SIDE`` x ``SIDE`` image of flat blocks: it compresses to a few kB, so that 32 of them fit in
    one request under ``max_upload_bytes`` (the worst case per byte sent)."""
    from PIL import Image

    y, x = np.mgrid[0:SIDE, 0:SIDE]
    arr = ((x // (256 + 32 * seed) * 37 + y // 384 * 53) % 200 + 30).astype(np.uint8)
    buf = io.BytesIO()
    if fmt == "PNG":
        Image.fromarray(arr, "L").save(buf, format="PNG", compress_level=9)
    else:
        Image.fromarray(np.stack([arr, arr, 255 - arr], axis=2), "RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def tree_rss(pid: int) -> int:
    """RSS of ``pid`` and its descendants (bentoml serve -> circus arbiter -> worker)."""
    pids = {pid}
    for _ in range(3):
        res = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", ",".join(map(str, pids))],
            capture_output=True,
            text=True,
            check=False,
        )
        pids |= {int(p) for p in res.stdout.split()}
    out = subprocess.run(
        ["ps", "-o", "rss=", "-p", ",".join(map(str, pids))], capture_output=True, text=True, check=False
    )
    return sum(int(v) for v in out.stdout.split()) * 1024


def run_scenario(url: str, pid: int, images: list[bytes], concurrency: int) -> dict:
    files = [("images", (f"{i}.img", data, "application/octet-stream")) for i, data in enumerate(images)]
    before = tree_rss(pid)
    answers: list[tuple[int, str]] = []
    peak, readyz = before, []

    def client() -> None:
        try:
            r = httpx.post(f"{url}/encode_image", files=files, timeout=600)
            answers.append((r.status_code, "" if r.status_code == 200 else r.text[:160]))
        except httpx.HTTPError as exc:
            answers.append((0, type(exc).__name__))

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        peak = max(peak, tree_rss(pid))
        start = time.perf_counter()
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{url}/readyz", timeout=5)
        readyz.append(time.perf_counter() - start)
        time.sleep(SAMPLE_S)
    for t in threads:
        t.join()
    time.sleep(2.0)
    after = tree_rss(pid)
    ms = np.asarray(readyz) * 1000 if readyz else np.asarray([np.nan])
    return {
        "statuses": sorted(a[0] for a in answers),
        "errors": sorted({a[1] for a in answers if a[1]}),
        "request_mb": round(sum(len(d) for d in images) / 1e6, 2),
        "rss_before_mb": round(before / 2**20),
        "rss_peak_mb": round(peak / 2**20),
        "rss_after_mb": round(after / 2**20),
        "rss_after_minus_before_mb": round((after - before) / 2**20),
        "readyz_p50_ms": round(float(np.median(ms)), 1),
        "readyz_max_ms": round(float(ms.max()), 1),
        "readyz_polls": len(readyz),
    }


def main() -> None:
    configure_environment()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--concurrency", type=int, default=3)
    results_option(ap, "request_memory", "--out")
    args = ap.parse_args()
    record = Record("request_memory")

    png = [big_image("PNG", s) for s in range(4)]
    jpeg = [big_image("JPEG", s) for s in range(4)]
    scenarios = {
        "32 x 4096^2 PNG": [png[i % 4] for i in range(32)],
        "4 x 4096^2 PNG": png,
        "4 x 4096^2 JPEG": jpeg,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir, _ = make_model(work, args.model_dir)
        proc, url = start_server(model_dir, work)
        results = {}
        try:
            httpx.post(
                f"{url}/encode_image", files=[("images", ("w.png", _small_png(), "image/png"))], timeout=120
            )  # warm-up: the model's first call
            idle = []
            for _ in range(20):  # /readyz with nothing else to do: the machine's own floor
                start = time.perf_counter()
                httpx.get(f"{url}/readyz", timeout=5)
                idle.append(time.perf_counter() - start)
                time.sleep(SAMPLE_S)
            results["idle"] = {
                "readyz_p50_ms": round(float(np.median(idle)) * 1000, 1),
                "readyz_max_ms": round(float(np.max(idle)) * 1000, 1),
            }
            print("idle", json.dumps(results["idle"]), flush=True)
            for name, images in scenarios.items():
                results[name] = run_scenario(url, proc.pid, images, args.concurrency)
                print(name, json.dumps(results[name]), flush=True)
        finally:
            stop_server(proc)
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False
    ).stdout.strip()
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "commit": rev,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
        "concurrency": args.concurrency,
    }
    print(json.dumps(meta))
    idle = results.pop("idle")
    print(f"/readyz idle: p50 {idle['readyz_p50_ms']} ms, max {idle['readyz_max_ms']} ms")
    print(
        f"\n| scenario (x{args.concurrency} concurrent) | statuses | peak RSS MB | RSS before / after MB "
        "| /readyz p50 / max ms |"
    )
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} ({r['request_mb']} MB) | {r['statuses']} | {r['rss_peak_mb']} | "
            f"{r['rss_before_mb']} / {r['rss_after_mb']} | {r['readyz_p50_ms']} / {r['readyz_max_ms']} |"
        )
    scenarios = [{"scenario": name, **r} for name, r in results.items()]
    record.write({"concurrency": args.concurrency, "idle": idle, "scenarios": scenarios}, args.results)


def _small_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


if __name__ == "__main__":
    main()
