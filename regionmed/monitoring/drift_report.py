"""The drift report a person opens: ``index.html`` (the summary: window, row counts, every check
with its score and threshold) beside Evidently's own report per embedding kind.

Only what the summary holds goes in: scores, thresholds, counts, label names; no image, no text.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from regionmed.atomic import atomic_file, atomic_write_text
from regionmed.monitoring.checks import KindResult

REPORT_FILES = ("index.html", "image.html", "text.html")

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
.drift{background:#fdd}.no_drift{background:#dfd}.not_enough_data,.no_data{background:#eee}
.banner{font-size:1.3em;padding:.6em;border-radius:.3em;margin:1em 0}"""


def write_reports(results: list[KindResult], summary: dict[str, Any], report_dir: Path) -> dict[str, str]:
    """``index.html`` (the summary) and one Evidently report per checked kind; stale ones are removed.
    Each file is written whole or not at all, ``index.html`` last (regionmed/atomic.py): a report
    folder with an ``index.html`` is complete. The folder may hold other files: they are kept."""
    report_dir.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        (report_dir / name).unlink(missing_ok=True)
    paths = {"index": str(report_dir / "index.html")}
    for r in results:
        if r.snapshot is not None:
            path = report_dir / f"{r.kind}.html"
            with atomic_file(path) as tmp:
                r.snapshot.save_html(str(tmp))
            paths[r.kind] = str(path)
    atomic_write_text(
        report_dir / "index.html",
        render_index(summary, {k: Path(v).name for k, v in paths.items() if k != "index"}),
    )
    return paths


def render_index(summary: dict[str, Any], links: dict[str, str]) -> str:
    def e(v):
        return html.escape(str(v))

    w, cur, ref = summary["window"], summary["current"], summary["reference"]

    def fmt(v):
        return "-" if v is None else f"{v:.4g}"

    def yes_no(d):
        return "yes" if d else ("no" if d is False else "-")

    rows = "".join(
        f"<tr class='{e(c['status'])}'><td>{e(c['name'])}</td><td>{e(c['method'])}</td>"
        f"<td>{fmt(c['score'])}</td><td>{e(c['threshold'])}</td>"
        f"<td>{yes_no(c['drift'])}</td><td>{e(c['status'])}</td></tr>"
        for c in summary["checks"]
    )
    counts = "".join(
        f"<tr><td>{e(k)}</td><td>{ref['rows'].get(k, 0)}</td><td>{cur['rows_in_window'].get(k, 0)}</td>"
        f"<td>{cur['rows'].get(k, 0)}</td><td>{cur['rows_other_model'].get(k, 0)}</td>"
        f"<td>{e(summary.get('rows_used', {}).get(k, {}).get('current', '-'))}</td></tr>"
        for k in ref["rows"]
    )
    reports = (
        "".join(
            f"<li><a href='{e(f)}'>{e(k)} embeddings, descriptors"
            f"{' and zero-shot shares' if k == 'image' else ''} (Evidently)</a></li>"
            for k, f in links.items()
        )
        or "<li>none (no kind had enough rows)</li>"
    )
    # a backslash at a line's end joins it to the next (over-long lines, the page's text unchanged)
    return f"""<!doctype html><html><head><meta charset='utf-8'>\
<title>RegionMed drift: {e(summary["status"])}</title>
<style>{_STYLE}</style></head><body>
<h1>RegionMed drift report</h1>
<div class='banner {e(summary["status"])}'><b>{e(summary["status"].replace("_", " "))}</b>: \
{e(summary["message"])}</div>
<p>Window: {e(w["start"])} to {e(w["end"])} ({e(w["hours"])} h, end: {e(w["anchor"])}). Reference: split
{e(ref["split"])} of model {e(", ".join(ref["model_versions"]))}. Log: {e(cur["log_dir"])}.
At least {summary["min_rows"]} current rows per kind; at most {summary["sample_rows"]} rows per side are \
compared.</p>
<h2>Rows</h2><table><tr><th>kind</th><th>reference</th><th>in window</th><th>of the reference's model</th>
<th>other models</th><th>compared</th></tr>{counts}</table>
<h2>Checks</h2><table><tr><th>check</th><th>method</th><th>score</th><th>threshold</th><th>drift</th><th>status</th></tr>
{rows}</table>
<h2>Reports</h2><ul>{reports}</ul>
<p>Contains embeddings (as plots), descriptors and label names only: no image, no text.</p></body></html>
"""
