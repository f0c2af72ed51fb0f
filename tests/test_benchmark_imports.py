"""Every name a benchmark script imports from the package exists (scripts are not run by the suite,
so a moved module would otherwise go unnoticed until someone runs `make bench`)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def package_imports(script: Path) -> list[tuple[str, str | None]]:
    found = []
    for node in ast.walk(ast.parse(script.read_text())):
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("regionmed")
        ):
            found += [(node.module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.startswith("regionmed")]
    return found


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_the_package_names_a_benchmark_imports_exist(script):
    missing = []
    for module, name in package_imports(script):
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError:
            missing.append(module)
            continue
        if name is not None and not hasattr(loaded, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{module}.{name}")
    assert missing == [], f"{script.name} imports what the package no longer has"
