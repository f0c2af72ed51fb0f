"""The environment is locked: requirements/lock.txt pins every package, the venv is that lock, and the
Bento's packages are the lock's versions (scripts/lock.py keeps them so; `make lock` refreshes)."""

from __future__ import annotations

import importlib.util
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml
from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[1]

spec = importlib.util.spec_from_file_location("lock_script", REPO_ROOT / "scripts" / "lock.py")
lock_script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lock_script)
LOCK = lock_script.read_lock(REPO_ROOT / "requirements" / "lock.txt")


def test_the_lock_pins_every_dependency_of_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for line in wanted:
        req = Requirement(line)
        name = lock_script.canonical(req.name)
        assert name in LOCK, (
            f"{req.name} is in pyproject.toml but not in requirements/lock.txt: run `make lock`"
        )
        assert req.specifier.contains(LOCK[name], prereleases=True), (req, LOCK[name])
    assert LOCK["torch"] == "2.13.0", "torch pinned by version, not build, so CPU and CUDA wheels both fit"


def test_the_installed_environment_is_the_lock():
    # `make install` installs with `-c requirements/lock.txt`: a package at another version means the lock
    # was edited by hand or the venv was changed without `make lock`.
    off = {}
    for name, pinned in LOCK.items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            off[name] = (pinned, None)
            continue
        if installed.split("+")[0] != pinned:
            off[name] = (pinned, installed)
    assert not off, f"lock vs installed: {off}"


def test_the_bento_pins_the_locked_versions():
    bentofile = yaml.safe_load((REPO_ROOT / "bentofile.yaml").read_text())
    pins = dict(p.split("==") for p in bentofile["python"]["packages"])
    for name, pinned in pins.items():
        assert LOCK.get(lock_script.canonical(name)) == pinned, (
            f"bentofile.yaml pins {name}=={pinned}, the lock {LOCK.get(lock_script.canonical(name))}: "
            "run `python scripts/lock.py --bentofile-only`"
        )


def test_sync_rewrites_only_versions(tmp_path, monkeypatch):
    bentofile = tmp_path / "bentofile.yaml"
    bentofile.write_text("python:\n  packages:\n    - torch==2.0.0\n    - Foo_Bar==1.0\n")
    monkeypatch.setattr(lock_script, "BENTOFILE", bentofile)
    changed = lock_script.sync_bentofile({"torch": "2.13.0", "foo-bar": "1.0"})
    assert changed == ["torch 2.0.0 -> 2.13.0"]
    assert bentofile.read_text() == "python:\n  packages:\n    - torch==2.13.0\n    - Foo_Bar==1.0\n"
