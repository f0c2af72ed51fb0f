"""The code a DVC stage's command runs: the static import closure of its ``regionmed`` command.

A stage's ``cmd`` is ``python -m regionmed <command> ...``; the command is a function in
``regionmed/cli.py``. Its closure starts from the ``regionmed`` imports inside that function and
follows every import of every module it reaches, with the packages they are in (module level and
inside functions: the package imports heavy modules lazily, where they are used; an attribute that
a package resolves on first use with ``import_module`` is not followed). Files a module reads beside
itself (``Path(__file__).with_name("...")``) count as code.

The entry point itself (``cli.py``, ``__main__.py``, ``env.py`` and ``quiet.env``: argument parsing
and the no-telemetry switches) is left out: it is every stage's, and each command there is a thin
wrapper around the package functions the closure follows.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "regionmed"
ENTRY_POINT = {"regionmed/cli.py", "regionmed/__main__.py", "regionmed/env.py", "regionmed/quiet.env"}


def module_file(module: str) -> Path | None:
    base = REPO_ROOT / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(nodes) -> set[str]:
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == PACKAGE}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] == PACKAGE
        ):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return {m for m in found if module_file(m)}


@cache
def _module_imports(module: str) -> frozenset[str]:
    return frozenset(_imports(ast.walk(ast.parse(module_file(module).read_text()))))


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(start: set[str]) -> set[str]:
    """Repo-relative files (modules and the data files they read) reached from ``start`` modules."""
    seen: set[str] = set()
    todo = [p for m in start for p in _with_parents(m)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += [p for m in _module_imports(module) for p in _with_parents(m) if p not in seen]
    files = set()
    for module in seen:
        path = module_file(module)
        files.add(path.relative_to(REPO_ROOT).as_posix())
        for name in re.findall(r'Path\(__file__\)\.with_name\("([^"]+)"\)', path.read_text()):
            files.add((path.parent / name).relative_to(REPO_ROOT).as_posix())
    return files - ENTRY_POINT


@cache
def cli_commands() -> dict[tuple[str, ...], ast.FunctionDef]:
    """``("train", "phase") → the function`` of every command in cli.py."""
    tree = ast.parse((REPO_ROOT / "regionmed/cli.py").read_text())
    groups = {"app": ()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_typer":
            name = next(k.value.value for k in node.keywords if k.arg == "name")
            groups[node.args[0].id] = (name,)
    commands = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "attr", None) == "command":
                    commands[(*groups[deco.func.value.id], deco.args[0].value)] = node
    return commands


def command_of(cmd: str) -> tuple[str, ...]:
    words = shlex.split(cmd)
    if words[:3] != ["python", "-m", PACKAGE]:
        raise ValueError(f"not a `python -m regionmed` command: {cmd}")
    args = [w for w in words[3:] if not w.startswith("-")]
    matches = [c for c in cli_commands() if tuple(args[: len(c)]) == c]
    if not matches:
        raise ValueError(f"no regionmed command in {cmd!r}")
    return max(matches, key=len)


def stage_code(cmd: str) -> set[str]:
    """The files the stage's command runs (module docstring)."""
    return closure(_imports(ast.walk(cli_commands()[command_of(cmd)])))


def code_files(folder: str) -> set[str]:
    """The files DVC hashes for a code folder dep (compiled Python is in .dvcignore)."""
    root = REPO_ROOT / folder
    return {
        p.relative_to(REPO_ROOT).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def minimal_deps(files: set[str]) -> list[str]:
    """``files`` written as deps: a folder where the whole folder is in ``files``, else each file."""
    out: set[str] = set()
    for f in files:
        parts = f.split("/")
        chosen = f
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder != PACKAGE and code_files(folder) <= files:
                chosen = folder
                break
        out.add(chosen)
    return sorted(out)


def resolved_stages(root: Path = REPO_ROOT) -> dict[str, dict]:
    """The stages of ``dvc.yaml`` as DVC reads them (``${...}`` filled in from params.yaml and vars):
    ``{name: {"cmd", "deps": [paths], "params": [keys], "outs": [paths], "metrics": [paths]}}``."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    stages = {}
    with Repo(str(root)) as repo:
        for stage in repo.index.stages:
            params = [k for d in stage.deps if isinstance(d, ParamsDependency) for k in d.params]
            stages[stage.name] = {
                "cmd": stage.cmd,
                "params": params,
                "deps": [d.def_path for d in stage.deps if not isinstance(d, ParamsDependency)],
                "outs": [o.def_path for o in stage.outs if not o.metric and not o.plot],
                "metrics": [o.def_path for o in stage.outs if o.metric],
            }
    return stages


def undeclared_reads(reads: list[str], declared: list[str]) -> list[str]:
    """Keys read that no declared param covers (a key, or a section above it)."""
    return [k for k in reads if not any(k == p or k.startswith(p + ".") for p in declared)]


def traced_reads(trace_file: Path, stages: dict[str, dict]) -> dict[str, list[str]]:
    """``stage → keys read`` from a ``$REGIONMED_PARAMS_TRACE`` file (one line per process)."""
    by_args = {tuple(s["cmd"].split()[3:]): name for name, s in stages.items()}
    reads: dict[str, set[str]] = {}
    for line in trace_file.read_text().splitlines():
        record = json.loads(line)
        name = by_args.get(tuple(record["argv"][1:]))
        if name is not None:
            reads.setdefault(name, set()).update(record["reads"])
    return {name: sorted(keys) for name, keys in reads.items()}
