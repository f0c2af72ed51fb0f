"""Mention extraction against hand-written report sentences: negation, uncertainty, laterality,
synonyms, several findings in one sentence, sizes, pertinent negatives."""

from __future__ import annotations

import pytest

from regionmed.annotation.mentions import Mention


def only(mentions, kind="finding"):
    return [m for m in mentions if m.kind == kind]


def test_a_pertinent_negative_is_negated(extractor):
    assert extractor.extract("No pleural effusion.") == [
        Mention("pleural effusion", "pleural effusion", "finding", None, None, None, True, False, 0)
    ]


def test_a_negated_finding_keeps_its_location_and_the_anatomy_is_not_negated(extractor):
    nodule, lung = extractor.extract("There is no nodule in the left lung.")
    assert (nodule.label, nodule.kind, nodule.negated, nodule.side) == ("nodule", "finding", True, "left")
    assert nodule.text == "nodule in the left lung"
    assert (lung.label, lung.kind, lung.negated, lung.side) == ("left lung", "anatomy", False, "left")


@pytest.mark.parametrize(
    "report, expected",
    [
        (
            "No evidence of pneumothorax or pleural effusion.",
            {"pneumothorax": True, "pleural effusion": True},
        ),
        ("The lungs are clear without consolidation.", {"consolidation": True}),
        (
            "There is a nodule in the right lung and no pleural effusion.",
            {"nodule": False, "pleural effusion": True},
        ),
        ("No effusion, but a mass is seen in the left lung.", {"effusion": True, "mass": False}),
        (
            "No pleural effusion. A nodule is seen in the right upper zone.",
            {"pleural effusion": True, "nodule": False},
        ),
        ("Pneumothorax was ruled out.", {"pneumothorax": True}),
        ("Negative for fracture.", {"fracture": True}),
        ("A pleural effusion is not seen.", {"pleural effusion": True}),
        ("Pneumothorax is absent.", {"pneumothorax": True}),
        ("The previously seen nodule has resolved.", {"nodule": True}),
        ("A nodule is seen but no mass is identified.", {"nodule": False, "mass": True}),
    ],
)
def test_negation_scope(extractor, report, expected):
    assert {m.label: m.negated for m in only(extractor.extract(report))} == expected


@pytest.mark.parametrize(
    "report, label",
    [
        ("Possible consolidation in the right lower zone.", "consolidation"),
        ("Findings may represent a small hemorrhage.", "hemorrhage"),
        ("A small nodule cannot be excluded.", "nodule"),
        ("Cannot exclude pneumothorax.", "pneumothorax"),
        ("Appearance is suspicious for metastases.", "metastasis"),
        ("Nodule?", "nodule"),
    ],
)
def test_uncertain_findings_are_uncertain_and_not_negated(extractor, report, label):
    (m,) = only(extractor.extract(report))
    assert (m.label, m.uncertain, m.negated) == (label, True, False)


def test_a_differential_is_uncertain_and_not_negated(extractor):
    found = only(extractor.extract("Nodule versus atelectasis."))
    assert [(m.label, m.uncertain, m.negated) for m in found] == [
        ("nodule", True, False),
        ("atelectasis", True, False),
    ]


def test_a_plain_finding_is_certain(extractor):
    (m,) = extractor.extract("There is a large mass.")
    assert (m.uncertain, m.negated, m.size) == (False, False, "large")


@pytest.mark.parametrize(
    "report, side, zone",
    [
        ("A small nodule in the left upper zone.", "left", "upper"),
        ("Right-sided pleural effusion.", "right", None),
        ("Nodule in the LUL.", "left", "upper"),
        ("Left lower zone consolidation.", "left", "lower"),
        ("A small left parietal region hematoma.", "left", "parietal"),
        ("A brain lesion in the right frontal lobe is seen.", "right", "frontal"),
        ("A liver lesion in the right lobe of the liver.", "right", None),
        ("Right nodule; left pleural effusion.", "right", None),
        ("Mild cardiomegaly.", None, None),
        ("Axial CT image revealing a left adrenal mass measuring 2.8 cm.", "left", None),
        ("Right lower lobe non-calcified lung nodule.", "right", "lower"),
        (
            "A mass arising from the upper pole of the left kidney and extending into the fat.",
            "left",
            "upper",
        ),
        ("Multiple left lingular segment masses.", "left", "middle"),
        ("Axial T1W MRI appearance of left basal ganglia hemorrhage.", "left", None),
        ("T2W coronal image demonstrates right paraspinal mass spanning levels T8-T10.", "right", None),
        ("The right lung is clear and a mass is seen.", None, None),
    ],
)
def test_side_and_zone_come_from_the_phrase(extractor, report, side, zone):
    m = only(extractor.extract(report))[0]
    assert (m.side, m.zone) == (side, zone)


@pytest.mark.parametrize(
    "report, places",
    [
        ("Bilateral pleural effusions.", [("right", None), ("left", None)]),
        ("Bibasal atelectasis.", [("right", "lower"), ("left", "lower")]),
        ("Nodules in both upper zones.", [("right", "upper"), ("left", "upper")]),
        ("Consolidation in the RUL and LLL.", [("right", "upper"), ("left", "lower")]),
        ("Right and left lower zone opacities.", [("right", "lower"), ("left", "lower")]),
        ("Effusions on the right and left.", [("right", None), ("left", None)]),
        ("Opacities at the bases.", [("right", "lower"), ("left", "lower")]),
        ("Opacities at the right base.", [("right", "lower")]),
        ("Diffuse opacities.", [("right", "upper to lower"), ("left", "upper to lower")]),
        ("Opacity in the right mid and lower zones.", [("right", "middle to lower")]),
        ("B/L consolidation.", [("right", None), ("left", None)]),
    ],
)
def test_a_finding_on_both_sides_is_one_mention_per_side(extractor, report, places):
    found = only(extractor.extract(report))
    assert [(m.side, m.zone) for m in found] == places
    assert all(m.bilateral == (len(places) > 1) for m in found)
    assert len({m.text for m in found}) == 1  # the words as written, once per side


@pytest.mark.parametrize(
    "report, side, zone",
    [
        ("Right basal consolidation.", "right", "lower"),
        ("Consolidation in the lingula.", "left", "middle"),
        ("Retrocardiac opacity.", "left", "lower"),
        ("Left apical pneumothorax.", "left", "upper"),
        ("Opacity in the R mid zone.", "right", "middle"),
        ("A mass at the left hilum.", "left", "middle"),
        ("Consolidation throughout the left lung.", "left", "upper to lower"),
        ("Nodule projected over the right upper zone.", "right", "upper"),
        ("Left mid to lower zone shadowing.", "left", "middle to lower"),
        ("Both nodules in the right upper lobe are stable.", "right", "upper"),
    ],
)
def test_chest_location_words(extractor, report, side, zone):
    (m,) = only(extractor.extract(report))
    assert (m.side, m.zone) == (side, zone)


def test_a_zone_word_inside_another_match_is_not_a_zone(extractor):
    (m,) = only(extractor.extract("Left basal ganglia hemorrhage."))
    assert (m.side, m.zone) == ("left", None)


def test_both_lungs_as_anatomy_are_the_right_and_the_left_lung(extractor):
    lungs = only(extractor.extract("Both lungs are clear."), "anatomy")
    assert [m.label for m in lungs] == ["right lung", "left lung"]
    assert [m.label for m in only(extractor.extract("The lungs are clear."), "anatomy")] == ["lung"]


def test_a_question_mark_after_a_comma_asks_about_what_follows(extractor):
    (m,) = only(extractor.extract("Opacity at the right base, ?aspiration."))
    assert (m.uncertain, m.side, m.zone) == (False, "right", "lower")
    (m,) = only(extractor.extract("Right basal consolidation?"))
    assert m.uncertain
    (m,) = only(extractor.extract("R/O pneumonia."))  # "r/o" is rule out (NegEx: a negation), not "right"
    assert (m.negated, m.uncertain, m.side) == (True, False, None)


@pytest.mark.parametrize(
    "word, size",
    [
        ("tiny", "subtle"),
        ("subtle", "subtle"),
        ("mild", "subtle"),
        ("small", "small"),
        ("moderate", "small"),
        ("large", "large"),
        ("marked", "large"),
        ("massive", "large"),
    ],
)
def test_size_words_map_to_buckets(extractor, word, size):
    (m,) = extractor.extract(f"There is {word} pleural effusion.")
    assert m.size == size


@pytest.mark.parametrize(
    "text, label",
    [
        ("GGO", "ground-glass opacity"),
        ("ground glass opacities", "ground-glass opacity"),
        ("Ground-glass opacity", "ground-glass opacity"),
        ("renal cyst", "kidney cyst"),
        ("haematoma", "hemorrhage"),
        ("enlarged cardiac silhouette", "cardiomegaly"),
        ("metastases", "metastasis"),
        ("hepatic lesion", "liver lesion"),
        ("multiple nodules", "nodule"),
        ("emboli", "embolism"),
        ("airspace opacities", "consolidation"),
        ("neoplasm", "tumor"),
    ],
)
def test_synonyms_give_the_canonical_label(extractor, text, label):
    (m,) = only(extractor.extract(f"There is {text}."))
    assert m.label == label


def test_the_longest_synonym_wins(extractor):
    assert [m.label for m in extractor.extract("A kidney cyst. A pleural effusion.")] == [
        "kidney cyst",
        "pleural effusion",
    ]


def test_several_findings_in_one_sentence_keep_their_own_attributes(extractor):
    found = extractor.extract(
        "There is a small nodule in the right upper zone and a large mass in the left lower zone."
    )
    assert [(m.text, m.label, m.side, m.zone, m.size) for m in found] == [
        ("a small nodule in the right upper zone", "nodule", "right", "upper", "small"),
        ("a large mass in the left lower zone", "mass", "left", "lower", "large"),
    ]
    listed = only(extractor.extract("Pleural effusion, pneumothorax and consolidation are present."))
    assert [m.label for m in listed] == ["pleural effusion", "pneumothorax", "consolidation"]


def test_a_synthetic_report(extractor):
    report = (
        "EXAMINATION: PA chest X-ray. FINDINGS: A large pleural effusion in the left lower zone is "
        "noted. There is mild cardiomegaly. No evidence of nodule. No mass. "
        "IMPRESSION: Left pleural effusion; cardiomegaly."
    )
    got = [(m.label, m.side, m.zone, m.size, m.negated, m.sentence) for m in extractor.extract(report)]
    assert got == [
        ("pleural effusion", "left", "lower", "large", False, 1),
        ("cardiomegaly", None, None, "subtle", False, 2),
        ("nodule", None, None, None, True, 3),
        ("mass", None, None, None, True, 4),
        ("pleural effusion", "left", None, None, False, 5),
        ("cardiomegaly", None, None, None, False, 5),
    ]


def test_anatomy_that_qualifies_a_negated_finding_is_not_negated(extractor):
    mass, adrenal = sorted(extractor.extract("No left adrenal mass."), key=lambda m: m.kind, reverse=True)
    assert (mass.label, mass.negated, mass.side) == ("mass", True, "left")
    assert (adrenal.label, adrenal.negated) == ("left adrenal gland", False)


def test_phrases_that_name_no_finding_are_not_mentions(extractor):
    assert extractor.extract("There is mass effect on the ventricle.") == []
    assert extractor.extract("There is evidence of mass-effect.") == []
    assert extractor.extract("Subcutaneous fat compatible with a large body mass index.") == []


def test_paired_anatomy_takes_its_side_into_the_label(extractor):
    labels = [
        m.label for m in only(extractor.extract("The right kidney, the liver and the lungs."), "anatomy")
    ]
    assert labels == ["right kidney", "liver", "lung"]


@pytest.mark.parametrize(
    "report, label",
    [
        ("There is a small cyst in the left kidney.", "kidney cyst"),
        ("Hypodense lesion in the right lobe of the liver.", "liver lesion"),
        ("A lesion in the brain.", "brain lesion"),
        ("A cyst in the liver.", "cyst"),
        ("A lesion. The left kidney.", "lesion"),
    ],
)
def test_a_generic_finding_named_with_its_organ_takes_the_organs_label(extractor, report, label):
    assert only(extractor.extract(report))[0].label == label
