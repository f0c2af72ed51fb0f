"""Drift through the real service: a `bentoml serve` of a tiny model logs what it embeds, and the
monitor compares windows of that log with the reference built from the same model and corpus.

The test split's own images sent through the service ⇒ no drift; the same images with doubled
contrast ⇒ drift (in the intensity descriptors: the ViT's LayerNorms make the embeddings nearly
contrast-invariant, which is why the descriptors are checked too); images of one modality only ⇒
drift in the embeddings and the zero-shot label shares. Neither the log nor the reports hold a
report's text.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from regionmed.serving.container import free_port

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240  # a cold `bentoml serve` imports torch + transformers on a shared CPU


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Tiny model + corpus + index + drift reference; a real server logging into ``log/``."""
    from helpers.params import default_params, write_params
    from helpers.tiny_service import build_tiny

    from regionmed.env import QUIET_ENV
    from regionmed.monitoring import reference_stage

    root = tmp_path_factory.mktemp("drift_service")
    tiny = build_tiny(root / "tiny", n_images=1000)
    params = default_params(
        {
            "corpus": {"out_dir": str(tiny["corpus"])},
            "annotate": {"out_dir": str(tiny["corpus"])},
            "serving": {
                "model_dir": str(tiny["model"]),
                "index_dir": str(tiny["index"]),
                "torch_threads": 1,
                "embedding_log": {"dir": str(root / "log")},
            },
            "monitor": {"min_rows": 100, "reference_dir": str(root / "reference")},
        }
    )
    reference_stage.run(params, log=lambda *_: None)
    write_params(root / "params.yaml", {"serving": params.serving.model_dump(mode="json")})
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIONMED_")}
    env.update(QUIET_ENV)
    env.update(
        {
            "PYTHONPATH": str(REPO_ROOT),
            "OMP_NUM_THREADS": "1",
            "REGIONMED_PARAMS": str(root / "params.yaml"),
            "REGIONMED_MODEL_DIR": str(tiny["model"]),
            "REGIONMED_INDEX_DIR": str(tiny["index"]),
            "BENTOML_HOME": str(root / "bentoml"),
        }
    )
    port = free_port()
    with open(root / "server.log", "wb") as log:
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
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url, start = f"http://127.0.0.1:{port}", time.perf_counter()
            while True:
                assert proc.poll() is None, (root / "server.log").read_text()[-4000:]
                assert time.perf_counter() - start < START_TIMEOUT_S, "server not ready"
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            yield {"root": root, "url": url, "params": params, "tiny": tiny}
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # its own process group (start_new_session)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_images(corpus: Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    from regionmed.corpus.images import read_png
    from regionmed.corpus.schema import read_manifest

    df = read_manifest(corpus, "test")
    return [read_png(corpus / p) for p in df["image_path"]], list(df["report"]), list(df["modality"])


test_images.__test__ = False  # a helper, not a test


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def send(url: str, images: list[np.ndarray], per_call: int = 8) -> None:
    with httpx.Client(base_url=url, timeout=httpx.Timeout(120.0, connect=5.0)) as c:
        for i in range(0, len(images), per_call):
            files = [
                ("images", (f"im{j}.png", png(a), "image/png"))
                for j, a in enumerate(images[i : i + per_call])
            ]
            r = c.post("/encode_image", files=files)
            assert r.status_code == 200, r.text


def mark() -> pd.Timestamp:
    time.sleep(0.05)
    t = pd.Timestamp.now(tz="UTC")
    time.sleep(0.05)
    return t


def test_same_images_no_drift_contrast_or_modality_change_drift_through_the_real_service(served):
    from regionmed.monitoring import stage

    root, params = served["root"], served["params"]
    images, reports, modalities = test_images(served["tiny"]["corpus"])
    send(served["url"], images)
    t1 = mark()
    contrast = [np.clip((a.astype(np.float32) - 128) * 2.0 + 128, 0, 255).astype(np.uint8) for a in images]
    send(served["url"], contrast)
    t2 = mark()
    one = [a for a, m in zip(images, modalities, strict=True) if m == "brain_mri"]
    one = (one * (1 + len(images) // len(one)))[: len(images)]  # as many rows, one modality
    send(served["url"], one)

    def window(name, since, until):
        return stage.run(
            params,
            since=since,
            until=until,
            report_dir=root / name,
            summary_file=root / f"{name}.json",
            log=lambda *_: None,
        ).summary

    same = window("same", None, t1)
    assert (
        same["current"]["rows"]["image"] == len(images) and same["current"]["rows_other_model"]["image"] == 0
    )
    assert same["status"] == "no_drift", same["drifted_checks"]
    checks = {c["name"]: c for c in same["checks"]}
    assert checks["image/descriptor/mean"]["score"] < 0.01 and checks["image/embeddings/mmd"]["score"] < 0.005

    shifted = window("contrast", t1, t2)
    assert shifted["current"]["rows"]["image"] == len(images) and shifted["status"] == "drift"
    drifted = set(shifted["drifted_checks"])
    assert {"image/descriptor/mean", "image/descriptor/std"} <= drifted, drifted
    assert "image/descriptor/width" not in drifted

    modality = window("modality", t2, "now")
    assert modality["current"]["rows"]["image"] == len(images) and modality["status"] == "drift"
    moved = set(modality["drifted_checks"])
    assert {"image/embeddings/model", "image/embeddings/mmd"} <= moved, moved

    # the medical data rule: no report text in the log, the reference or the reports
    texts = [t for t in reports if len(t) > 40][:20]
    stores = [*(root / "log").glob("*.jsonl"), *(root / "reference").glob("*")]
    for name in ("same", "contrast", "modality"):
        stores += [*(root / name).glob("*"), root / f"{name}.json"]
    for path in stores:
        blob = path.read_bytes()
        for t in texts:
            assert t[:40].encode() not in blob, path
    for name, s in (("same", same), ("contrast x2", shifted), ("one modality", modality)):
        print(
            name,
            s["status"],
            {c["name"].split("/", 1)[1]: c["score"] for c in s["checks"] if c["kind"] == "image"},
        )
