"""Computed fields of the docs' blocks: verdicts read off paired intervals, shares, budget checks.

A sentence that says "ahead" or "within budget" is rendered from the numbers it is about, so a
rerun that turns a result around turns the sentence around too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from regionmed.publish.render import FORMATTER, lookup


def fmt(value, spec: str = "v") -> str:
    return FORMATTER.format_field(value, spec)


def direction(diff: Mapping) -> str:
    """``"up"``, ``"down"`` or ``"unclear"``: where a paired difference's interval lies against zero."""
    if diff.get("low") is not None and diff["low"] > 0:
        return "up"
    if diff.get("high") is not None and diff["high"] < 0:
        return "down"
    return "unclear"


def listing(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1] if items else ""


def verdicts(data: Mapping, diff_path: str, items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Labels grouped by the direction of ``diff_path/<metric>`` for each (label, metric)."""
    out: dict[str, list[str]] = {"up": [], "down": [], "unclear": []}
    for label, metric in items:
        out[direction(lookup(data, f"{diff_path}/{metric}"))].append(label)
    return out


def comparison(
    data: Mapping,
    items: Sequence[tuple[str, str, str]],
    ours: str = "regionmed",
    theirs: str = "baseline",
    diff: str = "difference",
) -> dict[str, str]:
    """For (label, metric, spec of our value): ``ahead`` / ``behind`` / ``even`` phrases such as
    ``pointing (0.877 [0.849, 0.904] vs 0.166)``; behind and even ones also give the difference."""
    groups: dict[str, list[str]] = {"up": [], "down": [], "unclear": []}
    for label, metric, spec in items:
        d = lookup(data, f"{diff}/{metric}")
        mine, other = fmt(lookup(data, f"{ours}/{metric}"), spec), fmt(lookup(data, f"{theirs}/{metric}"))
        way = direction(d)
        extra = "" if way == "up" else f", {fmt(d, '+ci')}"
        groups[way].append(f"{label} ({mine} vs {other}{extra})")
    return {
        "ahead": listing(groups["up"]),
        "behind": listing(groups["down"]),
        "even": listing(groups["unclear"]),
    }


def within(value: float, budget: float) -> str:
    """Against a ceiling: "within" or "over"."""
    return "within" if value <= budget else "over"


def reaches(value: float, floor: float) -> str:
    """Against a floor: "within" or "short of"."""
    return "within" if value >= floor else "short of"


def flat_settings(override: Mapping, whole: tuple[str, ...] = ()) -> dict:
    """A nested params override as ``{"a.b.c": value}``; a key named in ``whole`` keeps its dict."""
    out = {}
    for key, value in override.items():
        if isinstance(value, Mapping) and key not in whole:
            out.update({f"{key}.{k}": v for k, v in flat_settings(value, whole).items()})
        else:
            out[key] = value
    return out
