"""How well mentions match the findings a report was written from (where that truth is known).

The synthetic corpus writes each report from its phantom's placed findings, so each image's true
findings (label, side, zone, size) are known exactly; :func:`synthetic_truth` reads them.
:func:`score_mentions` then counts, over a corpus:

- recall: true findings matched one-to-one by a non-negated finding mention of the same label
  (the best-agreeing mention wins when a report has several);
- precision: non-negated finding mentions whose label is a true finding of the image and whose side,
  when one is written, is the side of such a finding (repeats, e.g. in the impression, count as
  correct: they name a true region);
- negation errors: non-negated mentions of a finding the image does not have (the report names it
  only in a pertinent negative), as a share of all finding mentions;
- side, zone and size read correctly, over the matched pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from regionmed.annotation.mentions import Mention


@dataclass(frozen=True)
class TrueFinding:
    label: str
    side: str | None
    zone: str | None
    size: str | None


def synthetic_truth(phantom) -> list[TrueFinding]:
    """The findings a synthetic phantom's report was written from."""
    out = []
    for f in phantom.findings:
        loc = f.location
        out.append(TrueFinding(f.finding.label, loc.side if loc else None, loc.zone if loc else None, f.size))
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n ((nan, nan) when n = 0)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _agreement(t: TrueFinding, m: Mention) -> int:
    return (t.side == m.side) + (t.zone == m.zone) + (t.size == m.size)


def _match(truth: Sequence[TrueFinding], positives: Sequence[Mention]) -> list[tuple[TrueFinding, Mention]]:
    pairs = sorted(
        (
            (_agreement(t, m), ti, mi)
            for ti, t in enumerate(truth)
            for mi, m in enumerate(positives)
            if t.label == m.label
        ),
        reverse=True,
    )
    used_t, used_m, out = set(), set(), []
    for _, ti, mi in pairs:
        if ti not in used_t and mi not in used_m:
            used_t.add(ti)
            used_m.add(mi)
            out.append((truth[ti], positives[mi]))
    return out


def score_mentions(truths: Sequence[Sequence[TrueFinding]], mentions: Sequence[Sequence[Mention]]) -> dict:
    """Counts and rates (with 95% Wilson intervals) of finding mentions against the true findings."""
    if len(truths) != len(mentions):
        raise ValueError(f"{len(truths)} truths but {len(mentions)} mention lists")
    c = dict.fromkeys(
        (
            "true",
            "recalled",
            "mentions",
            "positive",
            "supported",
            "negation_errors",
            "side_ok",
            "zone_ok",
            "size_ok",
        ),
        0,
    )
    for truth, found in zip(truths, mentions, strict=True):
        findings = [m for m in found if m.kind == "finding"]
        positives = [m for m in findings if not m.negated]
        c["true"] += len(truth)
        c["mentions"] += len(findings)
        c["positive"] += len(positives)
        sides = {t.label: set() for t in truth}
        for t in truth:
            sides[t.label].add(t.side)
        for m in positives:
            if m.label not in sides:  # named by the report only in a pertinent negative
                c["negation_errors"] += 1
            elif m.side is None or m.side in sides[m.label]:
                c["supported"] += 1
        pairs = _match(truth, positives)
        c["recalled"] += len(pairs)
        for t, m in pairs:
            c["side_ok"] += t.side == m.side
            c["zone_ok"] += t.zone == m.zone
            c["size_ok"] += t.size == m.size
    rates = {
        "recall": (c["recalled"], c["true"]),
        "precision": (c["supported"], c["positive"]),
        "negation_error_rate": (c["negation_errors"], c["mentions"]),
        "side_accuracy": (c["side_ok"], c["recalled"]),
        "zone_accuracy": (c["zone_ok"], c["recalled"]),
        "size_accuracy": (c["size_ok"], c["recalled"]),
    }
    out: dict = {"counts": c}
    for name, (k, n) in rates.items():
        out[name] = {"value": k / n if n else math.nan, "ci95": wilson(k, n), "k": k, "n": n}
    return out
