"""How the tests reach shared code: one package, ``tests/helpers``, imported as ``helpers.<module>``.

No test edits ``sys.path``, nothing imports a conftest or another test module by name (which one
Python finds depends on the folders collected before), no test folder shadows a package of the
repository, and a helper is defined once.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parent


def python_files_under_tests() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_shared_test_code_lives_in_the_helpers_package():
    loose = [
        str(p.relative_to(TESTS))
        for p in python_files_under_tests()
        if p.parent.name != "helpers" and not p.name.startswith("test_") and p.name != "conftest.py"
    ]
    assert not loose, f"move these into tests/helpers/: {loose}"
    assert (TESTS / "helpers" / "__init__.py").is_file()


def test_tests_import_helpers_by_package_not_by_path():
    helpers = {p.stem for p in (TESTS / "helpers").glob("*.py")}
    bad = {}
    for path in python_files_under_tests():
        text = path.read_text()
        found = [
            m for m in imported_modules(path) if m in helpers or m == "conftest" or m.startswith("test_")
        ]
        if "sys.path" in text and path.name != Path(__file__).name:
            found.append("sys.path")
        if found:
            bad[str(path.relative_to(TESTS))] = found
    assert not bad, bad


def test_no_test_folder_is_named_like_a_package_of_the_repository():
    packages = {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")}
    assert packages >= {"regionmed", "flows"}
    folders = {p.name for p in TESTS.iterdir() if p.is_dir()}
    assert not folders & packages, folders & packages


def test_free_port_is_defined_once():
    homes = []
    for folder in ("regionmed", "tests", "benchmarks", "flows", "scripts"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if re.search(r"^\s*def _?free_port\(", path.read_text(), flags=re.M):
                homes.append(str(path.relative_to(REPO_ROOT)))
    assert homes == ["regionmed/serving/container.py"], homes
