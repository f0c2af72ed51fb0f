"""Finding and anatomy mentions read out of free-text reports, with spaCy rules and NegEx.

The pipeline is spaCy's blank English tokenizer, its rule-based ``sentencizer``, an ``entity_ruler``
whose phrase patterns come from the vocabulary YAML (:mod:`regionmed.annotation.vocabulary`), and
negspacy's NegEx twice: once with its ``en_clinical`` termset (negation), once with the vocabulary's
uncertainty cues. No statistical model is loaded, so nothing is downloaded and results are exact
functions of the text and the vocabulary.

A mention's phrase is its match, the modifiers right before it ("a small", "left") and its location
phrase right after it ("in the left upper zone"); its side, zone and size are read from those words
(:mod:`regionmed.annotation.location_reading`). A mention whose words name both sides ("bilateral
effusions", "bibasal atelectasis", "in the RUL and LLL") is given once per side, each with its zone,
so that each becomes a region in one lung.
Anatomy named inside a finding's phrase ("no nodule in the *left lung*", "no *left adrenal* mass") is
never negated or uncertain: the structure is there even when the finding is not.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from regionmed.annotation.location_reading import read_places
from regionmed.annotation.vocabulary import ANATOMY, FINDING, Vocabulary, load_vocabulary

# Reports are read in pieces of at most this many characters, cut after a sentence: NegEx scans every
# entity of the text for each sentence (time grows with the square of the length: 1 MB took ~90 s
# in one piece, ~2 s in these), and spaCy refuses texts over nlp.max_length.
CHUNK_CHARS = 2_000


@dataclass(frozen=True)
class Mention:
    text: str  # the phrase as written in the report, e.g. "a small nodule in the left upper zone"
    label: str  # canonical label from the vocabulary, e.g. "nodule"
    kind: str  # "finding" | "anatomy"
    side: str | None  # "right" | "left" | None (patient's side, as written; both sides: one mention each)
    zone: str | None  # canonical zone ("upper", "middle", "lower", "frontal", ...), a span
    # ("middle to lower") or None
    size: str | None  # size bucket "subtle" | "small" | "large" (from "tiny", "mild", "marked", ...) or None
    negated: bool
    uncertain: bool  # "possible", "cannot exclude", "may represent", "?"...
    sentence: int  # index of the sentence within the report
    bilateral: bool = False  # one of the mentions (one per side) of words that name both sides


class MentionExtractor:
    """Reads :class:`Mention` s out of reports; build once and reuse (building takes seconds, mostly
    importing spaCy and adding the phrase patterns)."""

    def __init__(self, vocabulary: Path | str | None = None) -> None:
        import negspacy.negation  # noqa: F401  (registers the "negex" factory)
        import spacy  # heavy: only when an extractor is built

        self.vocabulary: Vocabulary = load_vocabulary(vocabulary)
        nlp = spacy.blank("en")
        for word in _slashed_words(self.vocabulary):  # "b/l" is one word, not "b" "/" "l" (left)
            for form in {word, word.upper(), word.capitalize()}:
                nlp.tokenizer.add_special_case(form, [{"ORTH": form}])
        nlp.add_pipe("sentencizer")
        ruler = nlp.add_pipe("entity_ruler", config={"overwrite_ents": True, "phrase_matcher_attr": "LOWER"})
        ruler.add_patterns(self.vocabulary.patterns())
        kinds = [FINDING, ANATOMY]
        nlp.add_pipe("negex", config={"neg_termset": self.vocabulary.negation, "ent_types": kinds})
        nlp.add_pipe(
            "negex",
            name="uncertainty",
            config={
                "neg_termset": self.vocabulary.uncertainty,
                "ent_types": [FINDING],
                "extension_name": "uncertain",
            },
        )
        self.nlp = nlp
        self._leading = self.vocabulary.location.leading()
        self._places = self.vocabulary.location.places()

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
            # one space for any run of whitespace: a term broken over lines ("pleural\neffusion") still
            # matches, and mention texts are single-spaced
            for piece in _chunks(" ".join(report.split()), CHUNK_CHARS):
                owners.append(n - 1)
                texts.append(piece)
        out: list[list[Mention]] = [[] for _ in range(n)]
        sentences_before = [0] * n
        for owner, doc in zip(owners, self.nlp.pipe(texts, batch_size=batch_size), strict=True):
            mentions, sentences = self._doc_mentions(doc, sentences_before[owner])
            out[owner] += mentions
            sentences_before[owner] += sentences
        return out

    def _doc_mentions(self, doc, first_sentence: int) -> tuple[list[Mention], int]:
        """Mentions of one parsed text, and its number of sentences (one pass over tokens and entities)."""
        starts = [s.start for s in doc.sents]
        ents = [e for e in doc.ents if e.label_ in (FINDING, ANATOMY)]
        if not ents:
            return [], len(starts)
        words = [t.lower_ for t in doc]
        # a location phrase ends at punctuation other than "-" and "/"; a number may lead a phrase ("5 mm")
        breaks = [t.is_punct and t.text not in "-/" for t in doc]
        numbers = [t.like_num for t in doc]
        taken = {i for e in doc.ents for i in range(e.start, e.end)}
        by_sentence: dict[int, list] = {}
        for ent in ents:
            by_sentence.setdefault(bisect_right(starts, ent.start) - 1, []).append(ent)
        out = []
        for s, group in by_sentence.items():
            end = starts[s + 1] if s + 1 < len(starts) else len(doc)
            out += self._sentence_mentions(
                group, starts[s], end, first_sentence + s, words, breaks, numbers, taken
            )
        return out, len(starts)

    def _sentence_mentions(self, ents, sent_start, sent_end, index, words, breaks, numbers, taken):
        loc = self.vocabulary.location
        starts = [self._phrase_start(ent, sent_start, words, breaks, numbers, taken, ents) for ent in ents]
        # a location phrase ends where the next finding's phrase begins ("... and left lower zone mass")
        finding_starts = [(e.start, s) for e, s in zip(ents, starts, strict=True) if e.label_ == FINDING]
        spans, located_in_finding = [], set()
        for ent, start in zip(ents, starts, strict=True):
            limit = min((max(s, ent.end) for f, s in finding_starts if f >= ent.end), default=sent_end)
            loc_start, loc_end = self._location(ent.end, limit, words, breaks)
            spans.append((start, loc_start, loc_end))
            if ent.label_ == FINDING:  # anatomy in a finding's own phrase: "no left adrenal mass"
                located_in_finding |= {a.start for a in ents if start <= a.start and a.end <= loc_end}
        out = []
        for ent, (start, loc_start, loc_end) in zip(ents, spans, strict=True):
            before = words[start : ent.start]
            is_finding = ent.label_ == FINDING
            read = [*range(start, ent.start), *range(loc_start, loc_end)]
            if is_finding and before and before[-1] in loc.determiners:  # "both nodules": no side
                read.remove(ent.start - 1)
            places = read_places([words[i] for i in read], [i in taken for i in read], loc)
            label = ent.ent_id_
            if is_finding and label in self.vocabulary.refine:  # "a cyst in the left kidney"
                organs = [
                    a.ent_id_ for a in ents if a.label_ == ANATOMY and start <= a.start and a.end <= loc_end
                ]
                label = next(
                    (self.vocabulary.refine[label][o] for o in organs if o in self.vocabulary.refine[label]),
                    label,
                )
            for place in places:
                paired = not is_finding and place.side and label in self.vocabulary.paired
                out.append(
                    Mention(
                        text=ent.doc[start : max(loc_end, ent.end)].text,
                        label=f"{place.side} {label}" if paired else label,
                        kind="finding" if is_finding else "anatomy",
                        side=place.side,
                        zone=place.zone,
                        size=next((loc.sizes[w] for w in before if w in loc.sizes), None),
                        negated=bool(ent._.negex)
                        and not (not is_finding and ent.start in located_in_finding),
                        uncertain=is_finding and bool(ent._.uncertain),
                        sentence=index,
                        bilateral=len(places) > 1,
                    )
                )
        return out

    def _phrase_start(self, ent, sent_start, words, breaks, numbers, taken, ents) -> int:
        """Where a match's phrase begins: its leading modifiers, sides and zones ("a small left basal")."""
        loc = self.vocabulary.location
        anatomy_ending_at = {e.end: e.start for e in ents if e.label_ == ANATOMY}
        start = ent.start
        while start > sent_start:
            if ent.label_ == FINDING and start in anatomy_ending_at:  # "a left adrenal mass"
                start = anatomy_ending_at[start]
            elif (words[start - 1] in self._leading or numbers[start - 1]) and start - 1 not in taken:
                start -= 1
            elif (
                words[start - 1] in loc.joins  # "right and left lower zone consolidation"
                and start - 2 >= sent_start
                and words[start - 2] in self._places
                and not {start - 1, start - 2} & taken
            ):
                start -= 2
            elif (side_at := self._side_word_before(start, sent_start, words, breaks, taken)) is not None:
                start = side_at  # "left basal ganglia hemorrhage": unknown words after a side word
            else:
                break
        return start

    def _side_word_before(self, start, sent_start, words, breaks, taken) -> int | None:
        """Position of a side word at most ``location.side_lookback`` words before ``start``, with only
        unknown words (no punctuation, stop word or other match) in between; None when there is none."""
        loc = self.vocabulary.location
        for j in range(start - 1, max(sent_start, start - loc.side_lookback) - 1, -1):
            if breaks[j] or j in taken or words[j] in loc.stops:
                return None
            if words[j] in loc.sides or words[j] in loc.abbreviations:
                return j
        return None

    def _location(self, i: int, limit: int, words: list[str], breaks: list[bool]) -> tuple[int, int]:
        """Token range of the location phrase after a match ending at ``i`` ("in the left upper zone",
        "bilaterally"); a join word goes on when a location word or preposition follows it ("in the RUL
        and LLL", "in the mid and lower zones"), and ``location.max_words`` counts from there."""
        loc = self.vocabulary.location
        after = i
        while i < limit and words[i] in loc.bridges:
            i += 1
        if i >= limit or not (words[i] in loc.prepositions or words[i] in self._places):
            return after, after
        start, end = i, i + 1
        group_start = start  # max_words counts from the last join
        while end < limit and end - group_start < loc.max_words and not breaks[end]:
            word = words[end]
            joined = word in loc.joins and end + 1 < limit and not breaks[end + 1]
            if joined and (words[end + 1] in self._places or words[end + 1] in loc.prepositions):
                end += 1
                group_start = end
            elif word in loc.stops:
                break
            end += 1
        return start, end


def _slashed_words(vocabulary: Vocabulary) -> set[str]:
    """Location words and cues written as one word with a slash ("b/l", "r/o"), kept whole when tokenized."""
    cues = [
        c
        for termset in (vocabulary.negation, vocabulary.uncertainty)
        for cues in termset.values()
        for c in cues
    ]
    return {w for w in [*vocabulary.location.places(), *cues] if "/" in w and " " not in w and w != "/"}


def _chunks(text: str, limit: int) -> Iterator[str]:
    """Pieces of at most ``limit`` characters, cut after a sentence end, else at a space."""
    while len(text) > limit:
        cut = text.rfind(". ", 0, limit) + 1 or text.rfind(" ", 0, limit) + 1 or limit
        yield text[:cut]
        text = text[cut:]
    yield text
