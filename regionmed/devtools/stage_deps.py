"""The code a DVC stage runs, derived from the imports, and ``dvc.yaml``'s code deps kept equal to it.

A stage's ``cmd`` is ``python -m regionmed <command> ...``; the command is a function in
``regionmed/cli.py``. Its closure starts from the ``regionmed`` imports inside that function and
follows every import of every module it reaches, with the packages they are in (module level and
inside functions: the package imports heavy modules lazily, where they are used). Files a module
reads beside itself (``Path(__file__).with_name("...")``) count as code. A folder is written as one
dep where all of its files are in the closure.

The entry point itself (``cli.py``, ``__main__.py``, ``env.py`` and ``quiet.env``: argument parsing
and the no-telemetry switches) is left out: it is every stage's, and each command there is a thin
map onto the stage function the closure follows.

``regionmed dvc-deps`` rewrites the ``regionmed/`` entries of every stage's ``deps`` in ``dvc.yaml``
(comments, order of the other deps and everything else kept); ``--check`` only reports what differs.
"""

from __future__ import annotations

import ast
import io
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "regionmed"
ENTRY_POINT = frozenset(
    {"regionmed/cli.py", "regionmed/__main__.py", "regionmed/env.py", "regionmed/quiet.env"}
)


def module_file(module: str, root: Path = REPO_ROOT) -> Path | None:
    base = root / Path(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(nodes, root: Path = REPO_ROOT) -> set[str]:
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
            found |= {
                f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}", root)
            }
    return {m for m in found if module_file(m, root)}


@cache
def _module_imports(module: str, root: Path) -> frozenset[str]:
    return frozenset(_imports(ast.walk(ast.parse(module_file(module, root).read_text())), root))


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def closure(start: set[str], root: Path = REPO_ROOT) -> set[str]:
    """Repo-relative files (modules and the data files they read) reached from ``start`` modules."""
    seen: set[str] = set()
    todo = [p for m in start for p in _with_parents(m)]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo += [p for m in _module_imports(module, root) for p in _with_parents(m) if p not in seen]
    files = set()
    for module in seen:
        path = module_file(module, root)
        files.add(path.relative_to(root).as_posix())
        for name in re.findall(r'Path\(__file__\)\.with_name\("([^"]+)"\)', path.read_text()):
            files.add((path.parent / name).relative_to(root).as_posix())
    return files - ENTRY_POINT


@cache
def cli_commands(root: Path = REPO_ROOT) -> dict[tuple[str, ...], ast.FunctionDef]:
    """``("train", "phase") → the function`` of every command in cli.py."""
    tree = ast.parse((root / "regionmed/cli.py").read_text())
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


def command_of(cmd: str, root: Path = REPO_ROOT) -> tuple[str, ...]:
    """The CLI command a stage's ``cmd`` runs, e.g. ``("train", "phase")``."""
    words = shlex.split(cmd)
    if words[:3] != ["python", "-m", PACKAGE]:
        raise ValueError(f"not a `python -m regionmed` command: {cmd}")
    args = [w for w in words[3:] if not w.startswith("-")]
    matches = [c for c in cli_commands(root) if tuple(args[: len(c)]) == c]
    if not matches:
        raise ValueError(f"no regionmed command in {cmd!r}")
    return max(matches, key=len)


def stage_code(cmd: str, root: Path = REPO_ROOT) -> set[str]:
    """The files the stage's command runs (module docstring)."""
    return closure(_imports(ast.walk(cli_commands(root)[command_of(cmd, root)]), root), root)


def code_files(folder: str, root: Path = REPO_ROOT) -> set[str]:
    """The files DVC hashes for a code folder dep (compiled Python is in .dvcignore)."""
    return {
        p.relative_to(root).as_posix()
        for p in (root / folder).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def minimal_deps(files: set[str], root: Path = REPO_ROOT) -> list[str]:
    """``files`` written as deps: a folder where the whole folder is in ``files``, else each file."""
    out: set[str] = set()
    for f in files:
        parts = f.split("/")
        chosen = f
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder != PACKAGE and code_files(folder, root) <= files:
                chosen = folder
                break
        out.add(chosen)
    return sorted(out)


def is_code_dep(dep: str) -> bool:
    return dep.split("/")[0] == PACKAGE


@dataclass(frozen=True)
class StaleDeps:
    """A stage whose declared code deps are not its derived ones."""

    stage: str
    missing: tuple[str, ...]
    extra: tuple[str, ...]

    def __str__(self) -> str:
        parts = [f"+ {d}" for d in self.missing] + [f"- {d}" for d in self.extra]
        return f"{self.stage}: " + ", ".join(parts)


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: comments, order and quoting are kept
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def sync_dvc_yaml(dvc_file: Path = REPO_ROOT / "dvc.yaml", write: bool = False) -> list[StaleDeps]:
    """Compare (and with ``write``, replace) each regionmed stage's code deps with its derived ones.

    The other deps of a stage (data folders, ``${...}`` paths) stay first, in their order; the
    derived code deps follow, sorted. Returns the stages that differed."""
    root = dvc_file.resolve().parent
    yaml = _yaml()
    doc = yaml.load(dvc_file.read_text())
    stale = []
    for name, stage in doc["stages"].items():
        cmd = stage.get("cmd", "")
        if not isinstance(cmd, str) or not cmd.startswith(f"python -m {PACKAGE} "):
            continue
        deps = stage.get("deps") or []
        declared = [d for d in deps if isinstance(d, str) and is_code_dep(d)]
        derived = minimal_deps(stage_code(cmd, root), root)
        if declared == derived:
            continue
        stale.append(
            StaleDeps(
                name,
                tuple(d for d in derived if d not in declared),
                tuple(d for d in declared if d not in derived),
            )
        )
        if write:
            others = [d for d in deps if not (isinstance(d, str) and is_code_dep(d))]
            del deps[:]
            deps.extend([*others, *derived])
            stage["deps"] = deps
    if write and stale:
        buffer = io.StringIO()
        yaml.dump(doc, buffer)
        dvc_file.write_text(buffer.getvalue())
    return stale
