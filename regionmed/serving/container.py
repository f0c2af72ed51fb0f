"""The Bento's Docker image: its build settings, ``bentoml containerize``, and a container on loopback.

* ``bentofile_for``: ``bentofile.yaml`` with ``serving.container`` applied (base image, torch source);
  the package stage builds the Bento from it.
* ``docker_client`` / ``daemon_problem``: a docker client that builds with BuildKit (a client of
  Docker 23+ needs the buildx plugin for that; Debian's 20.10 client has it built in), and whether
  its daemon answers.
* ``containerize``: the image of a Bento, through BentoML's docker backend.
* ``Container``: ``docker run`` on ``127.0.0.1`` with the API key (in the variable
  ``serving.api_key_env`` names) and the embedding-log folder, wait for ``/readyz``, stop with SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from regionmed.params import ContainerParams
from regionmed.serving.settings import ENV_LOG_DIR

ENV_DOCKER = "REGIONMED_DOCKER"  # overrides serving.container.docker
BENTO_UID = 1034  # the non-root user BentoML's Dockerfile creates (bentoml)
CONTAINER_PORT = 3000
LOG_MOUNT = "/logs"
# Docker starts the container again when its server dies and when the daemon restarts (a reboot, an
# upgrade of dockerd), but not after `docker stop`: the service comes back without anyone there.
RESTART_POLICY = "unless-stopped"
BUILD_TIMEOUT_S = 3600
WHEELS_STAGE = "build/container-wheels"  # under the build context, ignored by git


class ContainerError(RuntimeError):
    """The image could not be built or the container did not come up, with the reason."""


# How a name that could not be resolved shows in a build's output: Docker/BuildKit pulling the base
# image ("dial tcp: lookup registry-1.docker.io ...: no such host"), uv or pip fetching a package
# ("dns error", "failed to lookup address information", "Temporary failure in name resolution").
NAME_NOT_RESOLVED = re.compile(
    r"no such host|server misbehaving|temporary failure in name resolution|name or service not known"
    r"|failed to lookup address information|dns error|could not resolve host|nodename nor servname",
    re.IGNORECASE,
)
OFFLINE_HINT = (
    "a host name could not be resolved: this machine cannot reach a registry or package index the build "
    "needs. With serving.container.offline: false (the default) the build pulls serving.container."
    "base_image from its registry and torch from serving.container.torch_index_url. To build without them, "
    "set serving.container.offline: true (params.yaml, or `dvc exp run -S serving.container.offline=true`) "
    "and re-package: the Bento is then built FROM serving.container.offline_base_image, made on this "
    "machine by scripts/container_base.sh (`regionmed container --base`, as `make container` runs it), "
    "with torch from the local wheel in serving.container.offline_torch_wheels; the other Python packages "
    "still come from PyPI (docs/serving.md#container)"
)


def name_resolution_failure(output: str) -> str | None:
    """The line of a failed build's output saying a host name could not be resolved, else None."""
    for line in output.splitlines():
        if NAME_NOT_RESOLVED.search(line):
            return line.strip()[:400]
    return None


def _torch_pin(python: dict) -> str:
    for pkg in python.get("packages") or []:
        if m := re.fullmatch(r"torch==(\S+)", pkg):
            return m.group(1)
    raise ContainerError("bentofile.yaml pins no torch==<version>")


def stage_wheel(wheel: Path, root: Path) -> str:
    """Link (or copy) a wheel into ``build/container-wheels`` under the build context: BentoML takes
    ``python.wheels`` only as paths inside it. Returns the path relative to ``root``."""
    folder = Path(root) / WHEELS_STAGE
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / wheel.name
    if not (target.is_file() and target.stat().st_size == wheel.stat().st_size):
        target.unlink(missing_ok=True)
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copy2(wheel, target)
    return str(target.relative_to(root))


def bentofile_for(settings: ContainerParams, bentofile: Path, out_dir: Path, root: Path) -> Path:
    """Write ``bentofile.yaml`` with the container settings applied into ``out_dir``; return its path.

    Online: ``docker.base_image`` and torch from ``torch_index_url`` (an extra index; uv takes the
    best match across indexes, so ``torch==X`` resolves to ``X+cpu``). Offline: the local base image,
    and the pinned torch wheel from ``offline_torch_wheels`` copied into the Bento (``python.wheels``)
    and found there while installing (``find_links: wheels``: install.sh runs in env/python)."""
    doc = yaml.safe_load(Path(bentofile).read_text())
    docker, python = doc.setdefault("docker", {}), doc.setdefault("python", {})
    if settings.offline:
        version = _torch_pin(python)
        folder = Path(settings.offline_torch_wheels)
        wheels = sorted(folder.glob(f"torch-{version}[+-]*cp311*.whl"))
        if not wheels:
            raise ContainerError(
                f"serving.container.offline is true but {folder} has no torch-{version} cp311 wheel"
            )
        docker["base_image"] = settings.offline_base_image
        python.pop("extra_index_url", None)
        python["wheels"] = [stage_wheel(wheels[-1].resolve(), root)]
        python["find_links"] = ["wheels"]
    else:
        docker["base_image"] = settings.base_image
        python["extra_index_url"] = [settings.torch_index_url]
    out = Path(out_dir) / "bentofile.yaml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _run(cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def _builds_with_buildkit(client: str) -> bool:
    try:
        version = _run([client, "version", "--format", "{{.Client.Version}}"], timeout=20).stdout.strip()
        major = int(re.match(r"(\d+)", version).group(1)) if re.match(r"\d+", version) else 0
        return 0 < major < 23 or _run([client, "buildx", "version"], timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def docker_client(preferred: str | None = None) -> str:
    """``$REGIONMED_DOCKER``, else ``preferred``, else the first ``docker`` on PATH (then
    /usr/bin/docker) that builds with BuildKit; raises ``ContainerError`` naming those tried."""
    explicit = os.environ.get(ENV_DOCKER) or preferred
    if explicit:
        return explicit
    seen = []
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/bin"]:
        path = Path(folder) / "docker"
        if path.is_file() and str(path.resolve()) not in seen:
            seen.append(str(path.resolve()))
            if _builds_with_buildkit(str(path)):
                return str(path)
    raise ContainerError(
        f"no docker client that builds with BuildKit (tried {seen or 'none on PATH'}); "
        "install Debian's docker.io (scripts/docker_host.sh) or Docker's buildx plugin"
    )


def daemon_problem(client: str | None = None) -> str | None:
    """Why no Docker daemon can be used (None when one answers)."""
    try:
        client = client or docker_client()
    except ContainerError as exc:
        return str(exc)
    try:
        proc = _run([client, "info", "--format", "{{.ServerVersion}}"], timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{client} info failed: {exc}"
    if proc.returncode != 0 or not proc.stdout.strip():
        return f"no Docker daemon answers {client} ({(proc.stderr or proc.stdout).strip()[:300]})"
    return None


def image_exists(client: str, ref: str) -> bool:
    return _run([client, "image", "inspect", ref]).returncode == 0


def image_size(client: str, ref: str) -> int:
    return int(_run([client, "image", "inspect", "-f", "{{.Size}}", ref]).stdout.strip())


def containerize(
    bento_tag: str, image: str, client: str, bentoml_home: Path, log=print, extra_opts: tuple[str, ...] = ()
) -> tuple[str, float]:
    """``bentoml containerize`` with ``client`` as ``docker``; returns the image ref and the seconds."""
    ref = f"{image}:{bento_tag.split(':')[-1]}"
    with tempfile.TemporaryDirectory(prefix="regionmed-docker-") as bindir:
        os.symlink(client, Path(bindir) / "docker")  # BentoML runs the first `docker` on PATH
        env = {
            **os.environ,
            "BENTOML_HOME": str(bentoml_home),
            "BENTOML_DO_NOT_TRACK": "true",
            "DOCKER_BUILDKIT": "1",
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        cmd = [
            sys.executable,
            "-m",
            "bentoml",
            "containerize",
            bento_tag,
            "-t",
            ref,
            "--backend",
            "docker",
            "--opt",
            "progress=plain",
            *[f"--opt={o}" for o in extra_opts],
        ]
        start = time.perf_counter()
        # cwd "/": BentoML 1.4.40 resolves docker.dockerfile_template inside its temporary build
        # context but refuses any file outside the working directory, so from anywhere else it fails
        proc = subprocess.run(
            cmd, env=env, cwd="/", capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
        seconds = time.perf_counter() - start
    if proc.returncode != 0 and (unresolved := name_resolution_failure(f"{proc.stdout}\n{proc.stderr}")):
        raise ContainerError(f"bentoml containerize {bento_tag} failed: {unresolved}\n{OFFLINE_HINT}")
    if proc.returncode != 0 or not image_exists(client, ref):
        raise ContainerError(
            f"bentoml containerize {bento_tag} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    log(f"built {ref} from {bento_tag} in {seconds:.0f} s")
    return ref, seconds


def prepare_log_dir(path: Path) -> Path:
    """The host folder mounted as the embedding log: writable by the image's non-root user."""
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, BENTO_UID, BENTO_UID)
    else:
        path.chmod(0o777)  # the container's uid 1034 is not ours: let it write
    return path


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS picks it; bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, timeout: float, alive=lambda: None) -> float:
    """Seconds until ``GET url/readyz`` answers 200; ``alive()`` raises when the server is gone;
    ``TimeoutError`` after ``timeout`` seconds."""
    import httpx

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        alive()
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.perf_counter() - start
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready in {timeout:.0f} s")


class Container:
    """``docker run`` of the image on ``127.0.0.1:port`` (``--init``: signals reach the server, zombies
    are reaped; ``--restart unless-stopped``: :data:`RESTART_POLICY`), with the embedding-log folder
    mounted at /logs and ``api_key`` in the variable ``api_key_env``: the one the packaged service reads
    (``serving.api_key_env``), so a renamed setting is the name the container gets."""

    def __init__(
        self,
        client: str,
        ref: str,
        port: int,
        *,
        log_dir: Path | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        env: dict[str, str] | None = None,
        restart: str = RESTART_POLICY,
    ):
        if api_key and not api_key_env:
            raise ValueError("an api_key needs api_key_env, the variable the service reads it from")
        self.client, self.ref, self.port = client, ref, port
        self.name = f"regionmed-{secrets.token_hex(4)}"
        self.url = f"http://127.0.0.1:{port}"
        self.log_dir, self.env = log_dir, dict(env or {})
        self.api_key, self.api_key_env, self.restart = api_key, api_key_env, restart
        self.started_at: float | None = None

    def run_command(self) -> tuple[list[str], dict[str, str]]:
        """The ``docker run`` command and the variables it passes into the container: each is named
        on the command line (``-e NAME``) and its value is taken from the client's environment, so
        the key never appears in a process listing."""
        cmd = [
            self.client,
            "run",
            "-d",
            "--init",
            "--restart",
            self.restart,
            "--name",
            self.name,
            "-p",
            f"127.0.0.1:{self.port}:{CONTAINER_PORT}",
        ]
        env = dict(self.env)
        if self.api_key:
            env[self.api_key_env] = self.api_key
        if self.log_dir:
            cmd += ["-v", f"{prepare_log_dir(self.log_dir)}:{LOG_MOUNT}"]
            env[ENV_LOG_DIR] = LOG_MOUNT
        for key in env:
            cmd += ["-e", key]
        return [*cmd, self.ref], env

    def start(self) -> None:
        cmd, env = self.run_command()
        self.started_at = time.perf_counter()
        proc = _run(cmd, env={**os.environ, **env})
        if proc.returncode != 0:
            raise ContainerError(f"docker run {self.ref} failed: {proc.stderr.strip()}")

    def state(self) -> dict:
        proc = _run([self.client, "inspect", "-f", "{{json .State}}", self.name])
        return json.loads(proc.stdout) if proc.returncode == 0 else {}

    def logs(self, tail: int = 200) -> str:
        proc = _run([self.client, "logs", "--tail", str(tail), self.name])
        return proc.stdout + proc.stderr

    def wait_ready(self, timeout: float = 300) -> float:
        """Seconds from ``docker run`` until ``/readyz`` answers 200; raises with the container's log."""

        def alive() -> None:
            state = self.state()
            if not state.get("Running", False):
                raise ContainerError(
                    f"container {self.name} exited ({state.get('ExitCode')}):\n{self.logs()}"
                )
            if state.get("Restarting") or state.get("RestartCount"):  # the restart policy at work
                raise ContainerError(
                    f"container {self.name} exited and Docker restarted it ({state.get('RestartCount')} "
                    f"times, --restart {self.restart}):\n{self.logs()}"
                )

        try:
            wait_until_ready(self.url, timeout - (time.perf_counter() - self.started_at), alive)
        except TimeoutError:
            raise ContainerError(f"{self.name} not ready in {timeout:.0f} s:\n{self.logs()}") from None
        return time.perf_counter() - self.started_at

    def stop(self, timeout: float = 10) -> tuple[float, int | None]:
        """SIGTERM (``docker stop``: a stop the restart policy keeps, unlike a crash); the seconds until the
        container exited and its exit code (None if it had to be killed after ``timeout``)."""
        start = time.perf_counter()
        _run([self.client, "stop", "--time", str(int(timeout)), self.name], timeout=timeout + 30)
        seconds = time.perf_counter() - start
        code = self.state().get("ExitCode")
        return seconds, None if code is None or (code == 137 and seconds >= timeout) else int(code)

    def remove(self) -> None:
        _run([self.client, "rm", "-f", self.name])


def new_api_key() -> str:
    return secrets.token_urlsafe(24)


def run_base_script(tag: str, root: Path, client: str, log=print) -> None:
    """scripts/container_base.sh TAG (root, debootstrap and a Docker daemon needed)."""
    script = Path(root) / "scripts" / "container_base.sh"
    if shutil.which("debootstrap") is None:
        raise ContainerError("the local base image needs debootstrap (scripts/docker_host.sh installs it)")
    proc = subprocess.run(
        ["bash", str(script), tag],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        env={**os.environ, "DOCKER": client},
    )
    if proc.returncode != 0:
        raise ContainerError(
            f"{script} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    log(proc.stdout.strip())
