"""An interrupted stage resumes from its last checkpoint when rerun, and ends where an
uninterrupted run ends (within tolerance)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from regionmed.model.io import load_model

STEPS = 60
CHECKPOINT_EVERY = 10
# Lightning restarts the interrupted epoch's data order on resume, so the two runs see slightly
# different batches after the cut; their final losses must still agree this closely.
LOSS_TOLERANCE = 0.35


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


@pytest.mark.slow
def test_a_killed_phase_resumes_from_its_checkpoint_and_matches_an_uninterrupted_run(tiny_training, tmp_path):
    params, _corpus, tokenizer = tiny_training
    raw = params.model_dump(mode="json")
    raw["phases"] = {"global": {**raw["phases"]["global"], "steps": STEPS}}
    raw["train"]["checkpoint_every_n_steps"] = CHECKPOINT_EVERY
    raw["train"]["val_every_n_steps"] = STEPS
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    reference = subprocess.run(
        _command(params_file, tokenizer, tmp_path / "ref", tmp_path / "ref.json", tmp_path / "s1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert reference.returncode == 0, reference.stderr[-3000:]

    state = tmp_path / "s2"
    _kill_after_first_checkpoint(
        _command(params_file, tokenizer, tmp_path / "run", tmp_path / "run.json", state), state, env
    )
    assert not (tmp_path / "run.json").exists()

    resumed = subprocess.run(
        _command(params_file, tokenizer, tmp_path / "run", tmp_path / "run.json", state),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ref, run = (
        json.loads((tmp_path / "ref.json").read_text()),
        json.loads((tmp_path / "run.json").read_text()),
    )
    assert run["resumed_from_step"] >= CHECKPOINT_EVERY and run["steps"] == STEPS
    assert abs(run["train/loss"] - ref["train/loss"]) < LOSS_TOLERANCE, (run["train/loss"], ref["train/loss"])
    assert not list(state.glob("global/*/*.ckpt")), "a finished run removes its checkpoints"
    load_model(tmp_path / "run")  # the export is complete and loads


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
