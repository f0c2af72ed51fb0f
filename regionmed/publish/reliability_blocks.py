"""The blocks of docs/reliability.md: a run of the fault suite (benchmarks/bench_faults.py), test by test,
and what each fault's test measured."""

from __future__ import annotations

from regionmed.publish.render import Block

R = "benchmarks/results"


def _figure(key: str, value) -> str:
    name = key.replace("_s", " (s)") if key.endswith("_s") else key
    if isinstance(value, dict):
        value = ", ".join(f"{k} {v}" for k, v in value.items())
    return f"{name.replace('_', ' ')}: {value}"


def _faults(data: dict) -> dict:
    f = data["figures"]
    tests = [
        {**t, "outcome_text": t["outcome"] + (f" ({t['reason']})" if t.get("reason") else "")}
        for t in f["tests"]
    ]
    measures = [
        {"fault": m["fault"], "text": "; ".join(_figure(k, v) for k, v in sorted(m.items()) if k != "fault")}
        for m in f["measures"]
    ]
    passed = sum(t["outcome"] == "passed" for t in tests)
    return {
        "test_rows": tests,
        "measure_rows": measures,
        "summary": f"{passed} of {len(tests)} tests passed in {f['suite_seconds'] / 60:.1f} min",
    }


RELIABILITY_BLOCKS = {
    "reliability-tests": Block(
        (f"{R}/faults.json",),
        "{run}\n\n| test | outcome | seconds |\n|---|---|---:|\n{ROWS}\n\n{summary}.",
        rows="test_rows",
        row="| `{test}` | {outcome_text} | {seconds:.1f} |",
        derive=_faults,
    ),
    "reliability-measures": Block(
        (f"{R}/faults.json",),
        "| fault | measured |\n|---|---|\n{ROWS}",
        rows="measure_rows",
        row="| {fault} | {text} |",
        derive=_faults,
    ),
}
