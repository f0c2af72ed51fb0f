"""The served half of bench_retrieval.py: ``/retrieve`` through a real ``bentoml serve`` on 127.0.0.1.

The service loads the synthetic index folder (``REGIONMED_INDEX_DIR``) as it loads a packaged one,
with a tiny untrained model whose ``embed_dim`` is the vectors' dimension (the text encoder's cost
is in every request; the difference between the two servers is the search). One server with the
folder's graphs (``serving.ann.expansion_search`` = the ef that reached recall 0.99), one with the
same embeddings and no graphs (exact search). The embedding log is off.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

from regionmed.inference.index import EMBEDDINGS_FILE, INDEX_FILE

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "small left pleural effusion",
    "no acute finding",
    "nodule in the right upper lobe",
    "cardiomegaly with mild edema",
    "fracture of the left femur",
]
TINY_MODEL = {
    "vision": {"image_size": 64, "patch_size": 16, "hidden": 32, "layers": 1, "heads": 2, "mlp": 64},
    "text": {"hidden": 32, "layers": 1, "heads": 2, "mlp": 64, "max_length": 32},
    "roi": {"fusion_heads": 2, "grid_sizes": [2]},
}


def tiny_model(work: Path, dim: int) -> Path:
    """An untrained RegionCLIP with ``embed_dim`` = ``dim`` and a tokenizer of a small corpus."""
    import torch

    from regionmed.corpus.build import build_corpus
    from regionmed.model.io import export_model
    from regionmed.model.regionclip import RegionCLIP
    from regionmed.model.tokenizer import train_wordpiece_tokenizer
    from regionmed.params import load_params
    from regionmed.training.texts import corpus_texts

    out = work / f"model_{dim}"
    if (out / "config.json").is_file():
        return out
    overrides = {
        "corpus": {"image_size": 64, "synthetic": {"n_images": 96}},
        "model": {**TINY_MODEL, "embed_dim": dim},
    }
    params = load_params(REPO / "params.yaml", overrides)
    build_corpus(params, work / "corpus", progress=False)
    tokenizer = train_wordpiece_tokenizer(corpus_texts(work / "corpus"), 300)
    torch.manual_seed(0)
    model = RegionCLIP(params.model, vocab_size=len(tokenizer))
    export_model(model, tokenizer, params.model, out, {"phase": "benchmark (untrained)"})
    return out


def exact_copy(folder: Path, work: Path) -> Path:
    """The same index without its graphs: index.json less ``ann``, the embeddings linked."""
    out = work / f"{folder.name}_exact"
    out.mkdir(exist_ok=True)
    doc = json.loads((folder / INDEX_FILE).read_text())
    doc.pop("ann", None)
    (out / INDEX_FILE).write_text(json.dumps(doc))
    link = out / EMBEDDINGS_FILE
    if not link.exists():
        link.symlink_to((folder / EMBEDDINGS_FILE).resolve())
    return out


def process_tree_rss_mib(pid: int) -> float:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        total += next((int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:")), 0)
    return round(total / 1024, 1)


def one_server(model: Path, index_dir: Path, params: Path, work: Path, requests: int, mode: str) -> dict:
    from regionmed.env import QUIET_ENV
    from regionmed.serving.container import free_port, wait_until_ready

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIONMED_")}
    env.update(QUIET_ENV)
    env.update(
        REGIONMED_PARAMS=str(params),
        REGIONMED_MODEL_DIR=str(model),
        REGIONMED_INDEX_DIR=str(index_dir),
        BENTOML_HOME=str(work / "bentoml"),
        PYTHONPATH=str(REPO),
    )
    log = open(work / f"server_{mode}.log", "wb")  # noqa: SIM115  (the server's lifetime)
    cmd = [sys.executable, "-m", "bentoml", "serve", "regionmed.serving.service:RegionMedService"]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def alive() -> None:
            if proc.poll() is not None:
                raise SystemExit(
                    f"bentoml serve exited:\n{(work / f'server_{mode}.log').read_text()[-3000:]}"
                )

        ready_s = wait_until_ready(url, 900, alive)
        seconds = []
        with httpx.Client(base_url=url, timeout=60) as client:
            for i in range(20 + requests):
                body = {"text": TEXTS[i % len(TEXTS)], "top_k": 10, "target": "image"}
                t0 = time.perf_counter()
                r = client.post("/retrieve", json=body)
                if i >= 20:
                    seconds.append(time.perf_counter() - t0)
                r.raise_for_status()
                assert r.json()["index"]["search"] == mode, r.json()["index"]
        ms = np.asarray(seconds) * 1000
        return {
            "ready_s": round(ready_s, 1),
            "requests": requests,
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "rss_mib": process_tree_rss_mib(proc.pid),
        }
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()


def served(folder: Path, args, work: Path, ef: int) -> dict:
    model = tiny_model(work, args.dim)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["serving"]["ann"]["expansion_search"] = ef
    raw["serving"]["embedding_log"]["enabled"] = False
    params = work / "params_served.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = {
        "expansion_search": ef,
        "model": "untrained, text encoder 1 layer x 32 wide, embed_dim " + str(args.dim),
    }
    for mode, index_dir in (("hnsw", folder), ("exact", exact_copy(folder, work))):
        out[mode] = one_server(model, index_dir, params, work, args.served_requests, mode)
    return out
