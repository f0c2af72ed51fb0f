"""Lint is part of the build: `make test` runs ruff before pytest, and the pre-commit hooks run the
venv's own tools (nothing fetched, the lock's versions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_dry_run(target: str) -> list[str]:
    """The commands ``make <target>`` would run, in order (``make -n``: nothing is run)."""
    out = subprocess.run(
        ["make", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [line.strip() for line in out.splitlines()]


def position(commands: list[str], suffix: str) -> int:
    return next(i for i, c in enumerate(commands) if c.endswith(suffix) or f"{suffix} " in c)


def test_make_test_lints_before_the_tests():
    for target in ("test", "test-fast"):
        commands = make_dry_run(target)
        check, fmt, tests = (
            position(commands, s) for s in ("ruff check .", "ruff format --check .", "pytest")
        )
        assert check < tests and fmt < tests, commands


def test_the_ci_script_runs_make_test():
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text().splitlines()


def test_every_pre_commit_hook_is_a_tool_of_the_venv():
    config = yaml.safe_load((REPO_ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert {repo["repo"] for repo in config["repos"]} == {"local"}, "nothing fetched"
    assert {"ruff-check", "ruff-format"} <= {hook["id"] for hook in hooks}
    venv_bin = Path(sys.executable).parent
    for hook in hooks:
        program = Path(hook["entry"].split()[0])
        assert hook["language"] == "system" and program.parent == Path(".venv/bin"), hook
        assert (venv_bin / program.name).is_file(), f"{program.name} is not installed in {venv_bin}"
