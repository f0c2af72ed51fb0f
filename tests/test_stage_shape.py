"""One stage shape: each DVC stage's command is a thin map onto ``run(params, ...) -> <Result>`` in a
module ``<area>/stage.py`` (or ``<area>/<name>_stage.py``), and each result has a summary line."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import typing

import pytest
from helpers.stage_closure import cli_commands, command_of, resolved_stages

STAGES = resolved_stages()


def stage_modules(function: ast.FunctionDef) -> list[str]:
    """The ``regionmed`` stage modules a CLI command imports (``from regionmed.x import stage``...)."""
    found = []
    for node in ast.walk(function):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("regionmed."):
            found += [
                f"{node.module}.{a.name}"
                for a in node.names
                if a.name == "stage" or a.name.endswith("_stage")
            ]
            if node.module.rsplit(".", 1)[-1].endswith("stage"):
                found.append(node.module)
    return sorted(set(found))


@pytest.mark.parametrize("name", sorted(STAGES))
def test_each_stage_command_calls_run_of_one_stage_module(name):
    function = cli_commands()[command_of(STAGES[name]["cmd"])]
    (module_name,) = stage_modules(function)
    module = importlib.import_module(module_name)
    calls = [
        n
        for n in ast.walk(function)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "run"
    ]
    assert calls, f"{name}: the command does not call {module_name}.run"
    result = typing.get_type_hints(module.run)["return"]
    assert result.__name__.endswith("Result") and dataclasses.is_dataclass(result), result
    assert callable(getattr(result, "summary_line", None))
    assert next(iter(inspect.signature(module.run).parameters)) == "params"


def test_the_check_finds_the_stage_module_of_a_command():
    tree = ast.parse("def cmd():\n    from regionmed.evaluation import gate_stage\n    gate_stage.run(p)\n")
    assert stage_modules(tree.body[0]) == ["regionmed.evaluation.gate_stage"]
    tree = ast.parse("def cmd():\n    from regionmed.evaluation.gate import decide\n    decide()\n")
    assert stage_modules(tree.body[0]) == []
