"""``regionmed container``: the whole container path, from a packaged Bento to a stopped container.

1. a docker client that builds with BuildKit, and a daemon that answers;
2. the Bento: ``--bento``, else the champion the package stage recorded (``gate.champion_file``),
   else ``<name>_service:latest``;
3. its base image: when the Bento was built for ``serving.container.offline_base_image`` and that
   image is missing, ``--base`` makes it (scripts/container_base.sh), otherwise it stops and says so;
4. ``bentoml containerize`` (image ``serving.container.image:<bento version>``), its size;
5. ``docker run`` on 127.0.0.1 with an API key, the embedding-log folder mounted and the restart policy
   ``unless-stopped`` (Docker starts it again after a crash or a daemon restart); wait for ``/readyz``;
   ``metadata`` refused without the key and answered with it;
6. SIGTERM, and how long the container took to exit (unless ``--keep-running``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from regionmed.params import Params
from regionmed.serving.container import (
    RESTART_POLICY,
    Container,
    ContainerError,
    containerize,
    daemon_problem,
    docker_client,
    free_port,
    image_exists,
    image_size,
    new_api_key,
    run_base_script,
)
from regionmed.serving.package import resolve_bentoml_home


def packaged_bento(params: Params) -> str:
    """The Bento the package stage built last (the champion record), else the newest of the service."""
    champion = Path(params.gate.champion_file)
    if champion.is_file():
        bento = json.loads(champion.read_text()).get("bento")
        if bento:
            return bento
    return "regionmed_service:latest"


def bento_base_image(home: Path, bento_tag: str) -> str | None:
    """The ``docker.base_image`` a Bento was built with (from its bento.yaml)."""
    from bentoml._internal.bento import BentoStore

    bento = BentoStore(home / "bentos").get(bento_tag)
    info = yaml.safe_load(Path(bento.path_of("bento.yaml")).read_text())
    return (info.get("docker") or {}).get("base_image")


def ensure_base_image(
    params: Params, client: str, base_image: str | None, make: bool, root: Path, log=print
) -> None:
    c = params.serving.container
    if not base_image or image_exists(client, base_image):
        return
    if base_image != c.offline_base_image:
        return  # a registry image: the build pulls it
    if not make:
        raise ContainerError(
            f"the Bento's base image {base_image} does not exist: make it with "
            "`regionmed container --base` (scripts/container_base.sh)"
        )
    log(f"making the local base image {base_image} (scripts/container_base.sh)")
    run_base_script(base_image, root, client, log=log)


def check_api_key(url: str, key: str) -> None:
    import httpx

    refused = httpx.post(f"{url}/metadata", json={}, timeout=30)
    answered = httpx.post(f"{url}/metadata", json={}, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    if refused.status_code != 401 or answered.status_code != 200:
        raise ContainerError(
            f"API key not enforced: without it {refused.status_code}, with it {answered.status_code}"
        )


def container_path(
    params: Params,
    *,
    root: Path = Path("."),
    make_base: bool = False,
    build: bool = True,
    bento: str | None = None,
    port: int | None = None,
    log_dir: Path | None = None,
    keep_running: bool = False,
    log=print,
) -> dict[str, Any]:
    """Steps 1-6 of the module docstring; returns what was measured."""
    root = Path(root).resolve()
    client = docker_client(params.serving.container.docker)
    if problem := daemon_problem(client):
        raise ContainerError(problem)
    home = resolve_bentoml_home(params, root)
    bento = bento or packaged_bento(params)
    record: dict[str, Any] = {"bento": bento, "docker": client}
    ref = f"{params.serving.container.image}:{bento.split(':')[-1]}"
    if build or not image_exists(client, ref):
        ensure_base_image(params, client, bento_base_image(home, bento), make_base, root, log=log)
        ref, record["build_seconds"] = containerize(
            bento, params.serving.container.image, client, home, log=log
        )
    record["image"], record["image_bytes"] = ref, image_size(client, ref)
    log(f"image {ref}: {record['image_bytes'] / 1e6:.0f} MB")

    key = new_api_key()
    log_dir = Path(log_dir or params.serving.embedding_log.dir)
    key_env = params.serving.api_key_env  # the variable the packaged service reads the key from
    container = Container(client, ref, port or free_port(), log_dir=log_dir, api_key=key, api_key_env=key_env)
    container.start()
    record["restart_policy"] = RESTART_POLICY
    log(
        f"docker run --restart {RESTART_POLICY}: Docker starts {container.name} again after a crash or a "
        "restart of the daemon, not after `docker stop`"
    )
    try:
        record["ready_seconds"] = container.wait_ready()
        log(
            f"{container.name} ready at {container.url} in {record['ready_seconds']:.1f} s "
            f"(embedding log: {log_dir.resolve()})"
        )
        check_api_key(container.url, key)
        log("API key: refused without it (401), answered with it (200)")
        if keep_running:
            record.update(name=container.name, url=container.url)
            log(f"left running: {key_env}={key}; stop with `{client} stop {container.name}`")
            return record
        record["stop_seconds"], record["exit_code"] = container.stop()
        log(f"stopped by SIGTERM in {record['stop_seconds']:.1f} s (exit code {record['exit_code']})")
    except BaseException:
        log(container.logs(60))
        container.stop()
        container.remove()
        raise
    container.remove()
    return record
