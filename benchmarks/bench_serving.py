"""Serving throughput and latency: `encode_image` and `zero_shot` over HTTP vs the same model in-process.

    python benchmarks/bench_serving.py [--model-dir models/regionmed] [--seconds 15] [--concurrency 1 8 32]
                                       [--results benchmarks/results/serving.json]

- Model: ``--model-dir`` (e.g. ``models/regionmed`` after ``dvc repro``); by default an untrained
  model with the architecture of ``params.yaml``'s ``model:`` section (the same compute as a
  trained one) on a tokenizer trained on a small synthetic corpus.
- Inputs: the 128 px PNGs of a small synthetic corpus (what the model was trained on), one image
  per request; ``zero_shot`` with 5 labels (their class embeddings are cached after the first call).
- ``--images-per-request k`` (encode_image): k images per request, in-process batch C x k.
- HTTP: a real ``bentoml serve`` of ``regionmed.serving.service:RegionMedService`` on a free loopback
  port (params.yaml's ``serving:`` section: adaptive batching up to ``max_batch_size``), ``C``
  concurrent clients (httpx, one connection each) for ``--seconds`` per cell after a warm-up.
  Latency is per request as the client sees it; throughput is images per second.
- In-process: the same bytes through the same :class:`~regionmed.inference.engine.Engine` (decode,
  letterbox, encode; for zero-shot also the probabilities) in batches of ``C`` images, so that
  "concurrency C over HTTP" faces "batch size C in-process"; latency is per batch call.

Client and server share the machine's cores. Prints a Markdown table and writes the figures to
``--results`` (default benchmarks/results/serving.json); compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from regionmed.env import configure_environment
from regionmed.publish.record import Record, results_option
from regionmed.serving.container import free_port

REPO = Path(__file__).resolve().parents[1]
LABELS = ["pleural effusion", "pneumonia", "cardiomegaly", "brain lesion", "no finding"]
WARMUP_REQUESTS = 40  # BentoML's dispatcher trains its latency model on the first ~11 calls


def make_model(work: Path, model_dir: str | None) -> tuple[Path, list[bytes]]:
    """The model folder to serve and the PNG bytes to send."""
    from regionmed.corpus.build import build_corpus
    from regionmed.corpus.schema import read_manifest
    from regionmed.corpus.shards import image_bytes
    from regionmed.params import load_params

    params = load_params(REPO / "params.yaml", {"corpus": {"synthetic": {"n_images": 96}}})
    build_corpus(params, work / "corpus", progress=False)
    images = [image_bytes(work / "corpus" / p) for p in read_manifest(work / "corpus")["image_path"]]
    if model_dir:
        return Path(model_dir), images
    import torch

    from regionmed.model.io import export_model
    from regionmed.model.regionclip import RegionCLIP
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.training.texts import corpus_texts

    tokenizer = train_wordpiece_tokenizer(corpus_texts(work / "corpus"), params.model.text.vocab_size)
    torch.manual_seed(0)
    model = RegionCLIP(params.model, vocab_size=len(tokenizer))
    export_model(model, tokenizer, params.model, work / "model", {"phase": "benchmark (untrained)"})
    return work / "model", images


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q)) if values else float("nan")


# ---- in-process -----------------------------------------------------------------------------------
def in_process(model_dir: Path, images: list[bytes], batch: int, seconds: float, endpoint: str) -> dict:
    from regionmed.inference.engine import Engine
    from regionmed.inference.uploads import decode_upload

    engine = Engine.from_dir(model_dir)
    class_emb = engine.class_embeddings(LABELS)

    def call(chunk: list[bytes]):
        prepared = [engine.prepare(decode_upload(b, 16_777_216)) for b in chunk]
        emb = engine.encode_images(prepared)
        if endpoint == "zero_shot":
            engine.probabilities(emb, class_emb)

    chunks = [[images[(i * batch + j) % len(images)] for j in range(batch)] for i in range(64)]
    for chunk in chunks[:3]:
        call(chunk)
    latencies, n, start = [], 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        call(chunks[n % len(chunks)])
        latencies.append(time.perf_counter() - t)
        n += 1
    elapsed = time.perf_counter() - start
    return {
        "images_per_s": n * batch / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "calls": n,
    }


# ---- over HTTP ------------------------------------------------------------------------------------
def start_server(model_dir: Path, work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "REGIONMED_MODEL_DIR": str(model_dir),
        "REGIONMED_INDEX_DIR": str(work / "no-index"),
        "REGIONMED_EMBEDDING_LOG_DIR": str(work / "log"),
        "BENTOML_HOME": str(work / "bentoml"),
        "PYTHONPATH": str(REPO),
    }
    env.pop("REGIONMED_API_KEY", None)
    env.pop("REGIONMED_PARAMS", None)
    log = open(work / "server.log", "wb")  # noqa: SIM115  (the server's lifetime)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "regionmed.serving.service:RegionMedService",
            "--port",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.perf_counter() + 240
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bentoml serve exited:\n{(work / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop_server(proc)
    raise SystemExit("bentoml serve was not ready in 240 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def raw_request(endpoint: str, image: bytes | list[bytes], host: str) -> bytes:
    """The whole HTTP/1.1 request (multipart built by httpx), encoded once per image: the load
    generator shares the CPU with the server, so it must cost as little as possible per request."""
    if endpoint == "encode_image":
        group = image if isinstance(image, list) else [image]
        route, kwargs = (
            "/encode_image",
            {"files": [("images", (f"{i}.png", im, "image/png")) for i, im in enumerate(group)]},
        )
    else:
        route, kwargs = (
            "/zero_shot",
            {"files": [("image", ("a.png", image, "image/png"))], "data": {"labels": json.dumps(LABELS)}},
        )
    body = httpx.Request("POST", "http://x" + route, **kwargs)
    content = body.read()
    head = (
        f"POST {route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {body.headers['content-type']}\r\n"
        f"Content-Length: {len(content)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + content


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client (what wrk does): send prepared bytes, read one response."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
        }
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                parts.append(await self.reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def over_http(
    url: str, images: list[bytes], concurrency: int, seconds: float, endpoint: str, per_request: int = 1
) -> dict:
    latencies: list[float] = []
    errors = 0
    stop = [False]
    host, port = url.removeprefix("http://").split(":")
    if per_request == 1:
        requests = [raw_request(endpoint, image, f"{host}:{port}") for image in images]
    else:  # encode_image only: several images per request
        requests = [
            raw_request(
                endpoint, [images[(i + j) % len(images)] for j in range(per_request)], f"{host}:{port}"
            )
            for i in range(len(images))
        ]

    async def client(i: int, timed: bool, count: int | None = None) -> None:
        nonlocal errors
        conn = RawConnection(host, int(port))
        try:
            k = i
            while not stop[0] and (count is None or k - i < count * concurrency):
                t = time.perf_counter()
                status, body = await asyncio.wait_for(conn.request(requests[k % len(requests)]), 120)
                if status != 200 or not body.startswith(b"[" if endpoint == "encode_image" else b"{"):
                    errors += 1
                elif timed:
                    latencies.append(time.perf_counter() - t)
                k += concurrency
        finally:
            await conn.close()

    await asyncio.gather(
        *(client(i, False, max(1, WARMUP_REQUESTS // concurrency)) for i in range(concurrency))
    )

    async def timer() -> None:
        await asyncio.sleep(seconds)
        stop[0] = True

    start = time.perf_counter()
    await asyncio.gather(timer(), *(client(i, True) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    return {
        "images_per_s": len(latencies) * per_request / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "requests": len(latencies),
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--model-dir", default=None, help="an exported model (default: untrained, params.yaml's architecture)"
    )
    ap.add_argument("--seconds", type=float, default=15.0, help="per cell")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--endpoints", nargs="+", default=["encode_image", "zero_shot"])
    ap.add_argument(
        "--images-per-request",
        type=int,
        default=1,
        help="encode_image only: images per request (in-process batch = concurrency x this)",
    )
    results_option(ap, "serving", "--out")
    args = ap.parse_args()
    record = Record("serving")
    configure_environment()
    serving = yaml.safe_load((REPO / "params.yaml").read_text()).get("serving", {})
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        work = Path(tmp)
        model_dir, images = make_model(work, args.model_dir)
        threads = serving.get("torch_threads")
        if threads:  # the same intra-op threads as the server's worker
            import torch

            torch.set_num_threads(threads)
        results: dict = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "load_average_before": os.getloadavg(),
            "batching": serving.get("batching"),
            "torch_threads": threads,
            "cells": [],
        }
        proc, url = start_server(model_dir, work)
        try:  # each cell: in-process, then over HTTP right after (the machine's load drifts)
            for endpoint in args.endpoints:
                for c in args.concurrency:
                    k = args.images_per_request if endpoint == "encode_image" else 1
                    cell = {
                        "endpoint": endpoint,
                        "concurrency": c,
                        "images_per_request": k,
                        "in_process": in_process(model_dir, images, c * k, args.seconds, endpoint),
                    }
                    results["cells"].append(cell)
                    cell["http"] = asyncio.run(over_http(url, images, c, args.seconds, endpoint, k))
                    cell["ratio"] = cell["http"]["images_per_s"] / cell["in_process"]["images_per_s"]
                    print(
                        f"{endpoint} c={c}: http {cell['http']['images_per_s']:.1f}/s in-process "
                        f"{cell['in_process']['images_per_s']:.1f}/s ratio {cell['ratio']:.2f}",
                        file=sys.stderr,
                    )
        finally:
            stop_server(proc)
        results["load_average_after"] = os.getloadavg()
    print(
        f"\nMachine: {results['machine']}; load average before {results['load_average_before'][0]:.1f}, "
        f"after {results['load_average_after'][0]:.1f}; batching {results['batching']}; "
        f"torch threads {results['torch_threads']}\n"
    )
    print(
        "| endpoint | concurrency x images per request / batch | HTTP images/s | HTTP p50 ms | HTTP p99 ms "
        "| in-process images/s | in-process p50 ms (per batch) | in-process p99 ms | HTTP / in-process |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for cell in results["cells"]:
        h, p = cell["http"], cell["in_process"]
        per_batch = cell["concurrency"] * cell["images_per_request"]
        shape = f"{cell['concurrency']} x {cell['images_per_request']} / {per_batch}"
        print(
            f"| {cell['endpoint']} | {shape} | {h['images_per_s']:.1f} | {h['p50_ms']:.1f} | "
            f"{h['p99_ms']:.1f} | {p['images_per_s']:.1f} | {p['p50_ms']:.1f} | {p['p99_ms']:.1f} | "
            f"{cell['ratio']:.2f}x |"
        )
    record.write(results, args.results)


if __name__ == "__main__":
    main()
