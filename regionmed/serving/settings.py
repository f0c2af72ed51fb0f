"""Where the service reads its settings and finds its model.

Settings are the ``serving:`` section of a params file, read through the one params loader
(:func:`regionmed.params.load_params`) once when the service module is imported (BentoML fixes batch
sizes and latencies when the class is decorated). The file, first match wins (never a silent fallback
to defaults: the settings models have none):

1. ``$REGIONMED_PARAMS``;
2. the params the model to serve was packaged with (``params.yaml`` in its store folder, written by
   the ``package`` stage): the model of ``$REGIONMED_MODEL_TAG``, else the model a Bento was built with;
3. ``params.yaml`` in the working directory (the repository; a Bento's own copy when it is served);

and when none exists the service stops with an error naming what it tried.

The model, first match wins:

1. ``$REGIONMED_MODEL_DIR``: an exported model folder (e.g. ``models/regionmed``);
2. ``$REGIONMED_MODEL_TAG``: a tag in the BentoML model store (``regionmed:latest``, ``regionmed:<version>``);
3. the model a Bento was built with (the ``regionmed-model`` alias of ``bentofile.yaml``);
4. ``serving.model_dir`` from params, when that folder exists (the repo after ``dvc repro``);
5. the newest ``serving.model_name`` in the store.

The retrieval index: ``$REGIONMED_INDEX_DIR``, else the ``index/`` folder stored with a store
model, else ``serving.index_dir`` (a folder model); without one, ``retrieve`` answers 503.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from regionmed.params import Params, ServingParams, load_params

ENV_PARAMS = "REGIONMED_PARAMS"
ENV_MODEL_DIR = "REGIONMED_MODEL_DIR"
ENV_MODEL_TAG = "REGIONMED_MODEL_TAG"
ENV_INDEX_DIR = "REGIONMED_INDEX_DIR"
ENV_LOG_DIR = "REGIONMED_EMBEDDING_LOG_DIR"
ENV_LOG_SALT = "REGIONMED_LOG_SALT"
MODEL_ALIAS = "regionmed-model"  # the alias bentofile.yaml gives the packaged model
STORE_MODEL_SUBDIR = "model"  # inside a store model's folder: the exported model...
STORE_INDEX_SUBDIR = "index"  # ...and the retrieval index
STORE_INFO_FILE = "package.json"  # the packaging record (metrics, gate, hashes), also in the model's metadata
STORE_PARAMS_FILE = "params.yaml"  # the params the model was packaged with
WORKDIR_PARAMS_FILE = "params.yaml"


def service_params_file() -> Path:
    """The params file the service reads (module docstring); ``FileNotFoundError`` naming what was
    tried when there is none."""
    explicit = os.environ.get(ENV_PARAMS)
    if explicit:
        if not Path(explicit).is_file():
            raise FileNotFoundError(f"params file {explicit} (from ${ENV_PARAMS}) does not exist")
        return Path(explicit)
    tried = []
    if not os.environ.get(ENV_MODEL_DIR):  # a model folder carries no params: only a store model does
        env_tag = os.environ.get(ENV_MODEL_TAG)
        for tag, what in ((env_tag, f"${ENV_MODEL_TAG}={env_tag}"), (MODEL_ALIAS, "the Bento's model")):
            if not tag:
                continue
            folder = _store_model_folder(tag)
            if folder is not None and (folder / STORE_PARAMS_FILE).is_file():
                return folder / STORE_PARAMS_FILE
            tried.append(f"the params packaged with {what} ({'none' if folder is None else folder})")
            if tag is env_tag:
                break  # the model to serve is that one: the Bento's does not speak for it
    workdir = Path(WORKDIR_PARAMS_FILE)
    if workdir.is_file():
        return workdir
    tried.append(f"{workdir.resolve()}")
    raise FileNotFoundError(
        f"no params file for the service: ${ENV_PARAMS} is not set; tried {'; '.join(tried)}"
    )


def service_params(path: str | Path | None = None) -> Params:
    """The params the service reads: ``path``, else :func:`service_params_file`."""
    return load_params(path or service_params_file())


def load_serving_params(path: str | Path | None = None) -> ServingParams:
    """The ``serving:`` section of the service's params (:func:`service_params`)."""
    return service_params(path).serving


def _store_model_folder(tag: str) -> Path | None:
    """The folder of store model ``tag`` (an alias inside a Bento), or None when there is none."""
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    try:
        return Path(bentoml.models.get(tag).path)
    except (NotFound, BentoMLException, ValueError):
        return None


@dataclass
class ModelSource:
    """Where the served model comes from: an exported folder plus what is known about it."""

    path: Path
    version: str | None  # the store tag; None for a folder (the engine hashes the weights)
    origin: str  # env-dir | env-tag | bento | params-dir | store
    info: dict[str, Any] = field(default_factory=dict)
    index_dir: Path | None = None


def resolve_model(settings: ServingParams) -> ModelSource:
    """Find the model to serve (module docstring); raises ``LookupError`` naming what was tried."""
    env_dir = os.environ.get(ENV_MODEL_DIR)
    if env_dir:
        if not Path(env_dir).is_dir():
            raise LookupError(f"{ENV_MODEL_DIR}={env_dir} is not a folder")
        return _folder_source(Path(env_dir), "env-dir", settings)
    env_tag = os.environ.get(ENV_MODEL_TAG)
    if env_tag:
        return _store_source(env_tag, "env-tag")
    try:
        return _store_source(MODEL_ALIAS, "bento")
    except LookupError:
        pass
    if Path(settings.model_dir).is_dir():
        return _folder_source(Path(settings.model_dir), "params-dir", settings)
    try:
        return _store_source(settings.model_name, "store")
    except LookupError:
        raise LookupError(
            f"no model to serve: set {ENV_MODEL_DIR} (a model folder) or {ENV_MODEL_TAG} (a store tag); "
            f"{settings.model_dir} does not exist and the store at $BENTOML_HOME has no "
            f"{settings.model_name!r}"
        ) from None


def _folder_source(path: Path, origin: str, settings: ServingParams) -> ModelSource:
    record = path / STORE_INFO_FILE
    info = json.loads(record.read_text()) if record.is_file() else _repo_info()
    index = os.environ.get(ENV_INDEX_DIR) or settings.index_dir
    return ModelSource(path, None, origin, info, Path(index) if index else None)


def _repo_info() -> dict[str, Any]:
    """A folder model in the repo: the metrics the gate judged and its decision, from the gate
    stage's file (``gate.decision_file``), when it exists (what ``package`` stores with a model)."""
    try:
        gate_file = Path(service_params().gate.decision_file)
        gate = json.loads(gate_file.read_text()) if gate_file.is_file() else None
    except (OSError, ValueError, yaml.YAMLError):  # no params file (FileNotFoundError), or a bad one
        return {}
    if not isinstance(gate, dict):
        return {}
    return {
        "metrics": gate.get("candidate_metrics", {}),
        "gate": {"passed": gate.get("passed"), "n_failed": gate.get("n_failed")},
    }


def _store_source(tag: str, origin: str) -> ModelSource:
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    try:
        model = bentoml.models.get(tag)
    except (NotFound, BentoMLException, ValueError) as exc:
        raise LookupError(f"model {tag!r} is not in the BentoML store ({exc})") from None
    root = Path(model.path)
    info = dict(model.info.metadata or {})
    index = os.environ.get(ENV_INDEX_DIR)
    return ModelSource(
        root / STORE_MODEL_SUBDIR,
        str(model.tag),
        origin,
        info,
        Path(index) if index else root / STORE_INDEX_SUBDIR,
    )
