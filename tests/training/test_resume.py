"""An interrupted stage resumes from its last checkpoint when rerun, and ends exactly where an
uninterrupted run ends: the same weights, the same metrics (regionmed/training/resume.py). A damaged
checkpoint is not resumed: the phase starts over and says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from regionmed.corpus.schema import read_manifest
from regionmed.model.io import WEIGHTS_FILE, load_model

STEPS = 60
CHECKPOINT_EVERY = 10
RUN_ONLY = ("seconds", "resumed_from_step")  # what may differ between the two runs' summaries


def _command(params_file, tokenizer, out, metrics, state, phase="global", init_from=None):
    return [
        sys.executable,
        "-m",
        "regionmed",
        "train",
        "phase",
        phase,
        "--params",
        str(params_file),
        "--tokenizer",
        str(tokenizer),
        "--out",
        str(out),
        "--metrics",
        str(metrics),
        "--state-dir",
        str(state),
        *(["--init-from", str(init_from)] if init_from else []),
    ]


def _kill_after_first_checkpoint(cmd, state, env, phase="global") -> None:
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list(state.glob(f"{phase}/*/last.ckpt")):
            time.sleep(0.5)  # let the file be complete; then kill mid-run
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"


def _run(cmd, env) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def reference(tiny_training, tmp_path_factory):
    """The params of a 60-step global phase and its uninterrupted run: ``(params_file, tokenizer, folder)``
    with the model in ``folder / "model"`` and its summary in ``folder / "metrics.json"``. A checkpoint
    every epoch: the kill comes after one, and the resumed run starts the next epoch, whose order and
    augmentation must be the uninterrupted run's (the mid-epoch case: tests/training/test_resumable_loader.py
    and the pipeline's kills in tests/faults/)."""
    params, corpus, tokenizer = tiny_training
    root = tmp_path_factory.mktemp("resume")
    raw = params.model_dump(mode="json")
    raw["phases"] = {"global": {**raw["phases"]["global"], "steps": STEPS}}
    raw["train"]["checkpoint_every_n_steps"] = len(read_manifest(corpus, "train")) // params.train.batch_size
    raw["train"]["val_every_n_steps"] = STEPS
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    _run(_command(params_file, tokenizer, root / "model", root / "metrics.json", root / "state"), _env())
    return params_file, tokenizer, root


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _same_run(folder, reference_folder) -> None:
    """The two runs' summaries agree but for their timing and resume step, and their weights are equal:
    CPU training is deterministic, and the loader resumes mid-epoch in the same order."""
    run, ref = (json.loads((f / "metrics.json").read_text()) for f in (folder, reference_folder))
    assert {k: v for k, v in run.items() if k not in RUN_ONLY} == {
        k: v for k, v in ref.items() if k not in RUN_ONLY
    }
    # tensor by tensor (the file's header orders its metadata differently from one process to the next)
    run_weights, ref_weights = (load_file(f / "model" / WEIGHTS_FILE) for f in (folder, reference_folder))
    assert run_weights.keys() == ref_weights.keys()
    differ = [k for k in ref_weights if not torch.equal(run_weights[k], ref_weights[k])]
    assert differ == [], f"the resumed run's weights differ from the uninterrupted run's: {differ[:5]}"
    load_model(folder / "model")  # the export is complete and loads


def _killed_in_tmp(params_file, tokenizer, tmp_path):
    """The phase run into ``tmp_path`` and killed after its first checkpoint: ``(state folder, command)``."""
    state = tmp_path / "state"
    cmd = _command(params_file, tokenizer, tmp_path / "model", tmp_path / "metrics.json", state)
    _kill_after_first_checkpoint(cmd, state, _env())
    return state, cmd


@pytest.mark.slow
def test_a_killed_phase_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(reference, tmp_path):
    params_file, tokenizer, ref = reference
    state, cmd = _killed_in_tmp(params_file, tokenizer, tmp_path)
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "model").exists()

    resumed = _run(cmd, _env())
    run = json.loads((tmp_path / "metrics.json").read_text())
    assert run["resumed_from_step"] >= 10 and run["steps"] == STEPS
    assert f"resuming phase global from step {run['resumed_from_step']}" in resumed.stderr
    _same_run(tmp_path, ref)
    assert not list(state.glob("global/*/*.ckpt")), "a finished run removes its checkpoints"


@pytest.mark.slow
def test_a_truncated_checkpoint_is_set_aside_and_the_phase_starts_over(reference, tmp_path):
    params_file, tokenizer, ref = reference
    state, cmd = _killed_in_tmp(params_file, tokenizer, tmp_path)
    (checkpoint,) = state.glob("global/*/last.ckpt")
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])  # a disk that lost the end of the file

    rerun = _run(cmd, _env())
    run = json.loads((tmp_path / "metrics.json").read_text())
    assert run["resumed_from_step"] == 0
    said = " ".join(rerun.stderr.split())
    assert f"checkpoint {checkpoint} is damaged" in said and "starts over from step 0" in said, said[-2000:]
    _same_run(tmp_path, ref)  # started over: the same run as one never interrupted


@pytest.mark.slow
def test_an_interrupted_phase_whose_learning_rate_changed_starts_from_step_0(tiny_training, tmp_path):
    """The bug: the fingerprint left out phases.<phase>, so a run with a new lr resumed the old checkpoint."""
    params, _, tokenizer = tiny_training
    raw = params.model_dump(mode="json")
    raw["phases"] = {
        "global": {**raw["phases"]["global"], "steps": 0},
        "region": {**raw["phases"]["joint"], "steps": STEPS, "lr": 0.002},
    }
    raw["train"]["checkpoint_every_n_steps"] = CHECKPOINT_EVERY
    raw["train"]["val_every_n_steps"] = STEPS
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    init = tmp_path / "global"  # a 0-step global phase: the initial weights, exported
    warm = subprocess.run(
        _command(params_file, tokenizer, init, tmp_path / "g.json", tmp_path / "s"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert warm.returncode == 0, warm.stderr[-3000:]

    state = tmp_path / "state"
    region = _command(
        params_file, tokenizer, tmp_path / "region", tmp_path / "region.json", state, "region", init
    )
    _kill_after_first_checkpoint(region, state, env, "region")
    (stale,) = [p.parent.name for p in state.glob("region/*/last.ckpt")]
    raw["phases"]["region"]["lr"] = 0.001
    params_file.write_text(yaml.safe_dump(raw))
    rerun = subprocess.run(region, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = json.loads((tmp_path / "region.json").read_text())
    assert summary["resumed_from_step"] == 0 and summary["steps"] == STEPS
    assert not (state / "region" / stale).exists(), "the other run's checkpoints are removed"
