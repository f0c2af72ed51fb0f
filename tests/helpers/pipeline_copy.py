"""A clean copy of the repository in a temp folder, as a fresh clone would have it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@invalid",
}


def clean_copy(dest: Path, params_overrides: dict | None = None) -> Path:
    """Copy the tracked and not-ignored files (no data, no venv), then make it its own git repo."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\n")
    for rel in filter(None, files):
        src = REPO_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for stale in ("dvc.lock",):  # a fresh clone may carry a lock of another run; it must still work
        (dest / stale).unlink(missing_ok=True)
    # the committed champion (the default model's metrics) would refuse the tests' tiny models
    (dest / "deploy/champion.json").unlink(missing_ok=True)
    if params_overrides:
        set_params(dest, params_overrides)
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "copy"], dest)
    return dest


def set_params(repo: Path, overrides: dict) -> None:
    """Merge ``overrides`` into ``repo``'s params.yaml (a section key by key)."""
    from regionmed.params import deep_merge

    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, overrides), sort_keys=False))


def env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, **GIT_ENV, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def run(
    cmd: list[str],
    cwd: Path,
    check: bool = True,
    timeout: int = 1200,
    extra_env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
) -> subprocess.CompletedProcess:
    variables = {k: v for k, v in {**env(), **(extra_env or {})}.items() if k not in unset}
    proc = subprocess.run(
        cmd, check=False, cwd=cwd, env=variables, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc
