"""The Bento's Docker image: size, build time (cold and warm Docker cache), `docker run` → /readyz,
and `encode_image` throughput through the container vs `bentoml serve` of the same Bento on the host.

    python benchmarks/bench_container.py [--seconds 20] [--concurrency 32] [--rounds 2] [--offline | --online]
                                         [--skip-cold] [--results PATH]

- Model: untrained, with the architecture of params.yaml's ``model:`` section (the compute of a trained
  one), packaged by the package stage (``regionmed.serving.stage.run``) with its retrieval index into a
  scratch store.
- Cold build: ``docker builder prune -af`` first (no layer and no uv download cache; the base image
  stays), then ``bentoml containerize``. Warm build: the model packaged again (a new Bento version, as
  after retraining: same packages) and containerized with the cache the cold build left.
- Ready: ``docker run`` → ``/readyz`` answers 200, three times; the median.
- Throughput: ``C`` concurrent keep-alive clients (bench_serving.py's load generator) send one 128 px
  PNG per request for ``--seconds``, after a warm-up, alternately to the container and to a host
  ``bentoml serve`` of the same Bento (the same params, workers and torch threads), ``--rounds`` times
  each; the ratio container / host of the summed throughput. Both share the machine's cores with
  the load generator; compare within one run.
- ``--offline``: the local base image and the local torch wheel (serving.container.offline); default:
  offline when serving.container.offline_torch_wheels holds torch's wheel.

The figures go to ``--results`` (default benchmarks/results/container.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from bench_serving import make_model, over_http

from regionmed.env import configure_environment
from regionmed.publish.record import Record, results_option

REPO = Path(__file__).resolve().parents[1]


def package_model(work: Path, offline: bool) -> tuple[dict, object]:
    from regionmed.params import load_params
    from regionmed.serving import stage as package_stage

    (work / "metrics").mkdir(parents=True, exist_ok=True)
    (work / "metrics/eval.json").write_text(json.dumps({"regionmed": {}}))
    (work / "metrics/gate.json").write_text(json.dumps({"passed": True, "n_failed": 0}))
    params = load_params(
        REPO / "params.yaml",
        {
            "corpus": {"out_dir": str(work / "corpus")},
            "evaluate": {"metrics_file": str(work / "metrics/eval.json")},
            "gate": {
                "decision_file": str(work / "metrics/gate.json"),
                "champion_file": str(work / "champion.json"),
            },
            "serving": {
                "model_dir": str(work / "model"),
                "index_dir": str(work / "index"),
                "metrics_file": str(work / "package.json"),
                "bentoml_home": str(work / "bentoml"),
                "container": {"offline": offline},
            },
        },
    )
    return package_stage.run(params, root=REPO, log=lambda *_: None).record, params


def host_server(bento: str, home: Path, work: Path):
    from regionmed.serving.container_path import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIONMED_")}
    env.update(BENTOML_HOME=str(home), REGIONMED_EMBEDDING_LOG_DIR=str(work / "host-log"))
    log = open(work / "host-server.log", "wb")  # noqa: SIM115  (the server's lifetime)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", bento, "--port", str(port)],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--offline", action="store_true", default=None)
    mode.add_argument("--online", dest="offline", action="store_false")
    ap.add_argument(
        "--skip-cold", action="store_true", help="do not prune the build cache (no cold build time)"
    )
    results_option(ap, "container", "--out")
    args = ap.parse_args()
    results_record = Record("container")
    configure_environment()
    import signal

    from regionmed.params import load_params
    from regionmed.serving.container import (
        Container,
        containerize,
        docker_client,
        image_size,
        wait_until_ready,
    )
    from regionmed.serving.container_path import bento_base_image, ensure_base_image, free_port

    offline = (
        args.offline
        if args.offline is not None
        else any(
            Path(load_params(REPO / "params.yaml").serving.container.offline_torch_wheels).glob(
                "torch-*cp311*.whl"
            )
        )
    )
    client = docker_client()
    result: dict = {
        "offline": offline,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
    }
    with tempfile.TemporaryDirectory(prefix="bench-container-") as tmp:
        work = Path(tmp)
        os.environ["BENTOML_HOME"] = str(work / "bentoml")
        _, images = make_model(work, None)
        record, params = package_model(work, offline)
        home = work / "bentoml"
        ensure_base_image(params, client, bento_base_image(home, record["bento_tag"]), True, REPO, log=print)
        if not args.skip_cold:
            subprocess.run([client, "builder", "prune", "-af"], capture_output=True, check=True)
            cold_ref, result["build_cold_s"] = containerize(
                record["bento_tag"], "bench-regionmed", client, home
            )
            subprocess.run([client, "rmi", cold_ref], capture_output=True, check=False)
        record, _ = package_model(work, offline)  # a new Bento version with the same packages
        ref, result["build_warm_s"] = containerize(record["bento_tag"], "bench-regionmed", client, home)
        result["image_bytes"] = image_size(client, ref)

        ready = []
        for _ in range(3):
            c = Container(client, ref, free_port())
            c.start()
            ready.append(c.wait_ready())
            c.stop()
            c.remove()
        result["ready_s"] = [round(r, 2) for r in ready]
        result["ready_median_s"] = statistics.median(ready)

        container = Container(client, ref, free_port(), log_dir=work / "container-log")
        container.start()
        container.wait_ready()
        proc, host_url = host_server(record["bento_tag"], home, work)
        try:

            def alive() -> None:
                if proc.poll() is not None:
                    raise SystemExit(
                        f"bentoml serve exited:\n{(work / 'host-server.log').read_text()[-3000:]}"
                    )

            wait_until_ready(host_url, 300, alive)
            runs: dict[str, list[dict]] = {"host": [], "container": []}
            for _ in range(args.rounds):
                for name, url in (("host", host_url), ("container", container.url)):
                    r = asyncio.run(over_http(url, images, args.concurrency, args.seconds, "encode_image"))
                    runs[name].append(r)
                    print(
                        f"{name}: {r['images_per_s']:.1f} images/s, p50 {r['p50_ms']:.0f} ms, "
                        f"p99 {r['p99_ms']:.0f} ms, errors {r['errors']}",
                        flush=True,
                    )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            container.stop()
            container.remove()
        for name, rs in runs.items():
            result[f"{name}_images_per_s"] = statistics.mean(r["images_per_s"] for r in rs)
            result[f"{name}_p50_ms"] = statistics.median(r["p50_ms"] for r in rs)
            result[f"{name}_errors"] = sum(r["errors"] for r in rs)
            result[f"{name}_rounds_images_per_s"] = [round(r["images_per_s"], 1) for r in rs]
        result["container_over_host"] = result["container_images_per_s"] / result["host_images_per_s"]
        subprocess.run([client, "rmi", ref], capture_output=True, check=False)
    print(json.dumps(result, indent=1))
    results_record.write(result, args.results)


if __name__ == "__main__":
    main()
