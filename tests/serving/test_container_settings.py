"""The container's build settings, without Docker: what the package stage writes into the Bento, and
the Dockerfile BentoML generates from it (tests/serving/test_container.py builds and runs it)."""

from __future__ import annotations

import pytest
import yaml
from servers import REPO_ROOT

from regionmed.params import ContainerParams
from regionmed.serving.container import ContainerError, bentofile_for, daemon_problem, docker_client

WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def test_the_bentofile_defaults_are_the_params_defaults(tmp_path):
    # bentofile.yaml is also built by hand (`bentoml build`): it must say what serving.container says
    repo = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())
    written = yaml.safe_load(
        bentofile_for(ContainerParams(), REPO_ROOT / "bentofile.yaml", tmp_path, tmp_path).read_text()
    )
    assert written == repo
    assert repo["docker"]["base_image"] == ContainerParams().base_image == "python:3.11-slim"
    assert repo["python"]["extra_index_url"] == [ContainerParams().torch_index_url]


def test_offline_takes_the_local_base_image_and_the_local_torch_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / WHEEL).write_bytes(b"not really a wheel")
    (wheels / "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"another version")
    settings = ContainerParams(
        offline=True, offline_torch_wheels=str(wheels), offline_base_image="local/base:1"
    )
    root = tmp_path / "repo"
    root.mkdir()
    doc = yaml.safe_load(bentofile_for(settings, REPO_ROOT / "bentofile.yaml", tmp_path, root).read_text())
    assert doc["docker"]["base_image"] == "local/base:1"
    assert "extra_index_url" not in doc["python"], "offline: no PyTorch index"
    assert doc["python"]["wheels"] == [f"build/container-wheels/{WHEEL}"]  # inside the build context
    assert (root / doc["python"]["wheels"][0]).read_bytes() == b"not really a wheel"
    assert doc["python"]["find_links"] == ["wheels"]
    assert "torch==2.13.0" in doc["python"]["packages"]


def test_offline_without_the_wheel_says_which_folder(tmp_path):
    settings = ContainerParams(offline=True, offline_torch_wheels=str(tmp_path))
    with pytest.raises(ContainerError, match=f"{tmp_path} has no torch-2.13.0 cp311 wheel"):
        bentofile_for(settings, REPO_ROOT / "bentofile.yaml", tmp_path, tmp_path)


def test_no_daemon_is_reported_with_a_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("REGIONMED_DOCKER", str(tmp_path / "docker"))
    assert docker_client() == str(tmp_path / "docker")
    assert "docker info failed" in daemon_problem()
