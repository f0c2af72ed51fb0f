"""What the tests need of dvc.yaml: the stages as DVC resolves them, and the params each stage read.

The code a stage runs (its import closure) and dvc.yaml's generated code deps live in the package:
:mod:`regionmed.devtools.stage_deps` (``python -m regionmed dvc-deps``); re-exported here for the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

from regionmed.devtools.stage_deps import (  # noqa: F401  (the tests' names for them)
    ENTRY_POINT,
    PACKAGE,
    REPO_ROOT,
    cli_commands,
    closure,
    code_files,
    command_of,
    minimal_deps,
    module_file,
    stage_code,
)


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
