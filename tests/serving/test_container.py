"""The Bento's Docker image, really built and run: `pytest -m container` (make test-container).

Skipped, with the reason, when no Docker daemon answers (scripts/docker_host.sh starts one). Otherwise:
the package stage packages the tiny model (offline when the machine has torch's CPU wheel in
serving.container.offline_torch_wheels, or REGIONMED_CONTAINER_OFFLINE=1/0 says so), `bentoml
containerize` builds the image (the local base image is made first when missing), and one container
runs on 127.0.0.1 with an API key and a mounted embedding-log folder for the whole module. The last
test stops it with SIGTERM. A cold build takes minutes (PyPI downloads): this is a slow test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers.api_calls import call_every_api, check_answers, check_bad_requests
from helpers.faults import record_measure
from helpers.params import write_params
from helpers.servers import REPO_ROOT
from helpers.tiny_service import package_tiny

from regionmed.serving.container import free_port

pytestmark = [pytest.mark.container, pytest.mark.slow]
KEY = "container-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}
TIMEOUT = httpx.Timeout(60.0, connect=5.0)


def offline_build() -> bool:
    from helpers.params import default_section

    wanted = os.environ.get("REGIONMED_CONTAINER_OFFLINE")
    if wanted in ("0", "1"):
        return wanted == "1"
    return any(Path(default_section("serving.container").offline_torch_wheels).glob("torch-*cp311*.whl"))


@pytest.fixture(scope="module")
def docker() -> str:
    from regionmed.serving.container import daemon_problem, docker_client

    if problem := daemon_problem():
        pytest.skip(f"no Docker daemon to build and run the image: {problem} (make docker-host)")
    return docker_client()


@pytest.fixture(scope="module")
def container_bento(docker, serving_root, tiny):
    return package_tiny(serving_root / "container-project", tiny, container={"offline": offline_build()})


@pytest.fixture(scope="module")
def image(docker, container_bento):
    from regionmed.serving.container import containerize, image_size
    from regionmed.serving.container_path import bento_base_image, ensure_base_image
    from regionmed.serving.package import resolve_bentoml_home

    params = container_bento["params"]
    home = resolve_bentoml_home(params)
    bento = container_bento["record"]["bento_tag"]
    ensure_base_image(params, docker, bento_base_image(home, bento), make=True, root=REPO_ROOT)
    ref, seconds = containerize(bento, params.serving.container.image, docker, home, log=lambda *_: None)
    print(f"\nimage {ref}: {image_size(docker, ref) / 1e6:.0f} MB, built in {seconds:.0f} s")
    yield ref
    subprocess.run([docker, "rmi", ref], capture_output=True, check=False)


@pytest.fixture(scope="module")
def running(docker, image, serving_root, container_bento):
    from regionmed.serving.container import Container

    container = Container(
        docker,
        image,
        free_port(),
        log_dir=serving_root / "log-container",
        api_key=KEY,
        api_key_env=container_bento["params"].serving.api_key_env,  # the packaged service's setting
    )
    container.start()
    try:
        container.ready_s = container.wait_ready()
        yield container
    finally:
        container.stop()
        container.remove()


def test_the_image_runs_as_a_user_without_compilers_and_carries_the_model(docker, image):
    script = (
        "id -u; for t in gcc cc g++ make git; do command -v $t && echo FOUND $t; done; "
        "ls /home/bentoml/bento/models/regionmed"
    )
    proc = subprocess.run(
        [docker, "run", "--rm", "--entrypoint", "sh", image, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = proc.stdout.split()
    assert lines[0] == "1034", "the server runs as BentoML's non-root user"
    assert "FOUND" not in lines, proc.stdout
    assert len(lines) >= 2, f"no model version under models/regionmed: {proc.stdout}"


def test_every_api_answers_from_the_container(running, container_bento):
    answers = call_every_api(running.url, AUTH)
    check_answers(answers, dim=16)
    meta = answers["metadata"].json()
    assert (
        meta["model"]["origin"] == "bento"
        and meta["model"]["version"] == container_bento["record"]["model_tag"]
    )
    assert meta["api_key_required"] is True


def test_bad_uploads_get_their_4xx(running):
    from helpers.params import default_section

    # the limits of the params the model was packaged with (the repository's)
    check_bad_requests(running.url, AUTH, default_section("serving").model_dump())


def test_the_api_key_is_refused_without_and_accepted_with(running):
    assert httpx.get(f"{running.url}/readyz", timeout=TIMEOUT).status_code == 200
    refused = httpx.post(f"{running.url}/metadata", json={}, timeout=TIMEOUT)
    assert refused.status_code == 401 and "API key" in refused.json()["error"]
    wrong = httpx.post(
        f"{running.url}/encode_text", json={"texts": ["a"]}, headers={"X-API-Key": "nope"}, timeout=TIMEOUT
    )
    assert wrong.status_code == 401
    assert (
        httpx.post(
            f"{running.url}/encode_text", json={"texts": ["a"]}, headers={"X-API-Key": KEY}, timeout=TIMEOUT
        ).status_code
        == 200
    )


def test_the_embedding_log_lands_in_the_mounted_folder_and_monitor_reads_it(
    running, container_bento, tiny, serving_root, tmp_path
):
    from regionmed.monitoring.embedding_log import read_log

    call_every_api(running.url, AUTH)
    log_dir = serving_root / "log-container"
    df = read_log(log_dir)
    assert {"encode_image", "encode_text", "zero_shot", "ground", "encode_regions", "retrieve"} <= set(
        df["endpoint"]
    )
    assert (df["model_version"] == container_bento["record"]["model_tag"]).all()
    # a complete params file (the repository's) with this test's folders; the stages after
    # annotate_regions read annotate.out_dir, here the tiny corpus as it is
    params = write_params(
        tmp_path / "params.yaml",
        {
            "corpus": {"out_dir": str(tiny["corpus"])},
            "annotate": {"out_dir": str(tiny["corpus"])},
            "serving": {
                "model_dir": str(tiny["model"]),
                "index_dir": container_bento["params"].serving.index_dir,
                "embedding_log": {"dir": str(log_dir)},
            },
            "monitor": {
                "reference_dir": str(tmp_path / "reference"),
                "report_dir": str(tmp_path / "drift"),
                "summary_file": str(tmp_path / "drift.json"),
                "window_end": "now",
            },
        },
    )
    for command in (
        "monitor-reference",
        "monitor",
    ):  # the reference of the packaged model, then the drift check
        proc = subprocess.run(
            [sys.executable, "-m", "regionmed", command, "--params", str(params)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "drift.json").read_text())
    images = int((df["kind"] == "image").sum())
    assert summary["current"]["rows"]["image"] == images > 0, summary["current"]
    assert container_bento["record"]["model_tag"] in summary["reference"]["model_versions"]


def test_without_its_model_the_container_exits_and_says_why(docker, image):
    from regionmed.serving.container import Container, ContainerError

    container = Container(
        docker,
        image,
        free_port(),
        env={"REGIONMED_MODEL_TAG": "regionmed:missing"},
        restart="no",  # once: with the restart policy Docker would start it again (and again)
    )
    container.start()
    try:
        with pytest.raises(ContainerError, match="exited") as failed:
            container.wait_ready(timeout=180)
        assert "model 'regionmed:missing' is not in the BentoML store" in str(failed.value)
        assert container.state()["ExitCode"] != 0
    finally:
        container.remove()


def test_sigterm_stops_the_container_within_10_s(running):
    # after the other tests of the shared container (the dockerd restart runs its own)
    seconds, exit_code = running.stop(timeout=10)
    assert exit_code is not None, f"still running {seconds:.1f} s after SIGTERM:\n{running.logs()}"
    assert seconds < 10 and exit_code == 0, (seconds, exit_code, running.logs())
    assert running.state().get("Running") is False


@pytest.mark.faults
@pytest.mark.timeout(600)
def test_the_container_comes_back_by_itself_after_dockerd_restarts(
    docker, image, serving_root, container_bento
):
    """dockerd stopped (SIGTERM, as a service manager or an upgrade does) and started again with
    scripts/docker_host.sh: the container of the documented run command (--restart unless-stopped)
    is running and ready again with no one starting it (docs/reliability.md)."""
    import signal
    import time

    from regionmed.serving.container import Container, wait_until_ready

    daemons = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split()
    if len(daemons) != 1 or os.geteuid() != 0:
        pytest.skip("restarting dockerd needs root and one dockerd started by scripts/docker_host.sh")
    container = Container(
        docker,
        image,
        free_port(),
        log_dir=serving_root / "log-restart",
        api_key=KEY,
        api_key_env=container_bento["params"].serving.api_key_env,
    )
    container.start()
    try:
        container.wait_ready()
        os.kill(int(daemons[0]), signal.SIGTERM)  # the daemon stops its containers, then itself
        while Path(f"/proc/{daemons[0]}").exists():
            time.sleep(0.2)
        down_at = time.perf_counter()
        started = subprocess.run(
            ["bash", str(REPO_ROOT / "scripts/docker_host.sh")], capture_output=True, text=True, timeout=300
        )
        assert started.returncode == 0, started.stdout + started.stderr
        wait_until_ready(container.url, 240)  # nobody ran docker start: the restart policy did
        back_s = time.perf_counter() - down_at
        assert container.state().get("Running") is True
        answer = httpx.post(f"{container.url}/metadata", json={}, headers=AUTH, timeout=TIMEOUT)
        assert answer.status_code == 200
        record_measure("dockerd restarted", ready_again_after_s=round(back_s, 1))
    finally:
        container.stop()
        container.remove()
