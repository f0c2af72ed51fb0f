"""The DVC remote a clone comes with: ``.dvc/config`` names a default remote that is a folder beside
the clone, and ``dvc push`` / ``dvc pull`` round-trip a pipeline's outputs through it byte for byte
with no setup. Real DVC, in a small repository of its own (one stage, a few files): seconds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from configobj import ConfigObj
from helpers.pipeline_copy import REPO_ROOT, run

# the stage writes a folder of random bytes (a nested file, an empty one): what comes back must be them
STAGE_SCRIPT = """
import os
from pathlib import Path
out = Path("out")
(out / "nested").mkdir(parents=True)
for name, size in {"a.bin": 4096, "b.bin": 1, "nested/c.bin": 70000, "empty.bin": 0}.items():
    (out / name).write_bytes(os.urandom(size))
"""
DVC_YAML = {"stages": {"make": {"cmd": "python make.py", "deps": ["make.py"], "outs": ["out"]}}}


def dvc_repo(root: Path) -> Path:
    """A git + DVC repository with the repository's own .dvc/config and a one-stage pipeline."""
    root.mkdir()
    run(["git", "init", "-q"], root)
    run(["dvc", "init", "-q"], root)
    shutil.copy2(REPO_ROOT / ".dvc" / "config", root / ".dvc" / "config")
    (root / "make.py").write_text(STAGE_SCRIPT)
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def default_remote(repo: Path) -> tuple[str, str]:
    """(name, url as DVC resolves it) of the default remote the project's config names."""
    name = run(["dvc", "config", "--project", "core.remote"], repo).stdout.strip()
    # not `dvc remote list`: piped, it wraps a long url onto the next lines (a table 80 columns wide)
    return name, run(["dvc", "config", "--project", f"remote.{name}.url"], repo).stdout.strip()


def stored_objects(remote: Path) -> list[Path]:
    return [p for p in remote.rglob("*") if p.is_file()] if remote.exists() else []


def repro_push_wipe_pull(repo: Path) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The outputs as the stage wrote them, and as `dvc pull` gave them back after the cache and the
    outputs were deleted."""
    run(["dvc", "repro", "-q"], repo)
    written = snapshot(repo / "out")
    run(["dvc", "push"], repo)
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "out")
    run(["dvc", "pull"], repo)
    return written, snapshot(repo / "out")


def test_the_repository_names_a_default_remote_that_is_a_folder_beside_the_clone():
    raw = ConfigObj(str(REPO_ROOT / ".dvc" / "config"))
    name, resolved = default_remote(REPO_ROOT)
    url = raw[f'remote "{name}"']["url"]
    assert "://" not in url and not Path(url).is_absolute(), f"not a relative folder: {url}"
    # DVC reads a relative url from the config file's folder, .dvc/
    assert Path(resolved) == (REPO_ROOT / ".dvc" / url).resolve()
    assert not Path(resolved).is_relative_to(REPO_ROOT.resolve()), "the remote must lie outside the tree"


def test_a_fresh_clone_pushes_and_pulls_through_the_default_remote(tmp_path):
    repo = dvc_repo(tmp_path / "clone")
    _, resolved = default_remote(repo)
    storage = Path(resolved)
    assert storage.parent == tmp_path  # beside the clone, as in the repository
    written, pulled = repro_push_wipe_pull(repo)
    assert len(written) == 4
    assert pulled == written
    assert len(stored_objects(storage)) == 5  # one object a file, plus the folder's listing
    assert "up to date" in run(["dvc", "status"], repo).stdout


def test_a_local_remote_overrides_the_default_and_leaves_the_committed_config_alone(tmp_path):
    repo = dvc_repo(tmp_path / "clone")
    committed = (repo / ".dvc" / "config").read_bytes()
    _, default_url = default_remote(repo)
    scratch = tmp_path / "scratch-remote"
    run(["dvc", "remote", "add", "--local", "-d", "scratch", str(scratch)], repo)
    assert run(["dvc", "config", "core.remote"], repo).stdout.strip() == "scratch"
    run(["dvc", "repro", "-q"], repo)
    assert not stored_objects(scratch), "dvc repro pushed"
    written, pulled = repro_push_wipe_pull(repo)
    assert pulled == written
    assert stored_objects(scratch)
    assert not Path(default_url).exists(), "the default remote was written to despite the override"
    assert (repo / ".dvc" / "config").read_bytes() == committed
