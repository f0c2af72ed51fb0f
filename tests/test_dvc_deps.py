"""dvc.yaml declares exactly what each stage reads, so `dvc repro` reruns exactly what changed.

Code: every file of a stage's static import closure (tests/helpers/stage_closure.py) is a declared dep, and
every declared ``regionmed/`` dep is in the closure (a folder only when all of it is). Params: a
stage run with ``$REGIONMED_PARAMS_TRACE`` records the keys it read (regionmed/strict.py); the
end-to-end test (tests/test_pipeline_e2e.py) checks those against ``params:`` with
:func:`undeclared_reads`, here tested on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers.stage_closure import (
    PACKAGE,
    REPO_ROOT,
    code_files,
    resolved_stages,
    stage_code,
    undeclared_reads,
)

STAGES = resolved_stages()
TRAINING = {"pretrain_global", "pretrain_region", "pretrain_joint", "pretrain_baseline"}


def declared_code(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if d.split("/")[0] == PACKAGE]


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def closure_problems(stage: dict) -> list[str]:
    code, deps = stage_code(stage["cmd"]), declared_code(stage)
    missing = [f"not declared: {f}" for f in sorted(code) if not covered(f, deps)]
    extra = [
        f"declared but not imported: {d}"
        for d in deps
        if d not in code and not ((REPO_ROOT / d).is_dir() and code_files(d) <= code)
    ]
    return missing + extra


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_declares_exactly_the_code_its_command_imports(name):
    assert closure_problems(STAGES[name]) == [], f"fix the deps of {name} in dvc.yaml"


def test_the_check_catches_an_undeclared_and_an_extra_dep():
    gate = STAGES["gate"]
    short = {**gate, "deps": [d for d in gate["deps"] if d != "regionmed/evaluation/gate.py"]}
    assert closure_problems(short) == ["not declared: regionmed/evaluation/gate.py"]
    wide = {**gate, "deps": [*gate["deps"], "regionmed/model"]}
    assert closure_problems(wide) == ["declared but not imported: regionmed/model"]


def stages_reading(path: str) -> set[str]:
    return {n for n, s in STAGES.items() if covered(path, s["deps"])}


def downstream(names: set[str]) -> set[str]:
    """``names`` and every stage that depends, through outs, on one of them."""
    found = set(names)
    while True:
        outs = [o for n in found for o in STAGES[n]["outs"] + STAGES[n]["metrics"]]
        more = {n for n, s in STAGES.items() if n not in found and any(covered(d, outs) for d in s["deps"])}
        if not more:
            return found
        found |= more


def test_a_change_to_the_roi_code_reruns_training_and_only_what_follows_it():
    direct = stages_reading("regionmed/model/roi.py")
    assert direct >= TRAINING
    # the annotation step reads the model code too: train_annotator trains an annotator when the corpus
    # needs one, annotate_regions's `self` localizer runs it; where none is needed (the synthetic
    # default) their reruns write the same record and the same annotated corpus, and DVC stops there
    annotation = {"train_annotator", "annotate_regions"}
    assert annotation <= direct
    direct -= annotation
    after_training = downstream(TRAINING)
    assert downstream(direct) == after_training
    assert after_training == TRAINING | {"evaluate", "gate", "package", "monitor_reference", "monitor"}
    assert stages_reading("regionmed/model/tokenizer.py") == {"tokenizer", "train_annotator"}


def test_undeclared_reads():
    assert undeclared_reads(["gate.floors", "evaluate.metrics_file"], ["gate", "evaluate.metrics_file"]) == []
    assert undeclared_reads(["phases.global.steps", "seed"], ["phases.global.lr"]) == [
        "phases.global.steps",
        "seed",
    ]
    assert undeclared_reads(["serving.index_dir_x"], ["serving.index_dir"]) == ["serving.index_dir_x"]


def test_the_loader_records_the_keys_a_process_reads(tmp_path):
    trace = tmp_path / "trace.jsonl"
    code = (
        "from regionmed.params import load_params; p = load_params(); "
        "p.evaluate.batch_size; p.phases['region'].lr; p.gate.floors; p.train.model_dump(); "
        "from regionmed.model.io import read_config"
    )  # a model's own config is not params
    env = {**os.environ, "REGIONMED_PARAMS_TRACE": str(trace)}
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, check=True, timeout=120)
    (line,) = trace.read_text().splitlines()
    assert json.loads(line)["reads"] == ["evaluate.batch_size", "gate.floors", "phases.region.lr", "train"]
