"""Write a :class:`ValidationResult`: JSON for DVC metrics and a standalone static HTML page.

The page has no external CSS or JS (GX's own Data Docs load theirs from CDNs and render unstyled
offline): one table per suite with each expectation, its severity, outcome, observed value and
failing examples, and a list of the expectations that were skipped and why.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from regionmed.atomic import atomic_write_text
from regionmed.validation.result import CheckResult, ValidationResult, _short

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f2f2f2}code,pre{font:12px ui-monospace,monospace}
pre{white-space:pre-wrap;margin:0;max-height:12em;overflow:auto}
.pass{color:#1a7f37}.fail{color:#b00020;font-weight:600}.warn{color:#9a6700;font-weight:600}
.skip{color:#666}.banner{padding:.6em 1em;border-radius:4px}
.ok{background:#dafbe1}.bad{background:#ffebe9}
"""


def write_outputs(
    result: ValidationResult,
    metrics_file: str | Path,
    report_file: str | Path,
    timings_file: str | Path | None = None,
) -> None:
    """The metrics JSON (deterministic), the HTML page and, if asked, the run's timings as JSON; each
    written whole or not at all (regionmed/atomic.py)."""
    atomic_write_text(metrics_file, json.dumps(result.to_dict(), indent=2, sort_keys=False) + "\n")
    atomic_write_text(report_file, render_html(result))
    if timings_file:
        atomic_write_text(timings_file, json.dumps(result.timings_dict(), indent=2) + "\n")


def _status(c: CheckResult) -> tuple[str, str]:
    if c.success:
        return "pass", "pass"
    return ("FAIL", "fail") if c.severity == "critical" else ("warning", "warn")


def _row(c: CheckResult) -> str:
    label, css = _status(c)
    examples = json.dumps(c.examples, indent=None, default=str) if c.examples else ""
    args = {k: v for k, v in c.kwargs.items() if k not in ("column", "column_A", "column_B", "column_list")}
    cells = [
        f"<code>{html.escape(c.check)}</code><br><small>{html.escape(c.description)}</small>",
        f"<code>{html.escape(', '.join(c.columns))}</code>",
        f"<code>{html.escape(c.expectation)}</code><br><small>{html.escape(_short(args, 300))}</small>",
        html.escape(c.severity),
        f'<span class="{css}">{label}</span>',
        html.escape(_short(c.error or c.observed, 400)),
        f"<pre>{html.escape(_short(examples, 2000))}</pre>" if examples else "",
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def render_html(result: ValidationResult) -> str:
    ok = result.success
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>Corpus validation</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Corpus validation (Great Expectations)</h1>",
        (
            f"<p class='banner {'ok' if ok else 'bad'}'><b>{'PASSED' if ok else 'FAILED'}</b>: "
            f"{len(result.checks)} expectations, {len(result.critical_failures)} critical failure(s), "
            f"{len(result.warnings)} warning(s), {len(result.skipped)} skipped.</p>"
        ),
        (
            f"<p>Corpus <code>{html.escape(result.corpus_dir)}</code>, "
            f"source <code>{html.escape(result.source)}</code>; "
            f"regions required: {result.regions_required}; QA required: {result.qa_required}; "
            f"{result.elapsed_s:.1f} s.</p>"
        ),
        "<h2>Corpus figures</h2><table>"
        + "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in result.stats.items()
        )
        + "</table>",
    ]
    failing = result.critical_failures + result.warnings
    if failing:
        parts.append(
            "<h2>Failures</h2><ul>"
            + "".join(f"<li class='{_status(c)[1]}'>{html.escape(c.one_line())}</li>" for c in failing)
            + "</ul>"
        )
    header = (
        "<tr><th>check</th><th>column(s)</th><th>expectation</th><th>severity</th><th>result</th>"
        "<th>observed</th><th>failing examples</th></tr>"
    )
    for suite in dict.fromkeys(c.suite for c in result.checks):
        rows = "".join(_row(c) for c in result.checks if c.suite == suite)
        parts.append(f"<h2>Suite <code>{html.escape(suite)}</code></h2><table>{header}{rows}</table>")
    if result.skipped:
        parts.append(
            "<h2>Skipped</h2><table><tr><th>suite</th><th>check</th><th>column(s)</th><th>reason</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(s['suite'])}</td><td class='skip'>{html.escape(s['check'])}"
                f"</td><td>{html.escape(', '.join(s['columns']))}</td>"
                f"<td>{html.escape(s['reason'])}</td></tr>"
                for s in result.skipped
            )
            + "</table>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)
