"""The build on a real Dask cluster when a worker dies mid-build, and a cluster address nobody answers."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from helpers.dask_cluster import dask_cluster
from helpers.params import default_params

from regionmed.corpus.build import build_corpus
from regionmed.corpus.schema import SHARDS_DIR, read_manifest
from regionmed.errors import BadInput
from regionmed.serving.container import free_port

pytestmark = pytest.mark.faults

# Enough 128 px phantoms in small shards that the build lasts a few seconds on two workers.
N_IMAGES, SHARD = 1200, 30


def _params(**cluster):
    return default_params(
        {"cluster": cluster, "corpus": {"synthetic": {"n_images": N_IMAGES}, "shard_size": SHARD}}
    )


def _digest(corpus: Path) -> dict[str, str]:
    files = [corpus / "manifest.parquet", *sorted((corpus / SHARDS_DIR).iterdir())]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_a_worker_killed_mid_build_leaves_a_whole_corpus_equal_to_the_local_one(tmp_path):
    build_corpus(_params(), tmp_path / "local", progress=False)
    n_shards = -(-N_IMAGES // SHARD)
    with dask_cluster(tmp_path / "dask", n_workers=2) as cluster:
        victim_pid = next(iter(cluster.worker_pids().values()))
        killed_at: list[int] = []

        def kill_when_building() -> None:
            # the build writes into a temporary folder beside its output: kill once shards appear there
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                done = list(tmp_path.glob(f"cluster.tmp-*/{SHARDS_DIR}/*.tar"))
                if len(done) >= 3:
                    killed_at.append(len(done))
                    os.kill(victim_pid, signal.SIGKILL)
                    return
                time.sleep(0.02)

        watcher = threading.Thread(target=kill_when_building)
        watcher.start()
        summary = build_corpus(_params(address=cluster.address), tmp_path / "cluster", progress=False)
        watcher.join()
        with cluster.client() as client:
            survivors = client.run(os.getpid)  # the nanny started a new worker process
    assert killed_at and killed_at[0] < n_shards, "the worker was killed before the build ended"
    assert victim_pid not in survivors.values()
    assert summary.n_kept == N_IMAGES
    assert _digest(tmp_path / "cluster") == _digest(tmp_path / "local")
    assert not list((tmp_path / "cluster").rglob("*.tmp"))
    assert len(read_manifest(tmp_path / "cluster")) == N_IMAGES


def test_an_address_nobody_answers_stops_the_stage_naming_the_setting(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(BadInput) as info:
        build_corpus(_params(address=address, connect_timeout_s=2), tmp_path / "c", progress=False)
    assert "cluster.address" in str(info.value) and address in str(info.value)
    assert not (tmp_path / "c").exists()


def test_a_scheduler_without_workers_stops_the_stage_instead_of_waiting(tmp_path):
    with dask_cluster(tmp_path / "dask", n_workers=0) as cluster, pytest.raises(BadInput) as info:
        build_corpus(_params(address=cluster.address, connect_timeout_s=2), tmp_path / "c", progress=False)
    assert "has no workers" in str(info.value) and "cluster.address" in str(info.value)
    assert not (tmp_path / "c").exists()
