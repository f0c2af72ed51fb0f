"""Reading ``params.yaml`` into a typed root, with no settings section of its own.

``params.yaml`` holds two groups of sections, each read through its own root so that a stage's
code (and its DVC deps) holds only the settings it can read:

- the pipeline's (:class:`regionmed.params_pipeline.PipelineParams`): corpus to gate;
- operations' (:class:`regionmed.params_operations.OperationsParams`): serving, monitoring, flows;
- :class:`regionmed.params.Params` combines both, for the stages and tools that read both.

A root ignores the sections of the other group (:data:`SECTIONS`, listed once here; a test holds
them to the roots' fields) and refuses any other unknown key, naming it; every key of its own
sections must be stated (the models have no defaults: ``params.yaml`` is their one home).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from regionmed.errors import BadInput
from regionmed.strict import TRACE_ENV, record_reads

DEFAULT_PARAMS_FILE = Path("params.yaml")
# The top-level sections of params.yaml, by root.
SECTIONS = {
    "pipeline": (
        *("seed", "cluster", "corpus", "annotate", "validation"),
        *("model", "train", "phases", "evaluate", "gate"),
    ),
    "operations": ("serving", "monitor", "flows"),
}
ALL_SECTIONS = frozenset(name for names in SECTIONS.values() for name in names)

Root = TypeVar("Root", bound=BaseModel)


class ParamsError(BadInput):
    """A params file that cannot be used; the message names the file, each bad key and what it
    expected (bad input: the CLI prints it and exits 2, no traceback)."""

    kind = "bad settings"


def read_params_file(path: str | Path) -> dict:
    """The raw mapping of a params file; :class:`ParamsError` if it cannot be read or parsed."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise ParamsError(
            f"params file {path} cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ParamsError(
            f"params file {path} is not valid YAML{where}: "
            f"{getattr(exc, 'problem', None) or type(exc).__name__}"
        ) from None
    if not isinstance(raw, dict):
        raise ParamsError(f"params file {path} must hold a mapping of sections, not {type(raw).__name__}")
    return raw


def load_root(
    root: type[Root], path: str | Path = DEFAULT_PARAMS_FILE, overrides: dict | None = None
) -> Root:
    """Read ``path`` into ``root`` (typed, validated); :class:`ParamsError` if it cannot.

    ``overrides`` is a nested dict merged over the file (:func:`merge_overrides`; tests and benchmarks).
    Sections of the other roots are left out; with ``$REGIONMED_PARAMS_TRACE`` set, the keys this
    process reads are recorded (regionmed/strict.py; tests/test_dvc_deps.py).
    """
    raw = read_params_file(path)
    if overrides:
        raw = merge_overrides(root, raw, overrides)
    own = {k: v for k, v in raw.items() if k in root.model_fields or k not in ALL_SECTIONS}
    try:
        params = root.model_validate(own)
    except ValidationError as exc:
        raise ParamsError(describe_params_error(exc, path)) from None
    if os.environ.get(TRACE_ENV):
        record_reads(params, os.environ[TRACE_ENV])
    return params


def describe_params_error(exc: ValidationError, path: str | Path, max_errors: int = 20) -> str:
    """One line per bad key: ``corpus.image_size: Input should be a valid integer (got 'big')``."""
    lines = [f"params file {path}: {exc.error_count()} invalid setting(s)"]
    for err in exc.errors(include_url=False)[:max_errors]:
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        if err["type"] == "missing":  # its input is the whole section around it: not worth printing
            lines.append(f"  {key}: {err['msg']} (not in the file)")
            continue
        given = repr(err.get("input"))
        given = given if len(given) <= 80 else given[:77] + "..."
        lines.append(f"  {key}: {err['msg']} (got {given})")
    return "\n".join(lines)


def merge_overrides(model: type[BaseModel], base: dict, overrides: dict) -> dict:
    """``overrides`` merged over ``base`` (raw settings of ``model``) the way a setting is meant: a section
    (a settings model such as ``train``, or an entry of a dict of them such as ``phases.global``) is
    merged key by key; any other value, a dict-valued setting included (``gate.floors``,
    ``phases.joint.loss_weights``), is replaced whole. A new dict."""
    merged = dict(base)
    for key, value in overrides.items():
        field = model.model_fields.get(key)
        kind, section = _section_of(field.annotation) if field is not None else (None, None)
        if kind is None or not isinstance(value, dict) or not isinstance(merged.get(key), dict):
            merged[key] = value
        elif kind == "model":
            merged[key] = merge_overrides(section, merged[key], value)
        else:  # a dict of sections: each entry merged, new entries added
            entries = dict(merged[key])
            for name, entry in value.items():
                mergeable = isinstance(entry, dict) and isinstance(entries.get(name), dict)
                entries[name] = merge_overrides(section, entries[name], entry) if mergeable else entry
            merged[key] = entries
    return merged


def _section_of(annotation) -> tuple[str | None, type[BaseModel] | None]:
    """``("model", M)``: a settings model field; ``("dict", M)``: a dict of them; else ``(None, None)``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    if get_origin(annotation) is dict:
        value = get_args(annotation)[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return "dict", value
    return None, None


def deep_merge(base: dict, extra: dict) -> dict:
    """``extra`` merged over ``base`` key by key (nested dicts merged, other values replaced); a new dict."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
