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
        ("Bilateral pleural effusions.", None, None),
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
        ("Multiple left lingular segment masses.", "left", None),
        ("Axial T1W MRI appearance of left basal ganglia hemorrhage.", "left", None),
        ("T2W coronal image demonstrates right paraspinal mass spanning levels T8-T10.", "right", None),
        ("The right lung is clear and a mass is seen.", None, None),
    ],
)
def test_side_and_zone_come_from_the_phrase(extractor, report, side, zone):
    m = only(extractor.extract(report))[0]
    assert (m.side, m.zone) == (side, zone)


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
