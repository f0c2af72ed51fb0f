"""Where a mention's words say it is: one (side, zone) place per side the words name.

The words are a mention's leading words and its location phrase, lower-cased, with a flag for those
inside another match of the vocabulary (a zone word there names part of that structure, not a zone:
"left *basal* ganglia hemorrhage"). They fall into groups at join words ("and", "to", "/"):
"in the right upper zone and left mid zone" is two groups. A group that names a side but no zone takes
the zones of the next group that has some ("right and left lower zones"); a group that names zones but
no side takes the side of the group before it ("right upper and middle lobes"). Each side then gets the
zones of its groups, as one zone or a span "<top> to <bottom>" of ``location.zone_order``.

Both sides ("bilateral", "both", "bibasal", "right and left", "R>L") give two places, right and left,
each with its zones; so do plural location nouns and diffuse words ("at the bases", "perihilar",
"diffuse") when no side is named. Diffuse words ("diffuse", "throughout", "entire") give all zones
when no zone is named. No side and no zone: one place with neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from regionmed.annotation.vocabulary import BOTH, LocationWords

SIDES = ("right", "left")


@dataclass(frozen=True)
class Place:
    side: str | None  # "right" | "left" | None
    zone: str | None  # one zone ("lower"), a span ("middle to lower") or None


@dataclass
class _Group:
    sides: set[str] = field(default_factory=set)
    zones: list[str] = field(default_factory=list)

    def named(self) -> bool:
        return bool(self.sides or self.zones)


def zone_span(zones: Sequence[str], order: Sequence[str]) -> str | None:
    """One zone, or the span "<top> to <bottom>" of the ordered zones among ``zones``; a zone outside
    ``order`` ("frontal") is taken as written when no ordered zone is named (the first one)."""
    ranked = sorted({order.index(z) for z in zones if z in order})
    if ranked:
        top, bottom = order[ranked[0]], order[ranked[-1]]
        return top if top == bottom else f"{top} to {bottom}"
    return zones[0] if zones else None


def _groups(
    words: Sequence[str], inside: Sequence[bool], loc: LocationWords
) -> tuple[list[_Group], bool, bool]:
    groups, plural, diffuse = [_Group()], False, False
    for word, in_match in zip(words, inside, strict=True):
        group = groups[-1]
        if word in loc.joins:
            if group.named():
                groups.append(_Group())
            continue
        plural |= word in loc.both_unless_sided
        diffuse |= word in loc.all_zones_unless_zoned
        if word in loc.abbreviations and not in_match:
            side, zone = loc.abbreviations[word]
            group.sides |= set(SIDES) if side == BOTH else {side}
            group.zones.append(zone)
        elif word in loc.sides:
            side = loc.sides[word]
            group.sides |= set(SIDES) if side == BOTH else {side}
        elif word in loc.zones and not in_match:
            group.zones.append(loc.zones[word])
    return [g for g in groups if g.named()], plural, diffuse


def read_places(words: Sequence[str], inside: Sequence[bool], loc: LocationWords) -> list[Place]:
    """The places a mention's words name (see the module docstring), right before left."""
    groups, plural, diffuse = _groups(words, inside, loc)
    for i, group in enumerate(groups):
        if group.sides and not group.zones:  # "right and left lower zones"
            later = next((g for g in groups[i + 1 :] if g.zones), None)
            if later is not None:
                group.zones = list(later.zones)
        elif group.zones and not group.sides and i > 0:  # "right upper and middle lobes"
            group.sides = set(groups[i - 1].sides)
    zones_by_side: dict[str | None, list[str]] = {}
    for group in groups:
        for side in sorted(group.sides, key=SIDES.index) or [None]:
            zones_by_side.setdefault(side, []).extend(group.zones)
    unsided = zones_by_side.pop(None, [])
    if not zones_by_side and plural:  # "at the bases", "perihilar": both lungs
        zones_by_side = {side: [] for side in SIDES}
    for zones in zones_by_side.values():
        zones.extend(unsided)
    if not zones_by_side:
        zones_by_side = {None: unsided}
    everywhere = zone_span(loc.zone_order, loc.zone_order) if diffuse else None
    return [
        Place(side, zone_span(zones, loc.zone_order) or everywhere)
        for side, zones in sorted(zones_by_side.items(), key=lambda kv: SIDES.index(kv[0]) if kv[0] else 0)
    ]
