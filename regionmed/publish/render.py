"""Render the docs' marked blocks from JSON sources, and find the blocks that are stale.

A block in a Markdown file is ``<!-- numbers:NAME -->`` ... ``<!-- /numbers -->``. When the opening
marker ends its line the block is a paragraph or a table (the rendered text sits on the lines
between the markers); otherwise it is inline, part of a sentence. :data:`regionmed.publish.blocks.BLOCKS`
says what each name renders: its source files and a template.

Templates are ``str.format`` text whose fields are paths into the source JSON, separated by ``/``
and matched greedily against the keys, so metric names keep their slashes:
``{regionmed/grounding/full/lenient:ci}``. Format specs beyond Python's, for a metric dict
(``{"value", "low", "high"}``): ``v`` the value, ``ci`` the value and its interval, ``+v``/``+ci``
signed; a digit after them sets the decimals (``ci4``). Text after ``|`` in a spec is written only
after a value (``{ms:.1f|x}``). Negative numbers use the minus sign (−), a missing value is "–",
and ``{run}`` is a results file's provenance line.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# a block ends at the first end marker, and never spans another block's start
MARKER = re.compile(r"<!-- numbers:([\w.-]+) -->((?:(?!<!-- numbers:).)*?)<!-- /numbers -->", re.DOTALL)
OPEN = re.compile(r"<!-- numbers:([\w.-]+) -->")
METRIC_SPEC = re.compile(r"(\+?)(ci|v)(\d?)$")
MINUS = "−"
# what provenance() writes in its own words; any other machine key is written as "key value"
MACHINE_KEYS = ("arch", "cpu", "cores", "ram_gib", "gpu", "python", "torch")
# the Markdown files whose blocks are rendered (repo-relative globs)
DOC_GLOBS = ("README.md", "BENCHMARKS.md", "docs/*.md")


class SourceError(ValueError):
    """A block names a block, source file or key that does not exist."""


@dataclass(frozen=True)
class Block:
    """What a marked block renders: ``template`` over the JSON of ``sources`` (one file: its JSON;
    several: ``{file stem: JSON}``), after ``derive`` adds computed fields. With ``rows`` (a path to
    a list), ``row`` is rendered once per item (its keys first, then the source's) and the lines
    replace ``{ROWS}`` in the template."""

    sources: tuple[str, ...]
    template: str
    rows: str | None = None
    row: str = ""
    derive: Callable[[dict], dict] | None = None


class _Scope(Mapping):
    """Keys of the first mapping that has them (a row, then the whole source)."""

    def __init__(self, *maps: Mapping):
        self.maps = maps

    def __getitem__(self, key):
        for m in self.maps:
            if key in m:
                return m[key]
        raise KeyError(key)

    def __iter__(self):
        return iter({k for m in self.maps for k in m})

    def __len__(self):
        return len(set(self))


def lookup(data: Any, path: str) -> Any:
    """``a/b/c`` in nested dicts and lists, each step taking the longest run of segments that is a key."""
    parts, node = path.split("/"), data
    while parts:
        if isinstance(node, Sequence) and not isinstance(node, str) and parts[0].isdigit():
            node, parts = node[int(parts[0])], parts[1:]
            continue
        if not isinstance(node, Mapping):
            raise SourceError(f"no {path!r}: {'/'.join(parts)!r} is below a value")
        for n in range(len(parts), 0, -1):
            key = "/".join(parts[:n])
            if key in node:
                node, parts = node[key], parts[n:]
                break
        else:
            raise SourceError(f"no {path!r}: no key {parts[0]!r}")
    return node


def _number(x: float, spec: str) -> str:
    return format(x, spec).replace("-", MINUS)


class _Formatter(string.Formatter):
    def get_field(self, field_name, args, kwargs):
        return lookup(args[0], field_name), field_name

    def format_field(self, value, spec):
        spec, _, suffix = spec.partition("|")  # "{ms:.1f|x}": the suffix only after a value
        if value is None:
            return "–"
        return self._format(value, spec) + suffix

    def _format(self, value, spec):
        metric = METRIC_SPEC.match(spec)
        if metric:
            sign, kind, digits = metric.groups()
            digits = int(digits or 3)
            if not isinstance(value, Mapping):
                value = {"value": value}
            elif "ci95" in value:  # a Wilson interval as [low, high]
                value = {"value": value["value"], "low": value["ci95"][0], "high": value["ci95"][1]}
            text = "–" if value.get("value") is None else _number(value["value"], f"{sign}.{digits}f")
            if kind == "ci" and value.get("low") is not None:
                low, high = (_number(value[k], f".{digits}f") for k in ("low", "high"))
                text += f" [{low}, {high}]"
            return text
        if isinstance(value, bool | str):
            return format(str(value), spec)
        if isinstance(value, int | float):
            return _number(value, spec)
        if isinstance(value, Sequence):
            return ", ".join(self.format_field(v, spec) for v in value)
        raise SourceError(f"cannot format {type(value).__name__} with {spec!r}")


FORMATTER = _Formatter()


def provenance(doc: Mapping) -> str:
    """One line: the command, when, on which commit and machine, the conditions and notes (a results
    file's ``{run}``)."""
    m = doc.get("machine", {})
    if isinstance(m, Mapping):
        parts = [m.get("arch"), m.get("cpu") if m.get("cpu") != m.get("arch") else None]
        parts.append(f"{m['cores']} cores" if m.get("cores") else None)
        parts.append(f"{m['ram_gib']:.0f} GiB" if m.get("ram_gib") else None)
        parts.append(", ".join(m["gpu"]) if m.get("gpu") else "no GPU")
        parts += [f"Python {m['python']}" if m.get("python") else None]
        parts += [f"torch {m['torch']}" if m.get("torch") else None]
        parts += [f"{k} {v}" for k, v in m.items() if k not in MACHINE_KEYS and v is not None]
        machine = ", ".join(p for p in parts if p)
    else:
        machine = str(m)
    commit = f"{doc['commit']} ({doc['commit_note']})" if doc.get("commit_note") else doc["commit"]
    date = doc["date"].replace("T", " ").replace("Z", " UTC")
    line = f"`{doc['command']}` — {date}, commit {commit}; {machine}"
    if doc.get("load_average"):
        line += "; load average {:.1f} → {:.1f}".format(*doc["load_average"])
    if doc.get("conditions"):
        line += f"; {doc['conditions']}"
    notes = doc.get("notes", "")
    return line + "." + (f" {notes[:1].upper()}{notes[1:]}." if notes else "")


def load_sources(block: Block, root: Path) -> dict:
    docs = {}
    for source in block.sources:
        path = root / source
        if not path.is_file():
            raise SourceError(f"source {source} does not exist")
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and "command" in doc and "commit" in doc:  # a results file
            doc["run"] = provenance(doc)
        docs[Path(source).stem] = doc
    data = next(iter(docs.values())) if len(docs) == 1 else docs
    try:
        return {**data, **block.derive(data)} if block.derive else data
    except (KeyError, IndexError, TypeError) as exc:
        raise SourceError(f"{block.sources}: {exc!r}") from exc


def render(block: Block, root: Path) -> str:
    data = load_sources(block, root)
    text = block.template
    try:
        if block.rows:
            items = lookup(data, block.rows)
            rows = [FORMATTER.vformat(block.row, (_Scope(item, data),), {}) for item in items]
            text = text.replace("{ROWS}", "\n".join(rows).replace("{", "{{").replace("}", "}}"))
        return FORMATTER.vformat(text, (data,), {})
    except (KeyError, IndexError, TypeError) as exc:
        raise SourceError(f"{block.sources}: {exc!r}") from exc


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    block: str
    kind: str  # "stale" (a failed check) or "error" (an unknown block or source: bad input)
    detail: str = ""

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.file}:{self.line}: {self.block}: {self.kind}{detail}"


def rewrite(text: str, blocks: Mapping[str, Block], root: Path, file: str = "") -> tuple[str, list[Problem]]:
    """The text with every block rendered, and the problems found (stale blocks, unknown names)."""
    problems: list[Problem] = []
    closed = {m.start() for m in MARKER.finditer(text)}
    for m in OPEN.finditer(text):
        if m.start() not in closed:
            problems.append(Problem(file, text.count("\n", 0, m.start()) + 1, m.group(1), "error", "no end"))

    def one(m: re.Match) -> str:
        name, old = m.group(1), m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        if name not in blocks:
            problems.append(Problem(file, line, name, "error", "unknown block"))
            return m.group(0)
        try:
            body = render(blocks[name], root)
        except SourceError as exc:
            problems.append(Problem(file, line, name, "error", str(exc)))
            return m.group(0)
        new = f"\n{body}\n" if old.startswith("\n") else body
        if new != old:
            problems.append(Problem(file, line, name, "stale"))
        return f"<!-- numbers:{name} -->{new}<!-- /numbers -->"

    return MARKER.sub(one, text), problems


def block_names(text: str) -> list[str]:
    return [m.group(1) for m in OPEN.finditer(text)]


def doc_files(root: Path) -> list[Path]:
    return sorted({p for pattern in DOC_GLOBS for p in root.glob(pattern)})


def publish(root: Path, blocks: Mapping[str, Block], write: bool = False) -> list[Problem]:
    """Render every block of the docs under ``root``; with ``write``, save the files that changed.

    Returns the problems: stale blocks (rewritten when ``write``) and errors (left as they were)."""
    problems = []
    for path in doc_files(root):
        text = path.read_text(encoding="utf-8")
        new, found = rewrite(text, blocks, root, path.relative_to(root).as_posix())
        problems += found
        if write and new != text:
            path.write_text(new, encoding="utf-8")
    return problems
