"""The finding and anatomy vocabulary of report reading, loaded from YAML and turned into spaCy patterns.

The data lives in ``regionmed/prompts/report_vocabulary.yaml`` (beside the zero-shot prompts) (its header
explains the format); this module validates it and builds the entity ruler's token patterns and the NegEx
termsets from it, so that no term or cue is written in code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from regionmed.prompts.vocabulary_file import REPORT_VOCABULARY_FILE

DEFAULT_VOCABULARY = REPORT_VOCABULARY_FILE  # regionmed/prompts/vocabulary_file.py

FINDING, ANATOMY, NOT_FINDING = "FINDING", "ANATOMY", "NOT_FINDING"
NEGEX_KEYS = ("pseudo_negations", "preceding_negations", "following_negations", "termination")
LOCATION_KEYS = (
    "sides",
    "zones",
    "abbreviations",
    "sizes",
    "modifiers",
    "prepositions",
    "bridges",
    "stops",
    "max_words",
    "side_lookback",
)
# optional location keys (a vocabulary written before they existed still loads): see the YAML
OPTIONAL_LOCATION_KEYS = ("zone_order", "both_unless_sided", "all_zones_unless_zoned", "joins", "determiners")
BOTH = "both"  # the side of a word that names both sides ("bilateral"); null in the YAML means the same


@dataclass(frozen=True)
class LocationWords:
    """Lower-cased words read around a mention (see the YAML's ``location`` section)."""

    sides: dict[str, str]  # word -> "right" | "left" | "both"
    zones: dict[str, str]
    abbreviations: dict[str, tuple[str, str]]  # word -> (side or "both", zone)
    sizes: dict[str, str]
    modifiers: frozenset[str]
    prepositions: frozenset[str]
    bridges: frozenset[str]
    stops: frozenset[str]
    max_words: int
    side_lookback: int
    zone_order: tuple[str, ...] = ()  # zones that form spans, top to bottom ("mid and lower zones")
    both_unless_sided: frozenset[str] = frozenset()  # "bases", "perihilar": both sides unless one is named
    all_zones_unless_zoned: frozenset[str] = frozenset()  # "diffuse", "throughout": all zones unless named
    joins: frozenset[str] = frozenset()  # "and", "to": join two location words ("right and left")
    determiners: frozenset[str] = frozenset()  # "both" right before a finding: "both nodules", no side

    def places(self) -> frozenset[str]:
        """Words that say where: sides, zones, side-and-zone words, plural and diffuse location words."""
        return (
            frozenset(self.sides)
            | frozenset(self.zones)
            | frozenset(self.abbreviations)
            | self.both_unless_sided
            | self.all_zones_unless_zoned
        )

    def leading(self) -> frozenset[str]:
        """Words a mention's phrase may start with, before its match."""
        return self.places() | frozenset(self.sizes) | self.modifiers


@dataclass(frozen=True)
class Vocabulary:
    findings: dict[str, tuple[str, ...]]  # canonical label -> synonyms
    anatomy: dict[str, tuple[str, ...]]
    paired: frozenset[str]  # anatomy labels that take a side into their label
    not_findings: tuple[str, ...]
    location: LocationWords
    negation: dict[str, list[str]]  # a full NegEx termset
    uncertainty: dict[str, list[str]]  # the same four keys, uncertainty cues
    refine: dict[str, dict[str, str]]  # generic finding -> anatomy -> specific finding

    def patterns(self) -> list[dict]:
        """Entity-ruler phrase patterns: every written variant of every synonym, ``id`` its canonical label.

        Phrase patterns (hashed token sequences, matched case-insensitively) rather than token patterns:
        the token Matcher tests every pattern at every token, ~20x slower with this many synonyms.
        """
        out = []
        for kind, entries in ((FINDING, self.findings), (ANATOMY, self.anatomy)):
            for label, synonyms in entries.items():
                out += [{"label": kind, "pattern": v, "id": label} for s in synonyms for v in variants(s)]
        out += [{"label": NOT_FINDING, "pattern": v, "id": s} for s in self.not_findings for v in variants(s)]
        return out


def plurals(word: str) -> list[str]:
    """Regular English plurals of a noun (irregular ones are listed as synonyms in the YAML)."""
    if word.endswith("sis"):
        return [word[:-2] + "es"]  # metastasis -> metastases
    if word.endswith("us"):
        return [word[:-2] + "i", word + "es"]  # embolus -> emboli
    if word.endswith(("s", "x", "ch", "sh")):
        return [word + "es"]
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return [word[:-1] + "ies"]
    return [word + "s"]


def variants(phrase: str) -> list[str]:
    """Written forms of a phrase: words joined by a space or a hyphen ("ground-glass", "ground glass"),
    the last word singular or plural."""
    words = [w for w in phrase.strip().lower().replace("-", " - ").split() if w != "-"]
    if not words:
        raise ValueError(f"vocabulary: empty synonym {phrase!r}")
    lasts = [words[-1], *plurals(words[-1])]
    forms = [""]
    for word in words[:-1]:
        forms = [f + word + sep for f in forms for sep in (" ", "-")]
    return sorted(f + last for f in forms for last in lasts)


def _words(items, field: str) -> list[str]:
    if not isinstance(items, list) or not all(isinstance(w, str) and w.strip() for w in items):
        raise ValueError(f"vocabulary: {field} must be a list of non-empty strings, got {items!r}")
    return [w.strip().lower() for w in items]


def _side(value, field: str) -> str:
    """A side word's side: right, left or both (null = both, as vocabularies before "both" wrote it)."""
    side = BOTH if value is None else str(value).lower()
    if side not in ("right", "left", BOTH):
        raise ValueError(f"vocabulary: {field} must be right, left, both or null, got {value!r}")
    return side


def _termset(base: dict[str, list[str]], add: dict, remove: dict, field: str) -> dict[str, list[str]]:
    out = {k: list(base.get(k, [])) for k in NEGEX_KEYS}
    for key, words in (add or {}).items():
        if key not in NEGEX_KEYS:
            raise ValueError(f"vocabulary: {field}.add.{key} is not one of {NEGEX_KEYS}")
        out[key] += [w for w in _words(words, f"{field}.add.{key}") if w not in out[key]]
    for key, words in (remove or {}).items():
        if key not in NEGEX_KEYS:
            raise ValueError(f"vocabulary: {field}.remove.{key} is not one of {NEGEX_KEYS}")
        drop = set(_words(words, f"{field}.remove.{key}"))
        out[key] = [w for w in out[key] if w not in drop]
    return out


def load_vocabulary(path: Path | str | None = None) -> Vocabulary:
    """Read and check a vocabulary YAML; errors name the file and the field."""
    from negspacy.termsets import termset  # heavy import only when a vocabulary is built

    path = Path(path) if path is not None else DEFAULT_VOCABULARY
    if not path.is_file():
        raise FileNotFoundError(f"vocabulary file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    try:
        findings = {str(k): tuple(_words(v, f"findings.{k}")) for k, v in data["findings"].items()}
        anatomy, paired = {}, set()
        for label, entry in data["anatomy"].items():
            anatomy[str(label)] = tuple(_words(entry["synonyms"], f"anatomy.{label}.synonyms"))
            if entry.get("paired", False):
                paired.add(str(label))
        loc = data["location"]
        missing = [k for k in LOCATION_KEYS if k not in loc]
        if missing:
            raise KeyError(f"location.{missing[0]}")
        location = LocationWords(
            sides={str(k).lower(): _side(v, f"location.sides.{k}") for k, v in loc["sides"].items()},
            zones={str(k).lower(): str(v) for k, v in loc["zones"].items()},
            abbreviations={
                str(k).lower(): (_side(v[0], f"location.abbreviations.{k}"), str(v[1]))
                for k, v in loc["abbreviations"].items()
            },
            sizes={str(k).lower(): str(v) for k, v in loc["sizes"].items()},
            modifiers=frozenset(_words(loc["modifiers"], "location.modifiers")),
            prepositions=frozenset(_words(loc["prepositions"], "location.prepositions")),
            bridges=frozenset(_words(loc["bridges"], "location.bridges")),
            stops=frozenset(_words(loc["stops"], "location.stops")),
            max_words=int(loc["max_words"]),
            side_lookback=int(loc["side_lookback"]),
            zone_order=tuple(_words(loc.get("zone_order", []), "location.zone_order")),
            **{
                key: frozenset(_words(loc.get(key, []), f"location.{key}"))
                for key in OPTIONAL_LOCATION_KEYS
                if key != "zone_order"
            },
        )
        unknown = [z for z in location.zone_order if z not in location.zones.values()]
        if unknown:
            raise KeyError(f"location.zone_order: {unknown[0]!r} is no zone of location.zones")
        neg = data.get("negation", {})
        negation = _termset(
            termset("en_clinical").get_patterns(), neg.get("add"), neg.get("remove"), "negation"
        )
        unc = data["uncertainty"]
        uncertainty = {
            "pseudo_negations": _words(unc.get("pseudo", []), "uncertainty.pseudo"),
            "preceding_negations": _words(unc["preceding"], "uncertainty.preceding"),
            "following_negations": _words(unc["following"], "uncertainty.following"),
            "termination": _words(unc["termination"], "uncertainty.termination"),
        }
        not_findings = tuple(_words(data.get("not_findings", []), "not_findings"))
        refine = {
            str(k): {str(a): str(t) for a, t in v.items()} for k, v in (data.get("refine") or {}).items()
        }
        for generic, by_organ in refine.items():
            for organ, specific in by_organ.items():
                if generic not in findings or specific not in findings or organ not in anatomy:
                    raise KeyError(
                        f"refine.{generic}.{organ}: {generic!r} and {specific!r} must be finding "
                        f"labels and {organ!r} an anatomy label"
                    )
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"vocabulary {path}: missing or malformed field {err}") from err
    return Vocabulary(
        findings, anatomy, frozenset(paired), not_findings, location, negation, uncertainty, refine
    )
