"""Fixtures of the serving tests: a tiny model, its params file, a packaged Bento, server processes.

Everything lives under the session's temp folder: the BentoML home, the embedding log, the model.
The service module reads its settings when imported, so it is imported only inside fixtures,
after ``REGIONMED_PARAMS`` and friends are set.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from tiny import TEST_SERVING, build_tiny

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 180  # a cold `bentoml serve` imports torch + transformers; the machine is shared


@pytest.fixture(scope="session")
def serving_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.getbasetemp() / "serving"
    root.mkdir(exist_ok=True)
    # the same folder tests/conftest.py gives BENTOML_HOME; set for the session, before bentoml is imported
    os.environ.setdefault("BENTOML_HOME", str(tmp_path_factory.getbasetemp() / "state" / "bentoml_home"))
    return root


@pytest.fixture(scope="session")
def tiny(serving_root) -> dict[str, Path]:
    """corpus/, model/, index/, params.yaml (small limits) and log/ of a tiny untrained model."""
    paths = build_tiny(serving_root / "tiny")
    params = {"serving": {**TEST_SERVING, "embedding_log": {"dir": str(serving_root / "log")}}}
    paths["params"] = serving_root / "params.yaml"
    paths["params"].write_text(yaml.safe_dump(params))
    paths["log"] = serving_root / "log"
    return paths


@pytest.fixture(scope="session")
def service_cls(tiny):
    """The service class, imported with the tiny model and the test params."""
    os.environ["REGIONMED_PARAMS"] = str(tiny["params"])
    os.environ["REGIONMED_MODEL_DIR"] = str(tiny["model"])
    os.environ["REGIONMED_INDEX_DIR"] = str(tiny["index"])
    os.environ.pop("REGIONMED_EMBEDDING_LOG_DIR", None)
    os.environ.pop("REGIONMED_API_KEY", None)
    from regionmed.serving import service

    assert service.SETTINGS.max_texts_per_call == TEST_SERVING["max_texts_per_call"], "service imported too early"
    return service.RegionMedService


@pytest.fixture(scope="module")
def client(service_cls):
    """The service's ASGI app in-process (model loaded once per module)."""
    from starlette.testclient import TestClient

    with TestClient(service_cls.to_asgi(), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="session")
def packaged(serving_root, tiny):
    """``package()`` run once on the tiny model in a scratch project: store model + Bento + champion."""
    from regionmed.params import Params
    from regionmed.serving.package import package

    project = serving_root / "project"
    (project / "metrics").mkdir(parents=True, exist_ok=True)
    (project / "metrics/eval.json").write_text(json.dumps(
        {"regionmed": {"retrieval/i2t_R@5": {"value": 0.5}, "grounding/full/lenient": {"value": 0.7}},
         "vs_prior": {"regionmed/grounding/full/lenient": {"low": 0.01}}}))
    (project / "metrics/gate.json").write_text(json.dumps({"passed": True, "n_failed": 0, "comparisons": [],
                                                           "champion": None}))
    params = Params.model_validate({
        "corpus": {"out_dir": str(tiny["corpus"])},
        "evaluate": {"metrics_file": str(project / "metrics/eval.json"), "batch_size": 32},
        "gate": {"decision_file": str(project / "metrics/gate.json"), "champion_file": str(project / ".state/champion.json")},
        "serving": {"model_dir": str(tiny["model"]), "index_dir": str(project / "models/retrieval_index"),
                    "bentofile": "bentofile.yaml", "metrics_file": str(project / "metrics/package.json"),
                    "bentoml_home": os.environ["BENTOML_HOME"]},
    })
    lines: list[str] = []
    start = time.perf_counter()
    record = package(params, root=REPO_ROOT, log=lines.append)
    return {"record": record, "params": params, "project": project, "log": lines,
            "seconds": time.perf_counter() - start}


# ---- real servers ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``bentoml serve ...`` in its own process group on a free loopback port; stopped by ``stop()``."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log_file: Path, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        self._log = open(log_file, "wb")  # noqa: SIM115  (closed in stop())
        self.proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", *args, "--port", str(self.port)],
                                     cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = SERVER_START_TIMEOUT_S) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.proc.poll() is not None:
                raise AssertionError(f"bentoml serve exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"bentoml serve not ready in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_file.read_text(errors="replace")[-6000:]

    def pids(self) -> list[int]:
        """The server and its descendants (the circus arbiter's workers)."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                continue
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # our own process group (start_new_session)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log.close()


def server_env(**extra: str) -> dict[str, str]:
    from regionmed.env import QUIET_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith("REGIONMED_")}
    return {**env, **QUIET_ENV, "PYTHONPATH": str(REPO_ROOT), **extra}
