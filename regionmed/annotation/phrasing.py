"""A mention → the region it becomes: label, phrase and hard negatives.

The phrase is the mention as written ("a small liver lesion in the left lobe of the liver"), so
the localizer reads every location word the report gave and training sees the report's wording,
as long as the shared text prior (:func:`regionmed.corpus.location_prior.phrase_location`, what the
``prior`` and ``self`` localizers and the evaluation read) finds the same side and zone in those words
as the mention reader did. Otherwise (words the prior does not know, "right basal consolidation",
"LUL mass"; one side of a bilateral mention, "bibasal atelectasis") the phrase names the mention's place
in the project's words: "a consolidation in the right lower zone", "an atelectasis in the left lower
zone", "a pleural effusion on the right", "the left lung".
Hard negatives differ from it in exactly one attribute, as for given regions
(:func:`regionmed.corpus.phrases.hard_negatives`): the other side (left/right swapped), the other
size (its size word replaced by one of the swapped bucket) and another finding of the modality
(the label's words replaced). A swap the text does not allow (no side word, no size word, a label
written as a synonym) is left out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from regionmed.corpus.location_prior import phrase_location, zone_rows
from regionmed.corpus.phrases import (
    DEFAULT_ZONES,
    SIDES,
    SIZE_SWAP,
    SIZE_WORDS,
    SIZE_WORDS_BY_FINDING,
    has_laterality,
    region_phrase,
    swap_laterality,
)
from regionmed.corpus.schema import Region


@dataclass(frozen=True)
class PendingRegion:
    """A region waiting for its box."""

    label: str
    phrase: str
    kind: str
    size: str | None
    hard_negatives: tuple[str, ...]

    def with_box(self, bbox: tuple[float, float, float, float], confidence: float, placed_by: str) -> Region:
        return Region(
            bbox=tuple(bbox),
            label=self.label,
            phrase=self.phrase,
            hard_negatives=self.hard_negatives,
            kind=self.kind,
            size=self.size,
            origin="annotated",
            confidence=round(float(confidence), 6),
            placed_by=placed_by,
        )


def clean_phrase(text: str) -> str:
    """Whitespace collapsed, end punctuation off, a sentence-initial capital lowered ("A small" → "a small",
    "CT" kept)."""
    text = " ".join(text.split()).strip(" .,;:")
    if len(text) > 1 and text[0].isupper() and not text[1].isupper():
        text = text[0].lower() + text[1:]
    return text


def _swap_word(text: str, old: str, new: str) -> str | None:
    pattern = rf"\b{re.escape(old)}\b"
    return (
        re.sub(pattern, new, text, count=1, flags=re.IGNORECASE)
        if re.search(pattern, text, re.IGNORECASE)
        else None
    )


ALL_ROWS = (0, len(DEFAULT_ZONES) - 1)  # a zone span over every third says no more than no zone
LUNG_WORDS = re.compile(r"\b(lungs?|hemithorax|hemithoraces)\b", re.IGNORECASE)


def _rows(rows: tuple[int, int] | None) -> tuple[int, int] | None:
    return None if rows == ALL_ROWS else rows


def placed_phrase(mention) -> str:
    """The mention's place in the project's words (the synthetic corpus's phrasing): "a small
    consolidation in the right lower zone", "an opacity in the left middle to lower zones", "the right
    lung"; a side without a zone: "in the right lung" when the words name the lung, else "on the right"."""
    side, zone = mention.side, mention.zone
    if mention.kind != "finding":
        return f"the {mention.label}"
    head = region_phrase(mention.label, mention.size if mention.size in SIZE_WORDS else None, None)
    if zone and _rows(zone_rows(zone)) is not None:
        chest = all(w in DEFAULT_ZONES for w in zone.split() if w != "to")
        noun = ("zones" if " to " in zone else "zone") if chest else "region"  # "occipital region"
        return f"{head} in the {' '.join(w for w in (side, zone, noun) if w)}"
    if side:
        return f"{head} in the {side} lung" if LUNG_WORDS.search(mention.text) else f"{head} on the {side}"
    return head


def region_for(mention, other_findings: list[str], size_words: dict[str, str]) -> PendingRegion:
    """The region a (non-negated) mention describes. ``size_words``: report word → size bucket."""
    phrase = clean_phrase(mention.text) or mention.label
    side, rows = phrase_location(phrase)
    if (side, _rows(rows)) != (mention.side, _rows(zone_rows(mention.zone or ""))):
        phrase = placed_phrase(mention)
    candidates: list[str | None] = []
    if has_laterality(phrase):
        candidates.append(swap_laterality(phrase))
    if mention.kind == "finding":
        if mention.size in SIZE_SWAP:
            swapped = SIZE_WORDS_BY_FINDING.get(mention.label, SIZE_WORDS)[SIZE_SWAP[mention.size]]
            written = next(
                (w for w in re.findall(r"[a-z]+", phrase.lower()) if size_words.get(w) == mention.size), None
            )
            if written:
                candidates.append(_swap_word(phrase, written, swapped))
        other = next((f for f in other_findings if f != mention.label), None)
        if other:
            candidates.append(_swap_word(phrase, mention.label, other))
    negs = tuple(dict.fromkeys(c for c in candidates if c and c.lower() != phrase.lower()))
    size = mention.size if mention.kind == "finding" and mention.size in SIZE_SWAP else None
    return PendingRegion(mention.label, phrase, mention.kind, size, negs)


def most_specific(mentions: list) -> list:
    """Drop a mention when a kept one of the same label and kind says everything it says and more
    ("left liver lesion" in the impression after "a small liver lesion in the left lobe")."""

    def attrs(m):
        return {k: getattr(m, k) for k in ("side", "zone", "size") if getattr(m, k)}

    kept: list = []
    for m in sorted(mentions, key=lambda m: -len(attrs(m))):
        if any(
            k.label == m.label and k.kind == m.kind and attrs(m).items() <= attrs(k).items() for k in kept
        ):
            continue
        kept.append(m)
    order = {id(m): i for i, m in enumerate(mentions)}
    return sorted(kept, key=lambda m: order[id(m)])


__all__ = ["SIDES", "PendingRegion", "clean_phrase", "most_specific", "region_for"]
