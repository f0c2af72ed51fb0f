"""The container's build settings, without Docker: what the package stage writes into the Bento, and
the Dockerfile BentoML generates from it (tests/serving/test_container.py builds and runs it)."""

from __future__ import annotations

import pytest
import yaml
from helpers.params import default_section
from helpers.servers import REPO_ROOT

from regionmed.serving.container import ContainerError, bentofile_for, daemon_problem, docker_client

WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def test_the_bentofile_defaults_are_the_params_defaults(tmp_path):
    # bentofile.yaml is also built by hand (`bentoml build`): it must say what serving.container says
    repo = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())
    container = default_section("serving.container")
    written = yaml.safe_load(
        bentofile_for(container, REPO_ROOT / "bentofile.yaml", tmp_path, tmp_path).read_text()
    )
    assert written == repo
    assert repo["docker"]["base_image"] == container.base_image == "python:3.11-slim"
    assert repo["python"]["extra_index_url"] == [container.torch_index_url]


def test_offline_takes_the_local_base_image_and_the_local_torch_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / WHEEL).write_bytes(b"not really a wheel")
    (wheels / "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"another version")
    settings = default_section(
        "serving.container", offline=True, offline_torch_wheels=str(wheels), offline_base_image="local/base:1"
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
    settings = default_section("serving.container", offline=True, offline_torch_wheels=str(tmp_path))
    with pytest.raises(ContainerError, match=f"{tmp_path} has no torch-2.13.0 cp311 wheel"):
        bentofile_for(settings, REPO_ROOT / "bentofile.yaml", tmp_path, tmp_path)


def test_no_daemon_is_reported_with_a_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("REGIONMED_DOCKER", str(tmp_path / "docker"))
    assert docker_client() == str(tmp_path / "docker")
    assert "docker info failed" in daemon_problem()


# What `bentoml containerize` printed for the online Bento on a machine that resolves no registry name
# (Debian's docker 20.10 + BuildKit, BentoML 1.4.40), cut to the lines around the failure.
UNRESOLVED_BUILD = """\
#3 [internal] load metadata for docker.io/library/python:3.11-slim
#3 ERROR: failed to do request: Head "https://registry-1.docker.io/v2/library/python/manifests/3.11-slim": \
dial tcp: lookup registry-1.docker.io on 10.255.255.53:53: no such host
failed to solve with frontend dockerfile.v0: failed to create LLB definition: failed to do request
ERROR:
Encountered exception while trying to building image: Command '['docker', 'build']' returned \
non-zero exit status 1.
Traceback (most recent call last):
  File "bentoml/_internal/container/base.py", line 189, in build
bentoml.exceptions.BentoMLException: Command '['docker', 'build']' returned non-zero exit status 1.
"""


def containerize_printing(monkeypatch, tmp_path, stderr: str):
    """``containerize`` with the ``bentoml containerize`` subprocess (where the build's network
    failures surface) replaced by one that fails printing ``stderr``."""
    import subprocess

    from regionmed.serving import container

    calls = []

    def failed_build(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, stdout="INFO: Building image\n", stderr=stderr)

    monkeypatch.setattr(container.subprocess, "run", failed_build)
    with pytest.raises(ContainerError) as raised:
        container.containerize("regionmed_service:abc", "regionmed-service", "/usr/bin/docker", tmp_path)
    assert calls and calls[0][3] == "containerize"
    return str(raised.value)


def test_an_unresolvable_registry_names_the_offline_switch(monkeypatch, tmp_path):
    message = containerize_printing(monkeypatch, tmp_path, UNRESOLVED_BUILD)
    assert "lookup registry-1.docker.io" in message and "no such host" in message  # what failed
    assert "serving.container.offline: true" in message and "re-package" in message  # what to do
    assert "scripts/container_base.sh" in message and "offline_torch_wheels" in message  # what it does
    assert "Traceback" not in message and "BentoMLException" not in message


@pytest.mark.parametrize(
    "line",
    [
        "error: Failed to fetch: `https://download.pytorch.org/whl/cpu/torch/` Caused by: dns error: "
        "failed to lookup address information: Temporary failure in name resolution",
        "WARNING: Retrying after connection broken by 'NameResolutionError(\"Failed to resolve "
        "'pypi.org' ([Errno -2] Name or service not known)\")'",
    ],
)
def test_an_index_that_cannot_be_resolved_names_the_offline_switch_too(monkeypatch, tmp_path, line):
    message = containerize_printing(monkeypatch, tmp_path, f"#9 RUN install.sh\n{line}\nexit code: 1\n")
    assert line[:60] in message and "serving.container.offline: true" in message


def test_another_build_failure_keeps_its_output_and_no_offline_advice(monkeypatch, tmp_path):
    message = containerize_printing(monkeypatch, tmp_path, "#5 ERROR: no space left on device\n")
    assert "no space left on device" in message and "failed (1)" in message
    assert "serving.container.offline" not in message


def test_the_container_gets_the_key_in_the_variable_the_setting_names(tmp_path):
    from regionmed.serving.container import Container
    from regionmed.serving.settings import ENV_LOG_DIR

    container = Container(
        "docker", "img:1", 4321, log_dir=tmp_path / "log", api_key="k-123", api_key_env="CUSTOM_API_KEY"
    )
    cmd, env = container.run_command()
    assert env == {"CUSTOM_API_KEY": "k-123", ENV_LOG_DIR: "/logs"}
    passed = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "-e"]
    assert sorted(passed) == sorted(env), "each variable named with -e"
    assert "k-123" not in " ".join(cmd), "the key's value never on the command line"
    assert cmd[-1] == "img:1" and "127.0.0.1:4321:3000" in cmd
    with pytest.raises(ValueError, match="api_key_env"):
        Container("docker", "img:1", 4321, api_key="k-123")


def test_the_container_runs_with_a_restart_policy_that_outlives_a_daemon_restart():
    from regionmed.serving.container import Container

    cmd, _ = Container("docker", "img:1", 4321).run_command()
    assert cmd[cmd.index("--restart") + 1] == "unless-stopped" and "--rm" not in cmd  # --rm forbids it


def test_the_container_path_passes_serving_api_key_env(monkeypatch, tmp_path):
    """``regionmed container`` with a renamed ``serving.api_key_env``: Docker stubbed out, the
    container it starts and the line it leaves behind name the configured variable."""
    from regionmed.params import load_params
    from regionmed.serving import container_path

    started = []

    class RecordedContainer:
        def __init__(self, *args, **kwargs):
            self.kwargs, self.name, self.url = kwargs, "c1", "http://127.0.0.1:1"
            started.append(self)

        def start(self):
            pass

        def wait_ready(self):
            return 0.0

    for name, stub in {
        "docker_client": lambda preferred: "docker",
        "daemon_problem": lambda client: None,
        "resolve_bentoml_home": lambda params, root: tmp_path,
        "image_exists": lambda client, ref: True,
        "image_size": lambda client, ref: 1,
        "check_api_key": lambda url, key: None,
        "Container": RecordedContainer,
    }.items():
        monkeypatch.setattr(container_path, name, stub)
    params = load_params(REPO_ROOT / "params.yaml", {"serving": {"api_key_env": "CUSTOM_API_KEY"}})
    lines = []
    container_path.container_path(
        params,
        root=tmp_path,
        build=False,
        bento="svc:1",
        log_dir=tmp_path / "log",
        keep_running=True,
        log=lines.append,
    )
    (container,) = started
    assert container.kwargs["api_key_env"] == "CUSTOM_API_KEY" and container.kwargs["api_key"]
    assert f"CUSTOM_API_KEY={container.kwargs['api_key']}" in lines[-1]
