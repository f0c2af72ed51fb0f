"""How well mentions match the findings a report was written from (where that truth is known).

The synthetic corpus writes each report from its phantom's placed findings, so each image's true
findings (label, side, zone, size) are known exactly; :func:`synthetic_truth` reads them, its zone
word in the reader's canonical form (the abdomen's "mid" is the "middle" zone).
:func:`score_mentions` then counts, over a corpus:

- recall: true findings matched one-to-one by a non-negated finding mention of the same label
  (the best-agreeing mention wins when a report has several);
- precision: non-negated finding mentions whose label is a true finding of the image and whose side,
  when one is written, is the side of such a finding (repeats, e.g. in the impression, count as
  correct: they name a true region);
- negation errors: non-negated mentions of a finding the image does not have (the report names it
  only in a pertinent negative), as a share of all finding mentions;
- side, zone and size read correctly, over the matched pairs.

Where no corpus writes the truth, a hand-written sentence set does (:func:`load_sentence_set`, e.g.
``tests/annotation/cxr_sentences.yaml``): every finding mention each sentence should give, negated and
uncertain ones included, and :func:`score_sentences` counts recall, precision and the side, zone,
negation and uncertainty read right over the matched pairs. ``python -m
regionmed.annotation.mention_scoring SET.yaml`` prints those scores per half of the set.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from regionmed.annotation.mentions import Mention
from regionmed.annotation.vocabulary import load_vocabulary


@dataclass(frozen=True)
class TrueFinding:
    label: str
    side: str | None
    zone: str | None
    size: str | None


@lru_cache(maxsize=1)
def _canonical_zones() -> dict[str, str]:
    return load_vocabulary().location.zones


def synthetic_truth(phantom) -> list[TrueFinding]:
    """The findings a synthetic phantom's report was written from."""
    out = []
    for f in phantom.findings:
        loc = f.location
        zone = _canonical_zones().get(loc.zone, loc.zone) if loc and loc.zone else None
        out.append(TrueFinding(f.finding.label, loc.side if loc else None, zone, f.size))
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


def _match(truth: Sequence, positives: Sequence[Mention], agreement: Callable = _agreement) -> list[tuple]:
    """One-to-one pairs of the same label, the best-agreeing first."""
    pairs = sorted(
        (
            (agreement(t, m), ti, mi)
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


@dataclass(frozen=True)
class ExpectedMention:
    """A finding mention a hand-written sentence should give."""

    label: str
    side: str | None = None
    zone: str | None = None
    negated: bool = False
    uncertain: bool = False


def load_sentence_set(path: Path | str) -> dict[str, list[tuple[str, list[ExpectedMention]]]]:
    """A sentence set's halves: name -> (sentence, the finding mentions it should give)."""
    data = yaml.safe_load(Path(path).read_text())
    return {
        half: [(row["text"], [ExpectedMention(**f) for f in row["findings"]]) for row in rows]
        for half, rows in data.items()
    }


def _sentence_agreement(e: ExpectedMention, m: Mention) -> int:
    return (e.side == m.side) + (e.zone == m.zone) + (e.negated == m.negated) + (e.uncertain == m.uncertain)


def score_sentences(
    expected: Sequence[Sequence[ExpectedMention]], mentions: Sequence[Sequence[Mention]]
) -> dict:
    """Recall and precision of finding mentions against the expected ones (negated and uncertain ones
    included), and side, zone, negation and uncertainty accuracy over the matched pairs (95% Wilson)."""
    if len(expected) != len(mentions):
        raise ValueError(f"{len(expected)} sentences but {len(mentions)} mention lists")
    c = dict.fromkeys(
        ("expected", "found", "matched", "side_ok", "zone_ok", "negation_ok", "uncertain_ok"), 0
    )
    wrong = []
    for index, (want, found) in enumerate(zip(expected, mentions, strict=True)):
        findings = [m for m in found if m.kind == "finding"]
        c["expected"] += len(want)
        c["found"] += len(findings)
        pairs = _match(want, findings, _sentence_agreement)
        c["matched"] += len(pairs)
        for e, m in pairs:
            c["side_ok"] += e.side == m.side
            c["zone_ok"] += e.zone == m.zone
            c["negation_ok"] += e.negated == m.negated
            c["uncertain_ok"] += e.uncertain == m.uncertain
        exact = len(pairs) == len(want) == len(findings) and all(_sentence_agreement(*p) == 4 for p in pairs)
        if not exact:
            wrong.append(
                {
                    "sentence": index,
                    "expected": [asdict(e) for e in want],
                    "found": [_brief(m) for m in findings],
                }
            )
    rates = {
        "recall": (c["matched"], c["expected"]),
        "precision": (c["matched"], c["found"]),
        "side_accuracy": (c["side_ok"], c["matched"]),
        "zone_accuracy": (c["zone_ok"], c["matched"]),
        "negation_accuracy": (c["negation_ok"], c["matched"]),
        "uncertainty_accuracy": (c["uncertain_ok"], c["matched"]),
    }
    out: dict = {"counts": c, "sentences_wrong": len(wrong), "wrong": wrong}
    for name, (k, n) in rates.items():
        out[name] = {"value": k / n if n else math.nan, "ci95": wilson(k, n), "k": k, "n": n}
    return out


def _brief(m: Mention) -> dict:
    return {"label": m.label, "side": m.side, "zone": m.zone, "negated": m.negated, "uncertain": m.uncertain}


def score_sentence_set(path: Path | str, extractor) -> dict[str, dict]:
    """:func:`score_sentences` of each half of a sentence set; each entry of ``wrong`` (a sentence not read
    exactly) carries its text."""
    out = {}
    for half, rows in load_sentence_set(path).items():
        found = extractor.extract_many([text for text, _ in rows])
        out[half] = score_sentences([want for _, want in rows], found)
        for wrong in out[half]["wrong"]:
            wrong["text"] = rows[wrong["sentence"]][0]
    return out


def mention_statistics(mentions: Sequence[Sequence[Mention]]) -> dict:
    """Descriptive figures of the finding mentions of a corpus without truth: per report, with a side,
    with a zone, and how many are one side of a finding that names both sides."""
    findings = [m for found in mentions for m in found if m.kind == "finding"]
    n = max(len(findings), 1)
    return {
        "reports": len(mentions),
        "finding_mentions": len(findings),
        "per_report": round(len(findings) / max(len(mentions), 1), 3),
        "negated_share": round(sum(m.negated for m in findings) / n, 3),
        "with_side_share": round(sum(m.side is not None for m in findings) / n, 3),
        "with_zone_share": round(sum(m.zone is not None for m in findings) / n, 3),
        "bilateral_split": sum(m.bilateral for m in findings),
    }


def read_records(path: Path | str) -> list[str]:
    """The reports of a JSONL corpus in the generic import format (docs/import-format.md)."""
    with open(path, encoding="utf-8") as fh:
        return [str(json.loads(line).get("report") or "") for line in fh if line.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    from regionmed.annotation.mentions import MentionExtractor

    parser = argparse.ArgumentParser(description="Score the mention reader on a hand-written sentence set.")
    parser.add_argument("sentence_set", type=Path, nargs="?", help="e.g. tests/annotation/cxr_sentences.yaml")
    parser.add_argument("--halves", nargs="*", default=None, help="score only these halves (default: all)")
    parser.add_argument("--show-wrong", action="store_true", help="also print the sentences read wrong")
    parser.add_argument(
        "--records", type=Path, default=None, help="also: mention statistics of a JSONL corpus"
    )
    args = parser.parse_args(argv)
    extractor = MentionExtractor()
    if args.records is not None:
        print(json.dumps(mention_statistics(extractor.extract_many(read_records(args.records)))))
    scores = score_sentence_set(args.sentence_set, extractor) if args.sentence_set else {}
    for half, score in scores.items():
        if args.halves is not None and half not in args.halves:
            continue
        figures = {k: round(v["value"], 3) for k, v in score.items() if isinstance(v, dict) and "value" in v}
        print(json.dumps({"half": half, **figures, "sentences_wrong": score["sentences_wrong"]}))
        if args.show_wrong:
            for wrong in score["wrong"]:
                print("  ", json.dumps(wrong))


if __name__ == "__main__":
    main()
