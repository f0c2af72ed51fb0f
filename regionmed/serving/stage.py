"""The ``package`` stage: the gated model into the BentoML store, a Bento, and the new champion.

The steps are regionmed/serving/package.py's (its docstring lists them); :func:`run` takes them in
order: it refuses unless the gate passed, builds the retrieval index of ``serving.index_split``,
saves model + index + params into the store, builds the Bento, records the champion and writes the
stage's summary (``serving.metrics_file``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regionmed.atomic import atomic_write_text
from regionmed.evaluation.champion import write_champion
from regionmed.params import Params
from regionmed.paths import repo_relative
from regionmed.serving.container import bentofile_for
from regionmed.serving.package import (
    GateNotPassed,
    PackageError,
    build_bento,
    dvc_hashes,
    git_revision,
    params_document,
    read_gate,
    resolve_bentoml_home,
    save_to_store,
    store_record,
)


@dataclass(frozen=True)
class PackageResult:
    record: dict[str, Any]  # what serving.metrics_file holds

    def summary_line(self) -> str:
        r = self.record
        return (
            f"packaged {r['model_tag']} (Bento {r['bento_tag']}) into {r['bentoml_home']} in {r['seconds']} s"
        )


def run(
    params: Params, *, force: bool = False, build: bool | None = None, root: str | Path = ".", log=print
) -> PackageResult:
    """Run the whole stage (module docstring); ``force`` packages a model the gate did not pass (and
    records it as forced); ``build`` None: ``serving.build_bento``."""
    from regionmed.env import configure_environment

    configure_environment()
    start = time.perf_counter()
    root = Path(root).resolve()
    s = params.serving
    gate = read_gate(params)
    if not gate.get("passed") and not force:
        raise GateNotPassed(
            f"the gate did not pass ({gate.get('n_failed')} checks failed; {params.gate.decision_file}); "
            "nothing is packaged (--force packages anyway)"
        )
    model_dir = Path(s.model_dir)
    if not (model_dir / "config.json").is_file():
        raise PackageError(f"{model_dir} is not an exported model folder")
    home = resolve_bentoml_home(params, root)
    home.mkdir(parents=True, exist_ok=True)
    os.environ["BENTOML_HOME"] = str(home)  # for anything below that reads it

    from regionmed.inference.ann import HnswSettings
    from regionmed.inference.engine import Engine
    from regionmed.inference.index import build_index

    engine = Engine.from_dir(model_dir)
    t0 = time.perf_counter()
    index = build_index(
        engine,
        params.stage_corpus,
        s.index_split,
        batch_size=params.evaluate.batch_size,
        ann=HnswSettings.from_params(s.ann),  # HNSW graphs for kinds of serving.ann.min_items items or more
        cluster=params.cluster,  # the images are embedded there, each worker loading model_dir once
        model_dir=model_dir,
    )
    index_seconds = time.perf_counter() - t0
    log(
        f"index: {index.count('image')} images + {index.count('report')} reports of split {s.index_split} "
        f"in {index_seconds:.1f} s"
    )

    hashes = dvc_hashes({"corpus": params.stage_corpus, "weights": s.model_dir}, root / "dvc.lock")
    provenance = {**git_revision(root), "dvc": {k: v or "unknown" for k, v in hashes.items()}}
    metadata, labels = store_record(
        gate,
        force,
        engine,
        index,
        s.index_split,
        provenance,
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    metrics = metadata["metrics"]
    tag = save_to_store(model_dir, index, home, s.model_name, labels, metadata, params_document(params))
    log(f"saved {tag} into {home / 'models'}")
    index.save(s.index_dir)

    bento = None
    if s.build_bento if build is None else build:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="regionmed-bentofile-") as tmp:
            # bentofile.yaml with serving.container applied: base image and torch source of the image
            bentofile = bentofile_for(s.container, root / s.bentofile, Path(tmp), root)
            bento = build_bento(bentofile, home, root)
        log(f"built Bento {bento} in {time.perf_counter() - t0:.1f} s")

    store = repo_relative(
        home, root
    )  # recorded relative to the repository when inside it (a clone reads its own)
    write_champion(
        params.gate.champion_file,
        model_tag=tag,
        bento_tag=bento,
        metrics=metrics,
        packaged_at=metadata["packaged_at"],
        git_rev=provenance["git_rev"],
        bentoml_home=store,
        corpus=gate.get("corpus"),
    )
    record = {
        "model_tag": tag,
        "bento_tag": bento,
        "bentoml_home": store,
        "gate_passed": bool(gate.get("passed")),
        "forced": bool(force and not gate.get("passed")),
        "index_items": len(index.items),
        "seconds": round(time.perf_counter() - start, 1),
    }
    atomic_write_text(s.metrics_file, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return PackageResult(record)
