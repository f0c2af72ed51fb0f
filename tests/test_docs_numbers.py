"""Every published number is rendered from its source: the docs' blocks are current, a changed metric
makes them stale, a block naming an unknown block or source is an error, and `make bench` runs the
benchmarks whose tables BENCHMARKS.md shows."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from regionmed.publish.blocks import BLOCKS
from regionmed.publish.record import PROVENANCE_KEYS, RESULTS_DIR, Record
from regionmed.publish.render import Block, block_names, doc_files, publish, render, rewrite

REPO = Path(__file__).resolve().parents[1]


def test_every_block_in_the_docs_is_current():
    problems = publish(REPO, BLOCKS)
    assert not problems, "run `make docs` (python -m regionmed docs --write):\n" + "\n".join(
        map(str, problems)
    )


def test_every_block_of_the_table_is_used_in_a_doc():
    used = {name for path in doc_files(REPO) for name in block_names(path.read_text(encoding="utf-8"))}
    assert set(BLOCKS) - used == set()


def _copy(root: Path, *paths: str) -> None:
    for p in paths:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / p, root / p)


def test_a_changed_metric_makes_the_check_fail_and_write_fixes_it(tmp_path):
    _copy(tmp_path, "metrics/eval.json")
    doc = (
        "In short, <!-- numbers:readme-eval --><!-- /numbers -->.\n\n"
        "<!-- numbers:eval-default-run -->\n<!-- /numbers -->\n"
    )
    (tmp_path / "README.md").write_text(doc)
    assert {p.kind for p in publish(tmp_path, BLOCKS, write=True)} == {"stale"}
    assert publish(tmp_path, BLOCKS) == []
    metrics = json.loads((tmp_path / "metrics/eval.json").read_text())
    lenient = metrics["regionmed"]["grounding/full/lenient"]
    interval = f"[{lenient['low']:.3f}, {lenient['high']:.3f}]"
    assert f"{lenient['value']:.3f} {interval}" in (tmp_path / "README.md").read_text()

    lenient["value"] = 0.5
    (tmp_path / "metrics/eval.json").write_text(json.dumps(metrics))
    stale = publish(tmp_path, BLOCKS)
    assert [(p.block, p.kind) for p in stale] == [("readme-eval", "stale"), ("eval-default-run", "stale")]
    publish(tmp_path, BLOCKS, write=True)
    assert f"0.500 {interval}" in (tmp_path / "README.md").read_text()


def test_a_verdict_follows_the_interval(tmp_path):
    """The README's sentence says behind/ahead from the paired interval, not from a hand-kept word."""
    _copy(tmp_path, "metrics/eval.json")
    metrics = json.loads((tmp_path / "metrics/eval.json").read_text())
    metrics["difference"]["zeroshot/macro_auroc"] = {"value": 0.03, "low": 0.01, "high": 0.05}
    (tmp_path / "metrics/eval.json").write_text(json.dumps(metrics))
    text = render(BLOCKS["readme-eval"], tmp_path)
    assert "behind" not in text and "zero-shot finding AUROC (" in text.split("ahead")[1]


def test_unknown_block_missing_source_and_unclosed_marker_are_errors(tmp_path):
    blocks = {**BLOCKS, "from-nowhere": Block(("no_such_file.json",), "{x}")}
    text = (
        "<!-- numbers:no-such-block -->x<!-- /numbers -->\n"
        "<!-- numbers:from-nowhere -->y<!-- /numbers -->\n"
        "<!-- numbers:readme-eval -->never closed\n"
    )
    new, problems = rewrite(text, blocks, tmp_path, "doc.md")
    assert new == text
    found = {(p.block, p.kind, p.detail.split(":")[0]) for p in problems}
    assert found == {
        ("no-such-block", "error", "unknown block"),
        ("from-nowhere", "error", "source no_such_file.json does not exist"),
        ("readme-eval", "error", "no end"),
    }


def test_a_template_naming_a_missing_key_is_an_error(tmp_path):
    (tmp_path / "m.json").write_text(json.dumps({"a": {"b/c": 1}}))
    ok, bad = Block(("m.json",), "{a/b/c:+.1f}"), Block(("m.json",), "{a/b/d}")
    _, problems = rewrite(
        "<!-- numbers:ok -->+1.0<!-- /numbers --> <!-- numbers:bad --><!-- /numbers -->",
        {"ok": ok, "bad": bad},
        tmp_path,
    )
    assert [(p.block, p.kind) for p in problems] == [("bad", "error")]


def test_formats(tmp_path):
    data = {
        "m": {"value": -0.0301, "low": -0.0452, "high": -0.01447},
        "n": None,
        "k": 1234.5,
        "w": {"value": 1.0, "ci95": [0.99941, 1.0]},
    }
    (tmp_path / "f.json").write_text(json.dumps(data))
    block = Block(("f.json",), "{m:+ci} | {m:v} | {n:.1f|x} | {k:,.0f|x} | {w:ci4}")
    assert (
        render(block, tmp_path) == "−0.030 [−0.045, −0.014] | −0.030 | – | 1,234x | 1.0000 [0.9994, 1.0000]"
    )


@pytest.mark.parametrize("path", sorted(RESULTS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_each_results_file_says_where_its_figures_come_from(path):
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert [k for k in PROVENANCE_KEYS if not doc.get(k)] == []
    assert (
        doc["benchmark"] == path.stem and "figures" in doc and doc["command"].split()[0] in {"python", "dvc"}
    )


def test_a_record_writes_machine_date_commit_and_command(tmp_path, monkeypatch):
    monkeypatch.setattr(
        "sys.argv", [str(REPO / "benchmarks/bench_corpus.py"), "--steps", "2", "--model", '{"a": 1}']
    )
    path = Record("bench_x").write({"rows": [1]}, tmp_path / "bench_x.json")
    doc = json.loads(path.read_text())
    assert doc["command"] == "python benchmarks/bench_corpus.py --steps 2 --model '{\"a\": 1}'"
    assert doc["machine"]["cores"] and re.fullmatch(r"[0-9a-f]{7,}(\+changes)?|unknown", doc["commit"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", doc["date"]) and doc["figures"] == {"rows": [1]}
    assert render(Block(("bench_x.json",), "{run}"), tmp_path).startswith(
        "`python benchmarks/bench_corpus.py --steps 2"
    )


def _make_bench_commands() -> list[list[str]]:
    text = (REPO / "Makefile").read_text()
    variables = dict(re.findall(r"^(BENCH_[A-Z_]+) := (.*)$", text, re.MULTILINE))
    recipe = text.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    commands = []
    for line in recipe.splitlines()[1:]:
        line = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables.get(m.group(1), m.group(0)), line.strip())
        if line.startswith("$(BIN)/python benchmarks/"):
            commands.append(shlex.split(line.replace("$(BIN)/python", "python", 1)))
    return commands


def _without_own_results(command: list[str], path: Path) -> list[str]:
    own = {str(path.relative_to(REPO)), str(path)}
    for i, token in enumerate(command[:-1]):
        if token == "--results" and command[i + 1] in own:
            return command[:i] + command[i + 2 :]
    return command


def test_make_bench_runs_the_benchmarks_whose_tables_benchmarks_md_shows():
    current = (REPO / "BENCHMARKS.md").read_text().split("## Appendix")[0]
    shown = {
        REPO / source
        for name in block_names(current)
        for source in BLOCKS[name].sources
        if source.startswith("benchmarks/results/")
    }
    expected = sorted(shlex.split(json.loads(p.read_text())["command"]) for p in shown)
    ran = sorted(
        _without_own_results(c, REPO / c[c.index("--results") + 1]) if "--results" in c else c
        for c in _make_bench_commands()
    )
    assert ran == expected


def test_each_benchmark_the_docs_cite_writes_a_results_file():
    cited = {
        name
        for path in [REPO / "BENCHMARKS.md", *doc_files(REPO)]
        for name in re.findall(r"benchmarks/(\w+)\.py", path.read_text(encoding="utf-8"))
    }
    silent = [n for n in sorted(cited) if "Record(" not in (REPO / f"benchmarks/{n}.py").read_text()]
    assert silent == [], "write the figures with regionmed.publish.record.Record"


def test_the_cli_exits_1_when_stale_2_on_an_unknown_block_and_0_once_written(tmp_path):
    from typer.testing import CliRunner

    from regionmed.cli import app

    _copy(tmp_path, "metrics/eval.json")
    (tmp_path / "README.md").write_text("In short, <!-- numbers:readme-eval -->old<!-- /numbers -->.\n")
    run = CliRunner().invoke
    assert run(app, ["docs", "--root", str(tmp_path)]).exit_code == 1
    assert run(app, ["docs", "--root", str(tmp_path), "--write"]).exit_code == 0
    assert run(app, ["docs", "--root", str(tmp_path)]).exit_code == 0
    (tmp_path / "BENCHMARKS.md").write_text("<!-- numbers:no-such-block --><!-- /numbers -->\n")
    assert run(app, ["docs", "--root", str(tmp_path), "--write"]).exit_code == 2
