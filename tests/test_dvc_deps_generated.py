"""dvc.yaml's code deps are generated from the imports (`regionmed dvc-deps`), and kept so."""

from __future__ import annotations

import shutil
from pathlib import Path

from regionmed.devtools.stage_deps import REPO_ROOT, StaleDeps, sync_dvc_yaml


def scratch_repo(tmp_path: Path) -> Path:
    """A folder with the package (linked) and a copy of dvc.yaml, so the writer can be tried on it."""
    (tmp_path / "regionmed").symlink_to(REPO_ROOT / "regionmed", target_is_directory=True)
    shutil.copy(REPO_ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    return tmp_path / "dvc.yaml"


def test_the_checked_in_deps_are_the_generated_ones():
    stale = sync_dvc_yaml(REPO_ROOT / "dvc.yaml")
    assert stale == [], "run `python -m regionmed dvc-deps` and commit dvc.yaml:\n" + "\n".join(
        map(str, stale)
    )


def test_the_writer_restores_a_removed_and_drops_an_added_dep_and_keeps_the_rest(tmp_path):
    dvc_file = scratch_repo(tmp_path)
    original = dvc_file.read_text()
    edited = original.replace("      - regionmed/evaluation/gate.py\n", "", 1).replace(
        "      - regionmed/corpus/atlas.py\n",
        "      - regionmed/corpus/atlas.py\n      - regionmed/model/roi.py\n",
        1,
    )
    assert edited != original
    dvc_file.write_text(edited)
    stale = sync_dvc_yaml(dvc_file)
    assert {s.stage for s in stale} >= {"gate"}
    assert all(isinstance(s, StaleDeps) for s in stale)
    assert "regionmed/evaluation/gate.py" in next(s for s in stale if s.stage == "gate").missing
    assert any("regionmed/model/roi.py" in s.extra for s in stale)
    assert dvc_file.read_text() == edited  # --check writes nothing
    sync_dvc_yaml(dvc_file, write=True)
    assert dvc_file.read_text() == original  # comments, order, data deps: all as they were
    assert sync_dvc_yaml(dvc_file) == []
