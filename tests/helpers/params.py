"""The repository's params for tests: ``params.yaml`` (the one home of every default) with a test's
overrides, never settings built from nothing (the settings models have no defaults of their own).

Overrides merge the way :func:`regionmed.params.merge_overrides` does: a section is merged key by key,
any other value (a dict-valued setting such as ``gate.floors`` included) replaces the file's.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

from regionmed.model.config import ModelConfig
from regionmed.params import Params, load_params, merge_overrides

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_PARAMS = REPO_ROOT / "params.yaml"


@cache
def _repo_raw() -> str:
    return REPO_PARAMS.read_text()


def repo_params_dict(overrides: dict | None = None) -> dict:
    """The repository's params.yaml as a raw dict, ``overrides`` merged over it (e.g. to write a file)."""
    raw = yaml.safe_load(_repo_raw())
    return merge_overrides(Params, raw, overrides) if overrides else raw


def default_params(overrides: dict | None = None) -> Params:
    """The repository's params (``params.yaml``) with ``overrides`` merged over them, validated."""
    return load_params(REPO_PARAMS, overrides)


def write_params(path: str | Path, overrides: dict | None = None) -> Path:
    """A complete params file at ``path``: the repository's with ``overrides``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(repo_params_dict(overrides), sort_keys=False))
    return path


def tiny_model_config(**overrides) -> ModelConfig:
    """The ``model:`` section of params.yaml with ``overrides`` per field or section, e.g.
    ``tiny_model_config(vision={"image_size": 64, "hidden": 32}, embed_dim=16)``."""
    raw = yaml.safe_load(_repo_raw())["model"]
    return ModelConfig.model_validate(merge_overrides(ModelConfig, raw, overrides))


def default_section(dotted: str, **overrides):
    """One section of the repository's params with ``overrides``, e.g.
    ``default_section("corpus.importer", path="data.jsonl")`` (an ``ImportParams``)."""
    keys = dotted.split(".")
    nested: dict = overrides
    for key in reversed(keys):
        nested = {key: nested}
    section = default_params(nested)
    for key in keys:
        section = section[key] if isinstance(section, dict) else getattr(section, key)
    return section


def with_updates(params: Params, overrides: dict) -> Params:
    """``params`` with ``overrides`` merged over them (as over the file), validated again."""
    return Params.model_validate(merge_overrides(Params, params.model_dump(), overrides))
