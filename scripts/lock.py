"""Refresh the environment lock and the Bento's pins from pyproject.toml.

    make lock            (or: .venv/bin/python scripts/lock.py)

1. pip-compile resolves pyproject.toml's dependencies and the `dev` extra into requirements/lock.txt,
   every package at an exact version. torch is written without its local label (`+cpu`) so the same
   lock fits the CPU wheel (installed first by `make install`) and a CUDA build.
2. bentofile.yaml's `python.packages` (the serving subset) are re-pinned to the lock's versions;
   its list of names is kept, only the versions change.

Run it after changing a dependency in pyproject.toml, or to move the stack to newer releases
(`--upgrade`), then `make install` and the tests. tests/test_lock.py keeps the three in step.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
BENTOFILE = ROOT / "bentofile.yaml"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Canonical package name -> exact version, from a pip-compile output."""
    pins = {}
    for line in path.read_text().splitlines():
        if m := PIN.match(line.strip()):
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def compile_lock(upgrade: bool) -> None:
    cmd = [
        sys.executable,
        "-m",
        "piptools",
        "compile",
        "--quiet",
        "--extra",
        "dev",
        "--strip-extras",
        "--no-emit-index-url",
        "--no-emit-find-links",
        "--output-file",
        str(LOCK.relative_to(ROOT)),
        "pyproject.toml",
    ]
    if upgrade:
        cmd.append("--upgrade")
    subprocess.run(cmd, cwd=ROOT, check=True)
    # One lock for the CPU wheel and CUDA builds alike: pin torch's version, not its build.
    LOCK.write_text(re.sub(r"^torch==([^\s+]+)\+\w+", r"torch==\1", LOCK.read_text(), flags=re.M))


def sync_bentofile(pins: dict[str, str]) -> list[str]:
    """Rewrite the versions of bentofile.yaml's `python.packages` in place (comments kept)."""
    text, changed = BENTOFILE.read_text(), []

    def repin(m: re.Match) -> str:
        name, old = m.group(2), m.group(3)
        new = pins.get(canonical(name))
        if new is None:
            raise SystemExit(f"bentofile.yaml pins {name}, which requirements/lock.txt does not have")
        if new != old:
            changed.append(f"{name} {old} -> {new}")
        return f"{m.group(1)}{name}=={new}"

    text = re.sub(r"^(\s+- )([A-Za-z0-9._-]+)==(\S+)$", repin, text, flags=re.M)
    BENTOFILE.write_text(text)
    return changed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upgrade", action="store_true", help="move every package to its newest allowed release")
    ap.add_argument(
        "--bentofile-only", action="store_true", help="re-pin bentofile.yaml from the current lock"
    )
    args = ap.parse_args()
    if not args.bentofile_only:
        compile_lock(args.upgrade)
    for line in sync_bentofile(read_lock()) or ["bentofile.yaml already matches the lock"]:
        print(line)


if __name__ == "__main__":
    main()
