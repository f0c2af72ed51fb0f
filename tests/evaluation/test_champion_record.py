"""The champion record is shared through the repository: a clone that pulls it refuses a worse candidate,
and with ``gate.require_champion`` a clone without it fails closed, with a clear message.

Real git (a bare origin, two clones) and the real ``regionmed gate`` command (the DVC stage's ``cmd``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers.pipeline_copy import GIT_ENV

from regionmed.evaluation.champion import ChampionUnavailable, read_champion, write_champion

REPO_ROOT = Path(__file__).resolve().parents[2]
METRIC = "retrieval/i2t_R@5"
GATE = {
    "floors": {METRIC: 0.1},
    "must_beat_baseline": [],
    "champion_margin": {METRIC: 0.03},
    "relative_floors": {"above_chance": [], "above_prior": [], "not_below_baseline": []},
}


def git(*args: str, cwd: Path) -> str:
    import os

    proc = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def gate(clone: Path, r_at_5: float) -> subprocess.CompletedProcess:
    """The candidate's metrics as the evaluate stage writes them, then the gate stage's command."""
    (clone / "metrics").mkdir(exist_ok=True)
    (clone / "metrics/eval.json").write_text(
        json.dumps({"regionmed": {METRIC: {"value": r_at_5}}, "baseline": {METRIC: {"value": 0.05}}})
    )
    return subprocess.run(
        [sys.executable, "-m", "regionmed", "gate", "--params", "params.yaml"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def origin(tmp_path):
    """A shared repository (a bare origin) holding this project's params.yaml with a one-metric gate."""
    bare = tmp_path / "origin.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    seed = tmp_path / "seed"
    git("clone", "-q", str(bare), str(seed), cwd=tmp_path)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["gate"].update(GATE)
    (seed / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (seed / ".gitignore").write_text((REPO_ROOT / ".gitignore").read_text())
    git("add", "-A", cwd=seed)
    git("commit", "-qm", "params", cwd=seed)
    git("push", "-q", "origin", "HEAD", cwd=seed)
    return bare


def test_a_second_clone_sees_the_first_ones_champion_and_refuses_a_worse_candidate(origin, tmp_path):
    from regionmed.params import load_params

    first, second = tmp_path / "first", tmp_path / "second"
    git("clone", "-q", str(origin), str(first), cwd=tmp_path)
    assert gate(first, 0.30).returncode == 0  # no champion yet: the floor only
    params = load_params(first / "params.yaml")
    # what the package stage records, then what the team does with outputs: commit and push
    write_champion(
        first / params.gate.champion_file,
        model_tag="regionmed:aaa",
        bento_tag="regionmed_service:bbb",
        metrics={METRIC: 0.30},
        packaged_at="2026-12-04T00:00:00Z",
        git_rev="abc",
        bentoml_home=".state/bentoml",
    )
    git("add", "-A", cwd=first)
    git("commit", "-qm", "package: new champion", cwd=first)
    git("push", "-q", "origin", "HEAD", cwd=first)

    git("clone", "-q", str(origin), str(second), cwd=tmp_path)  # another machine
    worse = gate(second, 0.24)  # above the floor, 0.06 below the champion (margin 0.03)
    assert worse.returncode == 1, worse.stderr
    decision = json.loads((second / "metrics/gate.json").read_text())
    assert decision["passed"] is False and decision["champion"] == "regionmed:aaa"
    failed = [c for c in decision["comparisons"] if not c["passed"]]
    assert [(c["metric"], c["kind"]) for c in failed] == [(METRIC, "champion")]
    assert "champion" in worse.stderr and METRIC in worse.stderr
    assert gate(second, 0.29).returncode == 0  # within the margin: passes


def test_require_champion_fails_closed_with_a_clear_message(origin, tmp_path):
    clone = tmp_path / "clone"
    git("clone", "-q", str(origin), str(clone), cwd=tmp_path)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["gate"]["require_champion"] = True
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = gate(clone, 0.9)  # a fine candidate, but nothing to compare it with
    assert proc.returncode == 1
    said = " ".join(proc.stderr.split())  # rich wraps a pipe's output at 80 columns
    assert "gate.require_champion is true, but there is no champion record at deploy/champion.json" in said
    assert "Traceback" not in proc.stderr
    decision = json.loads((clone / "metrics/gate.json").read_text())  # so package refuses too
    assert decision["passed"] is False and "no champion record" in decision["error"]


def test_a_damaged_record_is_an_error_even_when_not_required(tmp_path):
    path = tmp_path / "champion.json"
    path.write_text('{"tag": "regionmed:x"}')
    with pytest.raises(ChampionUnavailable, match="lacks"):
        read_champion(path)
    path.write_text("{not json")
    with pytest.raises(ChampionUnavailable, match="cannot be read"):
        read_champion(path)
    assert read_champion(tmp_path / "missing.json") is None
