"""Paths as recorded in outputs that travel with the repository (metrics, artifacts, the champion record)."""

from __future__ import annotations

from pathlib import Path


def repo_relative(path: str | Path, root: str | Path = ".") -> str:
    """``path`` relative to the repository ``root`` (POSIX separators) when it lies inside it, else as given:
    a clone or a copy on another machine then reads it against its own checkout."""
    p, r = Path(path), Path(root).resolve()
    try:
        return (p if p.is_absolute() else (Path.cwd() / p)).resolve().relative_to(r).as_posix() or "."
    except ValueError:
        return str(path)
