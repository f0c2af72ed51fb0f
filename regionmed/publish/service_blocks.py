"""Blocks of BENCHMARKS.md, the service's areas: serving, request memory, the demo page, the container
and drift monitoring, each from the results file its script writes."""

from __future__ import annotations

from regionmed.publish.derive import fmt, reaches, within
from regionmed.publish.render import Block

R = "benchmarks/results"


def _serving(data: dict) -> dict:
    cells = [
        {**c, "batch": c["concurrency"] * c["images_per_request"]}
        for stem in ("serving", "serving_multi_image")
        for c in data[stem]["figures"]["cells"]
    ]
    at32 = {
        c["endpoint"]: c["ratio"] for c in cells if c["concurrency"] == 32 and c["images_per_request"] == 1
    }
    text = ", ".join(f"{r:.2f}x (`{e}`)" for e, r in at32.items())
    verdict = reaches(min(at32.values()), 0.7) if at32 else "not measured against"
    return {"cells": cells, "at32": text, "verdict": verdict}


def _memory(data: dict) -> dict:
    s = data["figures"]["scenarios"]
    held = max(r["rss_after_minus_before_mb"] for r in s)
    slowest = max(r["readyz_max_ms"] for r in s)
    return {"held": held, "held_verdict": within(held, 200), "slowest": slowest}


def _demo(data: dict) -> dict:
    rows = {r["measure"].split(" (")[0]: r for r in data["figures"]["rows"]}
    load = rows["page load: load event"]["p95_ms"]
    click = rows["page: Classify click → bars drawn"]["p95_ms"]
    files = data["figures"]["weight"]["files"]
    mw = data["figures"]["middleware_us"]
    return {
        "load": load,
        "load_verdict": within(load, 1000),
        "click": click,
        "click_verdict": within(click, 300),
        "files_text": ", ".join(f"`{n}` {b:,}" for n, b in files.items()),
        "n_files": len(files),
        "middleware": ", ".join(f"{k} {v:.2f} µs" for k, v in mw.items()),
    }


def _container(data: dict) -> dict:
    f = data["figures"]
    return {"image_mb": f["image_bytes"] / 1e6, "verdict": reaches(f["container_over_host"], 0.9)}


def _drift(data: dict) -> dict:
    rows = data["figures"]["rows"]
    checks = [{**r, "drifted_text": ", ".join(r.get("drifted", [])) or "–"} for r in rows if "check_s" in r]
    log = next((r for r in rows if "run_monitor_s" in r), None)
    log_text = (
        f"From a {log['log_mb']} MB embedding log of {log['rows']:,} records (written in {log['write_s']} "
        f"s), "
        f"the whole `run_monitor` (read, checks, HTML, JSON) took {log['run_monitor_s']} s "
        f"({log['status']}): "
        f"{within(log['run_monitor_s'], 60)} the budget of a minute on 2 cores."
        if log
        else ""
    )
    scores = [
        f"{r['case']}: domain-classifier AUC {fmt(r['scores'].get('embeddings/model'))}, "
        f"MMD {fmt(r['scores'].get('embeddings/mmd'), '.4f')}"
        for r in checks
        if r.get("scores") and r.get("plot") == "pca"
    ]
    return {
        "checks": checks,
        "log_text": log_text,
        "scores": f" Scores ({'; '.join(scores)})." if scores else "",
    }


SERVICE_BLOCKS = {
    "bench-serving": Block(
        (f"{R}/serving.json", f"{R}/serving_multi_image.json"),
        "{serving/run}\n\n{serving_multi_image/run}\n\n| endpoint | concurrency x images per request | HTTP "
        "images/s | HTTP p50 ms | HTTP p99 ms | in-process images/s (batch) | in-process p50 ms per batch | "
        "HTTP / in-process |\n|---|---:|---:|---:|---:|---:|---:|---:|\n{ROWS}\n\nAt concurrency 32, one "
        "image per request, HTTP gives {at32} of the in-process throughput: {verdict} the budget of at "
        "least 0.7x.",
        rows="cells",
        row="| {endpoint} | {concurrency} x {images_per_request} | {http/images_per_s:.1f} | "
        "{http/p50_ms:.1f} | {http/p99_ms:.1f} | {in_process/images_per_s:.1f} ({batch}) | "
        "{in_process/p50_ms:.1f} | {ratio:.2f}x |",
        derive=_serving,
    ),
    "bench-request-memory": Block(
        (f"{R}/request_memory.json",),
        "{run}\n\n| scenario (x{figures/concurrency} concurrent `encode_image`) | request MB | statuses | "
        "peak "
        "RSS MB | RSS before / after MB | held after the load MB | `/readyz` p50 / max ms |\n"
        "|---|---:|---|---:|---|---:|---|\n{ROWS}\n\nThe server holds at most {held:+} MB after a scenario "
        "({held_verdict} the budget of 200 MB); `/readyz` answered within {slowest:.0f} ms at worst while "
        "the requests ran (budget: 100 ms on a quiet machine).",
        rows="figures/scenarios",
        row="| {scenario} | {request_mb} | {statuses} | {rss_peak_mb} | {rss_before_mb} / {rss_after_mb} | "
        "{rss_after_minus_before_mb:+} | {readyz_p50_ms:.0f} / {readyz_max_ms:.0f} |",
        derive=_memory,
    ),
    "bench-demo-page": Block(
        (f"{R}/demo_page.json",),
        "{run}\n\n| measure | n | p50 ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|\n{ROWS}\n\n"
        "Page load (load event) p95 {load:.0f} ms: {load_verdict} the budget of 1 s; Classify click → bars "
        "p95 {click:.0f} ms: {click_verdict} the budget of 300 ms. Weight: {figures/weight/bytes:,} bytes in "
        "{n_files} files ({files_text}), {figures/weight/gzip_bytes:,} gzipped. The key middleware per API "
        "request (best of 5 x 20000 calls, no-op app): {middleware}.",
        rows="figures/rows",
        row="| {measure} | {n} | {p50_ms:.1f} | {p95_ms:.1f} | {max_ms:.1f} |",
        derive=_demo,
    ),
    "bench-container": Block(
        (f"{R}/container.json",),
        "{run}\n\n| figure | value |\n|---|---|\n| image size (`docker image inspect .Size`) | "
        "{image_mb:,.0f} MB |\n"
        "| build, cold Docker cache (`docker builder prune -af` first; base image kept) | "
        "{figures/build_cold_s:.0f} s |\n| build, warm cache (model packaged again: a new Bento, same "
        "packages) | {figures/build_warm_s:.0f} s |\n| `docker run` → `/readyz` 200 (3 runs) | "
        "{figures/ready_s:.1f} s (median {figures/ready_median_s:.1f} s) |\n| `encode_image`, "
        "{figures/concurrency} clients, host `bentoml serve` of the same Bento | "
        "{figures/host_rounds_images_per_s:.1f} images/s (mean {figures/host_images_per_s:.1f}; p50 "
        "{figures/host_p50_ms:.0f} ms) |\n| `encode_image`, {figures/concurrency} clients, through the "
        "container | {figures/container_rounds_images_per_s:.1f} images/s (mean "
        "{figures/container_images_per_s:.1f}; p50 {figures/container_p50_ms:.0f} ms) |\n| container / host "
        "| {figures/container_over_host:.2f} ({verdict} the budget: at most 10% slower) |",
        derive=_container,
    ),
    "bench-drift": Block(
        (f"{R}/drift.json",),
        "{run}\n\n| case | plot | rows per side | sampled | PCA | checks (s) | HTML (s) | drifted |\n"
        "|---|---|---|---:|---:|---:|---:|---|\n{ROWS}\n\n{log_text}{scores}",
        rows="checks",
        row="| {case} | {plot} | {rows:,} x {dim} | {sample_rows:,} | {pca} | {check_s:.2f} | {html_s:.2f} | "
        "{drifted_text} |",
        derive=_drift,
    ),
}
