"""Kill anywhere, rerun, same result: ``dvc repro`` of the reduced pipeline in a clean copy, SIGKILLed (its
whole process group: DVC and the stage) in the middle of each stage in turn, and rerun.

Each kill comes at a point the test watches for: N shards written, the first checkpoint of a phase, the
Bento being built, or a few seconds into a stage whose outputs only appear at its end. After each kill:
the stage is not recorded as done, and no output of it is there half-written under its own name (the
writers of regionmed/atomic.py leave only a temporary name, removed by the rerun). After the last rerun:
the pipeline is complete, ``dvc status`` is clean, nothing temporary is left, DVC's locks are free, and
every training phase resumed from its checkpoint and ended exactly where an uninterrupted run of the
same phase ends (weights tensor by tensor, metrics key by key).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from helpers.faults import Watched, after, record_measure, temporary_leftovers
from helpers.pipeline_copy import clean_copy, env, run
from helpers.reduced_pipeline import REDUCED
from helpers.stage_closure import resolved_stages
from safetensors.torch import load_file

from regionmed.model.io import WEIGHTS_FILE

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(900)]

STEPS = 12  # per progressive phase (the baseline: 36); a checkpoint every 3 steps
PHASES = {
    "global": "models/global",
    "region": "models/region",
    "joint": "models/regionmed",
    "baseline": "models/baseline",
}
INIT_FROM = {"region": "models/global", "joint": "models/region"}
KILLED = (  # in the order dvc repro runs them
    "build_corpus",
    "annotate_regions",
    "validate_corpus",
    "tokenizer",
    *(f"pretrain_{phase}" for phase in PHASES),
    "evaluate",
    "package",
    "monitor_reference",
)
RUN_ONLY = ("seconds", "resumed_from_step")  # what may differ between a resumed and an uninterrupted run
# A folder output is complete when it holds its last file (each is written whole, then renamed)
COMPLETE_WHEN = {
    "data/corpus": "manifest.parquet",
    "data/corpus_annotated": "manifest.parquet",
    "models/tokenizer": "tokenizer.json",
    **dict.fromkeys(PHASES.values(), "config.json"),
    "models/retrieval_index": "index.json",
    "models/monitor_reference": "reference.json",
}


def _count(pattern: str, root: Path) -> int:
    return sum(1 for _ in root.glob(pattern))


def fault_points(repo: Path, watched: Watched) -> dict:
    """The stage → the condition at which the test kills it (module docstring)."""

    def running(stage: str):
        return lambda: watched.said(f"Running stage '{stage}'")

    def checkpoint(phase: str):
        return lambda: _count(f".state/checkpoints/{phase}/*/last.ckpt", repo) > 0

    return {
        "build_corpus": lambda: _count("data/corpus.tmp-*/shards/*.tar", repo) >= 3,
        "annotate_regions": lambda: _count("data/corpus_annotated.tmp-*", repo) > 0,
        "validate_corpus": after(3.0, running("validate_corpus")),  # its outputs come at its end
        "tokenizer": lambda: _count("models/tokenizer.tmp-*", repo) > 0,
        **{f"pretrain_{phase}": checkpoint(phase) for phase in PHASES},
        "evaluate": lambda: _count("reports/eval_gallery.tmp-*", repo) > 0,  # eval.json is written
        "package": lambda: watched.said("saved regionmed:"),  # in the store; the Bento is being built
        "monitor_reference": after(3.0, running("monitor_reference")),
    }


def _locked_stages(repo: Path) -> set[str]:
    lock = repo / "dvc.lock"
    import yaml

    return set(yaml.safe_load(lock.read_text())["stages"]) if lock.exists() else set()


def _half_written(repo: Path, outs: list[str]) -> list[str]:
    """The outputs present under their own name but incomplete (a JSON that does not parse, a folder
    without its last file)."""
    bad = []
    for out in outs:
        path = repo / out
        if not path.exists():
            continue
        if path.suffix == ".json":
            try:
                json.loads(path.read_text())
            except ValueError:
                bad.append(out)
        elif out in COMPLETE_WHEN and not (path / COMPLETE_WHEN[out]).is_file():
            bad.append(out)
    return bad


@pytest.fixture(scope="module")
def killed_everywhere(tmp_path_factory):
    """The reduced pipeline killed once in each stage and rerun to the end: ``(repo, kills, reruns)``."""
    repo = clean_copy(
        tmp_path_factory.mktemp("faults") / "repo",
        {
            **REDUCED,
            "corpus": {**REDUCED["corpus"], "shard_size": 20},  # 24 shards: a kill lands mid-build
            "phases": {p: {"steps": STEPS} for p in ("global", "region", "joint")},
        },
    )
    stages = resolved_stages(repo)
    variables = {**env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    kills, reruns = {}, []
    for stage in KILLED:
        done_before = _locked_stages(repo)
        watched = Watched(["dvc", "repro"], repo, variables)
        at = watched.kill_when(fault_points(repo, watched)[stage], timeout=400)
        reruns.append(watched.output())
        assert stage not in _locked_stages(repo), f"{stage} was done before the kill: move its fault point"
        assert done_before <= _locked_stages(repo)
        outs = stages[stage]["outs"] + stages[stage]["metrics"]
        kills[stage] = {
            "seconds": round(at, 1),
            "half_written": _half_written(repo, outs),
            "leftovers": [str(p.relative_to(repo)) for p in temporary_leftovers(repo)],
            "rwlock": (repo / ".dvc/tmp/rwlock").read_text() if (repo / ".dvc/tmp/rwlock").exists() else "",
        }
    last = Watched(["dvc", "repro"], repo, variables)
    started = time.monotonic()
    assert last.wait(timeout=600) == 0, last.output()[-4000:]
    record_measure(
        "dvc repro killed in each stage",
        killed_after_s={stage: k["seconds"] for stage, k in kills.items()},
        last_rerun_s=round(time.monotonic() - started, 1),
    )
    reruns.append(last.output())
    return repo, kills, reruns


def test_each_stage_killed_mid_way_leaves_no_half_written_output_and_the_rerun_completes(killed_everywhere):
    repo, kills, reruns = killed_everywhere
    assert {s: k["half_written"] for s, k in kills.items()} == {s: [] for s in kills}
    # the kill left temporary names (the proof it came mid-write for the folder writers)...
    assert any(name.startswith("data/corpus.tmp-") for name in kills["build_corpus"]["leftovers"])
    # ...and DVC's record of the killed process, which the next run clears itself (its pid is gone)
    assert all('"write"' in k["rwlock"] for k in kills.values())
    assert any("Auto removed it from the lock file" in out for out in reruns)
    assert temporary_leftovers(repo) == [], "every rerun removed the killed run's temporary names"
    status = run(["dvc", "status"], repo)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    assert json.loads((repo / "metrics/gate.json").read_text())["passed"] is True
    assert json.loads((repo / "deploy/champion.json").read_text())["bento"]  # a whole record, with its Bento
    again = run(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date" in again.stdout


def test_every_killed_phase_resumed_and_matches_an_uninterrupted_run(
    killed_everywhere, tmp_path, monkeypatch, request
):
    from regionmed.params_pipeline import load_pipeline_params
    from regionmed.training import stage

    repo, _kills, _reruns = killed_everywhere
    monkeypatch.chdir(repo)  # the params' paths are relative to the repository
    # the killed runs trained with one thread; a reduction split over more threads sums in another order,
    # so the reference trains with one thread too (bitwise equality is asked, not closeness)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    params = load_pipeline_params(repo / "params.yaml")
    for phase, folder in PHASES.items():
        resumed = json.loads((repo / f"metrics/train_{phase}.json").read_text())
        assert resumed["resumed_from_step"] > 0, f"{phase} did not resume from its checkpoint"
        reference = stage.run(
            params, phase, "models/tokenizer", tmp_path / phase, tmp_path / f"{phase}.json",
            INIT_FROM.get(phase), tmp_path / "state",
        ).summary  # fmt: skip
        assert reference["resumed_from_step"] == 0
        assert {k: v for k, v in resumed.items() if k not in RUN_ONLY} == {
            k: v for k, v in reference.items() if k not in RUN_ONLY
        }, phase
        ours, theirs = load_file(repo / folder / WEIGHTS_FILE), load_file(tmp_path / phase / WEIGHTS_FILE)
        assert [k for k in theirs if not torch.equal(ours[k], theirs[k])] == [], phase
        record_measure(
            f"pretrain_{phase} killed", resumed_from_step=resumed["resumed_from_step"], steps=resumed["steps"]
        )
