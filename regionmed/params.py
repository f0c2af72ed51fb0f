"""The one typed loader of ``params.yaml``.

Every stage reads its parameters through :func:`load_params`; DVC reads the same file (the
``params:`` lists in ``dvc.yaml``). Models are ``extra="forbid"`` so that a typo in
``params.yaml`` is an error that names the key, not a silently ignored setting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from regionmed.model.config import ModelConfig
from regionmed.params_operations import (  # noqa: F401  (the sections, importable from here too)
    ContainerParams,
    EmbeddingLogParams,
    FlowParams,
    MonitorDescriptors,
    MonitorFlowParams,
    MonitorParams,
    ReportRetention,
    RetrainFlowParams,
    ServingBatching,
    ServingParams,
)
from regionmed.params_pipeline import (  # noqa: F401  (the sections, importable from here too)
    IMPORTERS,
    AnnotateParams,
    AugmentParams,
    CorpusParams,
    DetectorParams,
    EvaluateParams,
    GateParams,
    ImportParams,
    PhaseParams,
    SplitFractions,
    SyntheticParams,
    TrainParams,
    ValidationParams,
    ValidationThresholds,
    ValidationVocabulary,
)
from regionmed.strict import TRACE_ENV, StrictModel, record_reads

DEFAULT_PARAMS_FILE = Path("params.yaml")


class Params(StrictModel):
    seed: int
    corpus: CorpusParams
    annotate: AnnotateParams
    validation: ValidationParams
    model: ModelConfig
    train: TrainParams
    evaluate: EvaluateParams
    gate: GateParams
    serving: ServingParams
    monitor: MonitorParams
    flows: FlowParams
    # One entry per progressive phase (one DVC stage each); see regionmed/training/train.py.
    phases: dict[Literal["global", "region", "joint", "baseline"], PhaseParams]

    @property
    def stage_corpus(self) -> str:
        """The corpus every stage after annotate_regions reads: the annotated one."""
        return self.annotate.out_dir

    def check_model_fits_corpus(self) -> None:
        """Training needs the model's input size to be the corpus's image size (checked when it starts)."""
        v, c = self.model.vision, self.corpus
        if v.image_size != c.image_size or v.channels != c.channels:
            raise ValueError(
                f"model.vision (image_size {v.image_size}, channels {v.channels}) must match the corpus "
                f"(image_size {c.image_size}, channels {c.channels})"
            )


class ParamsError(ValueError):
    """A params file that cannot be used; the message names the file, each bad key and what it
    expected (the CLI prints it and exits 2, no traceback)."""


def load_params(path: str | Path = DEFAULT_PARAMS_FILE, overrides: dict | None = None) -> Params:
    """Read ``params.yaml`` into typed, validated :class:`Params`; :class:`ParamsError` if it cannot.

    ``overrides`` is a nested dict merged over the file (:func:`merge_overrides`; tests and benchmarks).
    """
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
    if overrides:
        raw = merge_overrides(Params, raw, overrides)
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(describe_params_error(exc, path)) from None
    if os.environ.get(
        TRACE_ENV
    ):  # which keys this process reads (regionmed/strict.py; tests/test_dvc_deps.py)
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
