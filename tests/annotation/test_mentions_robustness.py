"""Bad and odd reports: nothing crashes, nothing is invented; long reports read in pieces lose nothing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regionmed.annotation import mentions as mentions_module


@pytest.mark.parametrize(
    "report",
    [
        "",
        "   \n\t  ",
        "Kein Pleuraerguss. Keine Raumforderung. Herz normal groß.",
        "肺部未见明显异常。心影不大。",
        "Ninguna anomalía aguda. Estudio normal.",
        "The patient was seen today and is doing well. Follow up in six months.",
        "No acute abnormality. Normal study. No focal abnormality is seen.",
        "?? ... ;;; --- 12 mm x 3 cm // \x00 \u200b",
    ],
)
def test_reports_without_finding_words_give_nothing(extractor, report):
    assert extractor.extract(report) == []


def test_a_one_megabyte_report_without_findings_gives_nothing(extractor):
    report = ("The study was reviewed and compared with the prior examination. " * 20_000)[: 1 << 20]
    assert len(report) == 1 << 20
    assert extractor.extract(report) == []


def test_a_one_megabyte_token_gives_nothing(extractor):
    assert extractor.extract("x" * (1 << 20)) == []


def test_a_long_report_is_read_in_pieces_without_losing_or_shifting_anything(extractor):
    sentence = "No pleural effusion. There is a small nodule in the right upper zone. "
    repeats = 3 * mentions_module.CHUNK_CHARS // len(sentence) + 1
    found = extractor.extract(sentence * repeats)
    assert len(found) == 2 * repeats
    assert [m.sentence for m in found] == list(range(2 * repeats))
    assert all(m.negated == (m.label == "pleural effusion") for m in found)
    assert {(m.side, m.zone, m.size) for m in found if m.label == "nodule"} == {("right", "upper", "small")}


def test_a_line_break_inside_a_sentence_does_not_split_a_negation(extractor):
    """The piece boundary falls inside "No ... pleural<newline>effusion.": the term still matches over the
    line break, and the cut goes after the sentence before it, not inside this one (which would leave
    "effusion" unnegated in the next piece)."""
    limit = mentions_module.CHUNK_CHARS
    filler = "The study was reviewed. " * (limit // 24 - 2)
    sentence = "No large pleural"
    while len(filler + sentence) < limit - 5:
        sentence = sentence.replace("No ", "No very ", 1)
    report = filler + sentence + "\neffusion. " + "The study was reviewed. " * 3
    assert (
        report.rfind("\n", 0, limit) > report.rfind(". ", 0, limit) and report.index("effusion") > limit - 5
    )
    found = list(extractor.extract(report))
    assert [(m.label, m.negated) for m in found] == [("pleural effusion", True)]


def test_extract_many_is_extract_of_each_in_order(extractor):
    reports = ["No pleural effusion.", "", "A mass in the left lung.", "Normal study.", "Possible nodule."]
    assert extractor.extract_many(reports, batch_size=2) == [extractor.extract(r) for r in reports]
    assert extractor.extract_many([]) == []


def test_a_report_that_is_not_text_is_named_in_the_error(extractor):
    with pytest.raises(TypeError, match="report 1: expected a string, got NoneType"):
        extractor.extract_many(["No mass.", None])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.text(max_size=40),
            st.sampled_from(
                [
                    "no",
                    "nodule",
                    "left",
                    "in the",
                    "right upper zone",
                    "?",
                    ".",
                    "possible",
                    "GGO",
                    "-",
                    "mass effect",
                    "without",
                    "cannot exclude",
                    "\n",
                    "small",
                    "RUL",
                    ";",
                    "pleural",
                    "effusion",
                    "kidney",
                ]
            ),
        ),
        max_size=40,
    )
)
def test_any_text_gives_well_formed_mentions_that_are_in_the_text(extractor, pieces):
    report = " ".join(pieces)
    written = " ".join(report.split()).lower()
    vocabulary = extractor.vocabulary
    for m in extractor.extract(report):
        assert m.text.lower() in written
        assert m.kind in ("finding", "anatomy") and m.sentence >= 0
        assert m.side in ("right", "left", None) and m.size in ("subtle", "small", "large", None)
        if m.kind == "finding":
            assert m.label in vocabulary.findings
        else:
            assert m.label.removeprefix("right ").removeprefix("left ") in vocabulary.anatomy
            assert not m.uncertain
