"""Where the service reads its settings and finds its model.

Settings are the ``serving:`` section of ``params.yaml`` (the file in ``$REGIONMED_PARAMS``, else
``params.yaml`` in the working directory; a Bento carries its own copy), read through the one
params loader (:func:`regionmed.params.load_params`) once when the service module is imported: BentoML fixes
batch sizes and latencies when the class is decorated.

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


def service_params(path: str | Path | None = None) -> Params:
    """The params file the service reads (module docstring); the defaults when there is none."""
    explicit = path or os.environ.get(ENV_PARAMS)
    p = Path(explicit or "params.yaml")
    if not p.is_file():
        if explicit:
            raise FileNotFoundError(f"params file {p} (from {ENV_PARAMS}) does not exist")
        return Params()
    return load_params(p)


def load_serving_params(path: str | Path | None = None) -> ServingParams:
    """The ``serving:`` section of the params file (defaults when there is no file)."""
    return service_params(path).serving


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
    except (OSError, ValueError, yaml.YAMLError):
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
