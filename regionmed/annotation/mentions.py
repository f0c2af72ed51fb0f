"""Finding and anatomy mentions read out of free-text reports, with spaCy rules and NegEx.

The pipeline is spaCy's blank English tokenizer, its rule-based ``sentencizer``, an ``entity_ruler``
whose token patterns come from the vocabulary YAML (:mod:`regionmed.annotation.vocabulary`), and
negspacy's NegEx twice: once with its ``en_clinical`` termset (negation), once with the vocabulary's
uncertainty cues. No statistical model is loaded, so nothing is downloaded and results are exact
functions of the text and the vocabulary.

A mention's phrase is its match, the modifiers right before it ("a small", "left") and its location
phrase right after it ("in the left upper zone"); its side, zone and size are read from those words.
Anatomy named inside a finding's location phrase ("no nodule in the *left lung*") is never negated
or uncertain: the structure is there even when the finding is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from regionmed.annotation.vocabulary import ANATOMY, FINDING, Vocabulary, load_vocabulary

# spaCy refuses longer texts (nlp.max_length); longer reports are read in pieces of at most this size.
CHUNK_CHARS = 100_000


@dataclass(frozen=True)
class Mention:
    text: str  # the phrase as written in the report, e.g. "a small nodule in the left upper zone"
    label: str  # canonical label from the vocabulary, e.g. "nodule"
    kind: str  # "finding" | "anatomy"
    side: str | None  # "right" | "left" | None (patient's side, as written; "bilateral" -> None)
    zone: str | None  # canonical zone word ("upper", "middle", "lower", "frontal", ...) or None
    size: str | None  # size bucket "subtle" | "small" | "large" (from "tiny", "mild", "marked", ...) or None
    negated: bool
    uncertain: bool  # "possible", "cannot exclude", "may represent", "?"...
    sentence: int  # index of the sentence within the report


class MentionExtractor:
    """Reads :class:`Mention` s out of reports; build once, reuse (building the pipeline takes ~0.1 s)."""

    def __init__(self, vocabulary: Path | str | None = None) -> None:
        import spacy  # heavy: only when an extractor is built
        import negspacy.negation  # noqa: F401  (registers the "negex" factory)

        self.vocabulary: Vocabulary = load_vocabulary(vocabulary)
        nlp = spacy.blank("en")
        nlp.add_pipe("sentencizer")
        ruler = nlp.add_pipe("entity_ruler", config={"overwrite_ents": True})
        ruler.add_patterns(self.vocabulary.patterns())
        kinds = [FINDING, ANATOMY]
        nlp.add_pipe("negex", config={"neg_termset": self.vocabulary.negation, "ent_types": kinds})
        nlp.add_pipe("negex", name="uncertainty", config={
            "neg_termset": self.vocabulary.uncertainty, "ent_types": [FINDING], "extension_name": "uncertain"})
        nlp.max_length = CHUNK_CHARS + 1
        self.nlp = nlp
        self._leading = self.vocabulary.location.leading()

    def extract(self, report: str) -> list[Mention]:
        return self.extract_many([report])[0]

    def extract_many(self, reports: Iterable[str], batch_size: int = 256) -> list[list[Mention]]:
        """Mentions of each report, in order; reports longer than CHUNK_CHARS are read in pieces."""
        owners: list[int] = []
        texts: list[str] = []
        n = 0
        for n, report in enumerate(reports, start=1):
            if not isinstance(report, str):
                raise TypeError(f"report {n - 1}: expected a string, got {type(report).__name__}")
            for piece in _chunks(report, CHUNK_CHARS):
                owners.append(n - 1)
                texts.append(piece)
        out: list[list[Mention]] = [[] for _ in range(n)]
        sentences_before = [0] * n
        for owner, doc in zip(owners, self.nlp.pipe(texts, batch_size=batch_size)):
            count = 0
            for count, sent in enumerate(doc.sents, start=1):
                out[owner] += self._sentence_mentions(sent, sentences_before[owner] + count - 1)
            sentences_before[owner] += count
        return out

    def _sentence_mentions(self, sent, index: int) -> list[Mention]:
        ents = [e for e in sent.ents if e.label_ in (FINDING, ANATOMY)]
        if not ents:
            return []
        finding_starts = [e.start for e in ents if e.label_ == FINDING]
        located_in_finding: set[int] = set()
        spans = {}
        for ent in ents:
            start = self._phrase_start(ent, sent.start)
            next_finding = min((s for s in finding_starts if s >= ent.end), default=sent.end)
            loc_start, loc_end = self._location(ent, min(next_finding, sent.end))
            spans[ent.start] = (start, loc_start, loc_end)
            if ent.label_ == FINDING:
                located_in_finding |= {a.start for a in ents if loc_start <= a.start and a.end <= loc_end}
        out = []
        for ent in ents:
            start, loc_start, loc_end = spans[ent.start]
            doc = ent.doc
            read = [t.lower_ for t in doc[start:ent.start]] + [t.lower_ for t in doc[loc_start:loc_end]]
            side, zone = self._side_and_zone(read)
            size = next((self.vocabulary.location.sizes[w] for w in read[: ent.start - start]
                         if w in self.vocabulary.location.sizes), None)
            is_finding = ent.label_ == FINDING
            in_location = not is_finding and ent.start in located_in_finding
            label = ent.ent_id_
            if not is_finding and side and label in self.vocabulary.paired:
                label = f"{side} {label}"
            out.append(Mention(
                text=doc[start:max(loc_end, ent.end)].text,
                label=label,
                kind="finding" if is_finding else "anatomy",
                side=side,
                zone=zone,
                size=size,
                negated=bool(ent._.negex) and not in_location,
                uncertain=is_finding and bool(ent._.uncertain),
                sentence=index,
            ))
        return out

    def _phrase_start(self, ent, sent_start: int) -> int:
        """First token of the modifiers right before the match ("a small", "right-sided")."""
        doc, i = ent.doc, ent.start
        while i > sent_start and (doc[i - 1].lower_ in self._leading or doc[i - 1].like_num) \
                and doc[i - 1].ent_type_ not in (FINDING, ANATOMY):
            i -= 1
        return i

    def _location(self, ent, limit: int) -> tuple[int, int]:
        """Token range of the location phrase after the match ("in the left upper zone"), or empty."""
        words = self.vocabulary.location
        doc, i = ent.doc, ent.end
        while i < limit and doc[i].lower_ in words.bridges:
            i += 1
        if i >= limit or doc[i].lower_ not in words.prepositions:
            return ent.end, ent.end
        start, end = i, i + 1
        while end < limit and end - start < words.max_words:
            token = doc[end]
            if (token.is_punct and token.text not in "-/") or token.lower_ in words.stops:
                break
            end += 1
        return start, end

    def _side_and_zone(self, words: list[str]) -> tuple[str | None, str | None]:
        loc = self.vocabulary.location
        sides, zone, bilateral = [], None, False
        for w in words:
            if w in loc.abbreviations:
                side, abbreviated_zone = loc.abbreviations[w]
                sides.append(side)
                zone = zone or abbreviated_zone
            elif w in loc.sides:
                if loc.sides[w] is None:
                    bilateral = True
                else:
                    sides.append(loc.sides[w])
            elif w in loc.zones and zone is None:
                zone = loc.zones[w]
        side = sides[0] if sides and not bilateral and len(set(sides)) == 1 else None
        return side, zone


def _chunks(text: str, limit: int) -> Iterator[str]:
    """Pieces of at most ``limit`` characters, cut after a sentence end or whitespace where possible."""
    while len(text) > limit:
        cut = max(text.rfind(". ", 0, limit) + 1, text.rfind("\n", 0, limit) + 1)
        if cut <= 0:
            cut = text.rfind(" ", 0, limit) + 1 or limit
        yield text[:cut]
        text = text[cut:]
    yield text
