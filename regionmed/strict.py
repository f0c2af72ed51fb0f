"""The base of every settings model read from ``params.yaml``, and a record of which keys a process read.

:class:`StrictModel`: an unknown key is an error that names it, and values do not change once read.

The record exists so that a test can hold ``dvc.yaml`` to what each stage really reads: with
``$REGIONMED_PARAMS_TRACE`` set to a file, :func:`regionmed.params.load_params` starts recording,
every read of a leaf value of the loaded params (``params.evaluate.batch_size``, a whole dict such
as ``gate.floors``, or a whole section through ``model_dump``) adds its dotted key, and at exit the
process appends one JSON line ``{"argv": [...], "reads": [...]}`` to that file. Settings models
that were not loaded as params (a model's ``config.json``) are never recorded.
"""

from __future__ import annotations

import atexit
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

TRACE_ENV = "REGIONMED_PARAMS_TRACE"
_paths: dict[int, str] = {}  # id(model) -> its dotted key in the loaded params, while recording
_keep: list[BaseModel] = []  # the recorded models stay alive, so an id is never reused
_reads: set[str] = set()


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if _paths and not name.startswith("_"):
            path = _paths.get(id(self))
            if path is not None and name in type(self).model_fields and not _is_branch(value):
                _reads.add(f"{path}{name}")
        return value

    def model_dump(self, *args, **kwargs) -> dict[str, Any]:
        path = _paths.get(id(self)) if _paths else None
        if path:
            _reads.add(path.rstrip("."))
        return super().model_dump(*args, **kwargs)


def _is_branch(value: Any) -> bool:
    """A settings model, or a dict of them (``phases``): its leaves are recorded, not the branch."""
    if isinstance(value, StrictModel):
        return True
    return isinstance(value, dict) and bool(value) and all(isinstance(v, StrictModel) for v in value.values())


def record_reads(root: StrictModel, out_file: str | Path) -> None:
    """Start recording the reads of ``root``'s keys; append them to ``out_file`` at exit."""

    def walk(model: StrictModel, prefix: str) -> None:
        _paths[id(model)] = prefix
        _keep.append(model)
        for name in type(model).model_fields:
            value = super(StrictModel, model).__getattribute__(name)
            if isinstance(value, StrictModel):
                walk(value, f"{prefix}{name}.")
            elif _is_branch(value):
                for key, item in value.items():
                    walk(item, f"{prefix}{name}.{key}.")

    first = not _paths
    walk(root, "")
    if first:
        atexit.register(_write, Path(out_file))


def recorded_reads() -> set[str]:
    return set(_reads)


def _write(out_file: Path) -> None:
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"argv": sys.argv, "reads": sorted(_reads)}) + "\n")
