"""The steps of the ``package`` stage (regionmed/serving/stage.py runs them in order): the gated model
into the BentoML store, a Bento, and the new champion.

Steps (each one a function, so tests can run them alone):

1. refuse unless the gate passed (``gate.decision_file``; ``--force`` overrides, and says so);
2. embed the ``serving.index_split`` split of the corpus into a retrieval index (ids, modality,
   labels, embeddings; no report text);
3. save the exported model and the index into the BentoML model store (``$BENTOML_HOME``:
   ``serving.bentoml_home``, else the environment's, else ``.state/bentoml``) as
   ``<serving.model_name>:<version>`` with labels and metadata (metrics, gate decision, git
   revision, DVC hashes of the corpus and the weights) and the params it was packaged with
   (``params.yaml``: the service serving it reads its settings from there);
4. build a Bento from ``bentofile.yaml`` with ``serving.container`` applied (base image, torch
   source: ``container.bentofile_for``), ``bentoml build`` in a subprocess so the store location is
   exactly the one chosen here;
5. record the model as the champion the gate compares the next candidate with
   (``gate.champion_file``, committed with the repository: regionmed/evaluation/champion.py) and write
   the stage's summary (``serving.metrics_file``; the store's path relative to the repository when
   inside it); the index also goes to ``serving.index_dir`` for serving from the repo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from regionmed.errors import BadInput, CheckFailed, StageBroke
from regionmed.params import Params
from regionmed.serving.settings import (
    STORE_INDEX_SUBDIR,
    STORE_INFO_FILE,
    STORE_MODEL_SUBDIR,
    STORE_PARAMS_FILE,
)

DEFAULT_BENTOML_HOME = ".state/bentoml"
BENTO_BUILD_TIMEOUT_S = 600


class PackageError(BadInput):
    """Packaging cannot start: an input is missing or unusable (exit status 2: regionmed/errors.py)."""


class GateNotPassed(CheckFailed):
    """The gate did not pass the model, and ``--force`` was not given: nothing is packaged."""


class BentoBuildFailed(StageBroke):
    """``bentoml build`` failed or gave no tag."""


def resolve_bentoml_home(params: Params, root: str | Path = ".") -> Path:
    home = params.serving.bentoml_home or os.environ.get("BENTOML_HOME") or DEFAULT_BENTOML_HOME
    return (Path(root) / home).resolve()


def read_gate(params: Params) -> dict:
    path = Path(params.gate.decision_file)
    if not path.is_file():
        raise PackageError(f"no gate decision at {path}: run the gate stage first")
    return json.loads(path.read_text())


def git_revision(root: str | Path = ".") -> dict[str, Any]:
    def run(*args):
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False
        )

    try:
        rev = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"git_rev": "unknown", "git_dirty": None}
    return {
        "git_rev": rev.stdout.strip() if rev.returncode == 0 else "unknown",
        "git_dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None,
    }


def dvc_hashes(paths: dict[str, str], lock_file: str | Path = "dvc.lock") -> dict[str, str | None]:
    """``name → md5`` of DVC-tracked outs (``paths``: name → out path) from ``dvc.lock``; None if absent."""
    found: dict[str, str | None] = dict.fromkeys(paths)
    lock = Path(lock_file)
    if not lock.is_file():
        return found
    doc = yaml.safe_load(lock.read_text()) or {}
    wanted = {os.path.normpath(p): name for name, p in paths.items()}
    for stage in (doc.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            name = wanted.get(os.path.normpath(str(out.get("path", ""))))
            if name is not None:
                found[name] = out.get("md5")
    return found


def _without_none(obj):
    if isinstance(obj, dict):
        return {k: _without_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, (list, tuple)):
        return [_without_none(v) for v in obj if v is not None]
    return obj


def save_to_store(
    model_dir: Path,
    index,
    home: Path,
    name: str,
    labels: dict[str, str],
    metadata: dict[str, Any],
    params_text: str,
) -> str:
    """Copy the model folder and the index into a new store model, with the params it was packaged with
    (``params_text``: the service reads them when it serves this model); returns its tag."""
    import bentoml
    from bentoml._internal.models import ModelStore

    store = ModelStore(home / "models")
    with bentoml.models.create(name, labels=labels, metadata=metadata, _model_store=store) as model:
        tag = str(model.tag)
        index.model_version = tag
        shutil.copytree(model_dir, Path(model.path) / STORE_MODEL_SUBDIR)
        index.save(Path(model.path) / STORE_INDEX_SUBDIR)
        (Path(model.path) / STORE_INFO_FILE).write_text(
            json.dumps({"tag": tag, **metadata}, indent=1, sort_keys=True)
        )
        (Path(model.path) / STORE_PARAMS_FILE).write_text(params_text)
    return tag


def params_document(params: Params) -> str:
    """Every setting of ``params`` as a complete params file (what the store model carries)."""
    return yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False)


def build_bento(bentofile: Path, home: Path, root: Path, version: str | None = None) -> str:
    """``bentoml build`` in a subprocess against ``home``; returns the Bento's tag."""
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    cmd = [sys.executable, "-m", "bentoml", "build", "-f", str(bentofile), "-o", "tag"]
    if version:
        cmd += ["--version", version]
    try:
        proc = subprocess.run(
            [*cmd, str(root)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=BENTO_BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BentoBuildFailed(f"bentoml build took over {BENTO_BUILD_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise BentoBuildFailed(
            f"bentoml build failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    for line in reversed(proc.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("__tag__:"):
            return line.removeprefix("__tag__:")
        if ":" in line and " " not in line:
            return line
    raise BentoBuildFailed(f"bentoml build printed no tag:\n{proc.stdout[-2000:]}")


def store_record(
    gate: dict, force: bool, engine, index, split: str, provenance: dict[str, Any], packaged_at: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """``(metadata, labels)`` of the store model: the metrics the gate judged (the next gate compares
    with these), the decision, provenance, the index and the model's shape. A pure function."""
    passed = bool(gate.get("passed"))
    metadata = {
        "metrics": gate.get("candidate_metrics", {}),
        "gate": {
            "passed": passed,
            "n_failed": gate.get("n_failed"),
            "forced": bool(force and not passed),
            "champion_before": gate.get("champion"),
        },
        **provenance,
        "packaged_at": packaged_at,
        "weights_version": engine.version,
        "index": {"split": split, "n_images": index.count("image"), "n_reports": index.count("report")},
        "model": {
            "embed_dim": engine.embed_dim,
            "image_size": engine.image_size,
            "channels": engine.channels,
            "global_only": engine.global_only,
        },
    }
    labels = {
        "project": "regionmed",
        "stage": "package",
        "gate": "passed" if passed else "forced",
        "git_rev": provenance["git_rev"][:12],
        "index_split": split,
    }
    return _without_none(metadata), labels  # BentoML refuses None in metadata
