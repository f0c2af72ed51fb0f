"""The demo page's budgets: page load, a zero-shot round trip through the page, API latency with
and without the page, and what the page weighs.

    python benchmarks/bench_demo_page.py [--model-dir models/regionmed] [--loads 15] [--round-trips 30]
                                         [--api-calls 120] [--screenshot docs/demo-page.png] [--results PATH]

- Model: ``--model-dir`` (after ``dvc repro``), else an untrained model of ``params.yaml``'s
  architecture (the same compute) on a tokenizer of a small synthetic corpus (``bench_serving.make_model``);
  a retrieval index of that corpus's test split; images: the corpus's PNGs.
- Servers: two real ``bentoml serve regionmed.serving.service:RegionMedService`` on free loopback
  ports with this checkout's ``params.yaml``, one with ``serving.demo_page: true``, one with ``false``.
- Browser: headless Debian Chromium through Selenium (``tests/helpers/browser.py``), cache off, a
  1280x800 viewport. Page load: Navigation Timing of ``/ui/`` (first contentful paint and the load
  event, i.e. every asset fetched and the scripts run), ``--loads`` fresh loads. Zero-shot round
  trip: "Classify" clicked → the bars replaced, measured in the page (``performance.now``), and the
  ``zero_shot`` fetch's own duration (Resource Timing), ``--round-trips`` times.
- API latency: ``zero_shot`` (5 labels, one PNG) over httpx, sequential, ``--api-calls`` calls per
  server after 20 warm-up calls, the two servers (page mounted / not mounted) taking turns in 6
  rounds (the order flipped each round); once with no browser running, once with the page open (idle) in
  Chromium.

- The page's only code on an API request's path: the key middleware's open-prefix test, timed
  in-process (µs per request, best of 5 x 20000 calls, no-op app behind it).

Client, browser and server share the machine's cores; compare figures of one run. The figures go
to ``--results`` (default benchmarks/results/demo_page.json).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

# each goes in front: benchmarks/ ends up first, then tests/ (its helpers package), then the rest
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_serving import LABELS, make_model
from helpers.browser import set_viewport, start_chromium, stop_chromium, wait_for
from helpers.servers import Server, server_env

from regionmed.env import configure_environment
from regionmed.publish.record import Record, results_option
from regionmed.serving.demo import DEMO_DIR

REPO = Path(__file__).resolve().parents[1]

WARMUP = 20


def page_weight() -> dict:
    files = {p.name: p.read_bytes() for p in sorted(DEMO_DIR.iterdir()) if p.is_file()}
    return {
        "files": {n: len(b) for n, b in files.items()},
        "bytes": sum(map(len, files.values())),
        "gzip_bytes": sum(len(gzip.compress(b, 9)) for b in files.values()),
    }


def serve(work: Path, model_dir: Path, index_dir: Path, demo_page: bool) -> Server:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["serving"]["demo_page"] = demo_page
    params_file = work / f"params-demo-{demo_page}.yaml"
    params_file.write_text(yaml.safe_dump(params))
    env = server_env(
        REGIONMED_PARAMS=str(params_file),
        REGIONMED_MODEL_DIR=str(model_dir),
        REGIONMED_INDEX_DIR=str(index_dir),
        REGIONMED_EMBEDDING_LOG_DIR=str(work / "log"),
        BENTOML_HOME=str(work / "bentoml"),
    )
    server = Server(
        ["regionmed.serving.service:RegionMedService"], env, REPO, work / f"server-{demo_page}.log"
    )
    server.wait_ready(300)
    return server


def api_latency(urls: dict[str, str], image: bytes, calls: int, rounds: int = 6) -> dict[str, dict]:
    """``zero_shot`` latency of each server, sequential calls interleaved in ``rounds`` (the shared
    machine's load drifts: each server sees the same load)."""
    files = [("image", ("a.png", image, "image/png"))]
    data = {"labels": json.dumps(LABELS)}
    times: dict[str, list[float]] = {name: [] for name in urls}
    clients = {name: httpx.Client(base_url=url, timeout=60) for name, url in urls.items()}
    try:
        for client in clients.values():
            for _ in range(WARMUP):
                client.post("/zero_shot", files=files, data=data).raise_for_status()
        per_round = max(1, calls // rounds)
        for r in range(rounds):  # the order flips each round: neither server always goes first
            for name, client in list(clients.items()) if r % 2 == 0 else list(clients.items())[::-1]:
                for _ in range(per_round):
                    t = time.perf_counter()
                    client.post("/zero_shot", files=files, data=data).raise_for_status()
                    times[name].append((time.perf_counter() - t) * 1000)
    finally:
        for client in clients.values():
            client.close()
    return {name: summary(ms) for name, ms in times.items()}


def summary(ms: list[float]) -> dict:
    ms = sorted(ms)
    return {
        "n": len(ms),
        "p50_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, int(0.95 * len(ms)))],
        "max_ms": ms[-1],
    }


def middleware_overhead(calls: int = 20000) -> dict[str, float]:
    """Microseconds per request of the key/size middleware on ``POST /zero_shot`` (key set, no-op app),
    without and with the page's open prefix: the only per-request code the page adds to an API call."""
    import asyncio

    from regionmed.serving.middleware import RequestGuardMiddleware

    os.environ["BENCH_DEMO_KEY"] = "k"
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/zero_shot",
        "headers": [(b"authorization", b"Bearer k"), (b"content-length", b"10")],
    }

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def noop(message=None):
        return {"type": "http.request", "body": b"", "more_body": False}

    async def run(guard) -> float:
        t = time.perf_counter()
        for _ in range(calls):
            await guard(scope, noop, noop)
        return (time.perf_counter() - t) / calls * 1e6

    out: dict[str, list[float]] = {"without the page": [], "with the page": []}
    for _ in range(5):
        out["without the page"].append(asyncio.run(run(RequestGuardMiddleware(app, 1000, "BENCH_DEMO_KEY"))))
        out["with the page"].append(
            asyncio.run(run(RequestGuardMiddleware(app, 1000, "BENCH_DEMO_KEY", open_prefixes=("/ui",))))
        )
    return {name: min(v) for name, v in out.items()}


def page_loads(driver, url: str, n: int) -> dict:
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    fcp, load = [], []
    for _ in range(n):
        driver.get("about:blank")
        driver.get(f"{url}/ui/")
        timing = wait_for(
            driver,
            "const n = performance.getEntriesByType('navigation')[0];"
            "const p = performance.getEntriesByName('first-contentful-paint')[0];"
            "return n && n.loadEventEnd > 0 && p ? [p.startTime, n.loadEventEnd] : null",
        )
        fcp.append(timing[0])
        load.append(timing[1])
    return {"first_contentful_paint": summary(fcp), "load_event": summary(load)}


def page_round_trips(driver, image_path: Path, n: int) -> dict:
    driver.find_element("id", "file").send_keys(str(image_path))
    wait_for(driver, "return document.querySelectorAll('#retrieve-results tbody tr').length > 0")
    clicks, fetches = [], []
    for _ in range(n):
        result = driver.execute_async_script(
            "const done = arguments[arguments.length - 1], list = document.getElementById('zs-bars');"
            "performance.clearResourceTimings();"
            "const t = performance.now();"
            "new MutationObserver((m, obs) => { if (list.children.length) { obs.disconnect();"
            "  const e = performance.getEntriesByType('resource').filter(r => r.name.endsWith('/zero_shot'));"
            "  done([performance.now() - t, e.length ? e[e.length - 1].duration : null]); } })"
            ".observe(list, {childList: true});"
            "document.getElementById('zs-run').click();"
        )
        clicks.append(result[0])
        if result[1] is not None:
            fetches.append(result[1])
    return {"click_to_bars": summary(clicks), "zero_shot_fetch": summary(fetches)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", default=None)
    ap.add_argument(
        "--not-packaged",
        action="store_true",
        help="--model-dir is not the packaged model (e.g. models/region): show no repo metrics for it",
    )
    ap.add_argument("--loads", type=int, default=15)
    ap.add_argument("--round-trips", type=int, default=30)
    ap.add_argument("--api-calls", type=int, default=120)
    ap.add_argument("--screenshot", default=None, help="save the page after a full run through it (PNG)")
    results_option(ap, "demo_page", "--out")
    args = ap.parse_args()
    record = Record("demo_page")
    configure_environment()
    from regionmed.inference.engine import Engine
    from regionmed.inference.index import build_index

    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average_before": os.getloadavg(),
        "weight": page_weight(),
        "middleware_us": middleware_overhead(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        work = Path(tmp)
        model_dir, images = make_model(work, args.model_dir)
        if args.model_dir is None or args.not_packaged:
            # a folder without package.json gets this checkout's metrics/eval.json in `metadata`: not its own
            if args.model_dir:
                model_dir = Path(shutil.copytree(model_dir, work / "model-copy"))
            (model_dir / "package.json").write_text(
                json.dumps({"note": "not the packaged model: no metrics, no gate"})
            )
        build_index(Engine.from_dir(model_dir), work / "corpus", "test").save(work / "index")
        image_path = work / "scan.png"
        image_path.write_bytes(images[0])
        server = serve(work, model_dir, work / "index", demo_page=True)
        bare = serve(work, model_dir, work / "index", demo_page=False)
        urls = {"page mounted": server.url, "page not mounted": bare.url}
        driver = None
        try:
            assert httpx.get(f"{bare.url}/ui/", timeout=10).status_code == 404
            results["api_no_browser"] = api_latency(urls, images[0], args.api_calls)
            driver = start_chromium()
            set_viewport(driver, 1280, 800)
            results["page_load"] = page_loads(driver, server.url, args.loads)
            results["page_zero_shot"] = page_round_trips(driver, image_path, args.round_trips)
            results["api_page_open"] = api_latency(
                urls, images[0], args.api_calls
            )  # the page idle in Chromium
            if args.screenshot:
                driver.find_element("id", "ground-run").click()
                wait_for(
                    driver,
                    "return document.querySelectorAll('#ground-results li').length > 0 && "
                    "!document.getElementById('ground-panel').hasAttribute('aria-busy')",
                )
                driver.find_element("id", "region-run").click()
                wait_for(driver, "return document.querySelectorAll('#region-results li').length > 0")
                set_viewport(driver, 1280, 1280)  # the whole page in one picture
                driver.execute_script("window.scrollTo(0, 0)")
                driver.save_screenshot(args.screenshot)
        finally:
            if driver is not None:
                stop_chromium(driver)
            server.stop()
            bare.stop()
    results["load_average_after"] = os.getloadavg()
    report(results)
    table = [{"measure": name, **s} for name, s in measures(results)]
    record.write({**results, "rows": table}, args.results)


def measures(r: dict) -> list[tuple[str, dict]]:
    return [
        ("page load: first contentful paint", r["page_load"]["first_contentful_paint"]),
        ("page load: load event (all assets, scripts run)", r["page_load"]["load_event"]),
        ("page: Classify click → bars drawn", r["page_zero_shot"]["click_to_bars"]),
        ("page: zero_shot fetch (Resource Timing)", r["page_zero_shot"]["zero_shot_fetch"]),
        *((f"API zero_shot, {name}, no browser", s) for name, s in r["api_no_browser"].items()),
        *((f"API zero_shot, {name}, the page open in Chromium", s) for name, s in r["api_page_open"].items()),
    ]


def report(r: dict) -> None:
    w = r["weight"]
    print(
        f"\nMachine: {r['machine']}; load average {r['load_average_before'][0]:.1f} before, "
        f"{r['load_average_after'][0]:.1f} after"
    )
    print(f"Page weight: {w['bytes']} bytes ({w['gzip_bytes']} gzipped): {w['files']}")
    print(
        "Key/size middleware per API request (best of 5 x 20000, no-op app): "
        + ", ".join(f"{k} {v:.2f} us" for k, v in r["middleware_us"].items())
        + "\n"
    )
    print("| measure | n | p50 ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|")
    for name, s in measures(r):
        print(f"| {name} | {s['n']} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} | {s['max_ms']:.1f} |")


if __name__ == "__main__":
    main()
