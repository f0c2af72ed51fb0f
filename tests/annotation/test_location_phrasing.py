"""From a chest report's location words to the region phrase and the prior's box: words the shared text
prior does not read are written in the project's words, and a bilateral finding is one box per lung."""

from __future__ import annotations

import pytest

from regionmed.annotation.anatomy import ImageAnatomy
from regionmed.annotation.localizers import PriorLocalizer, Query
from regionmed.annotation.phrasing import most_specific, region_for
from regionmed.corpus.location_prior import phrase_location, text_prior_box, train_box_means

# patient's right lung on the image's left
RIGHT_LUNG, LEFT_LUNG = (0.10, 0.15, 0.45, 0.85), (0.55, 0.15, 0.90, 0.85)
TRAIN = [
    {"bbox": RIGHT_LUNG, "label": "right lung", "kind": "anatomy", "phrase": "the right lung"},
    {"bbox": LEFT_LUNG, "label": "left lung", "kind": "anatomy", "phrase": "the left lung"},
    {"bbox": (0.2, 0.2, 0.3, 0.3), "label": "nodule", "kind": "finding", "phrase": "a nodule"},
]
SIZE_WORDS = {"small": "small", "large": "large", "mild": "subtle"}


def regions(extractor, report):
    wanted = [m for m in extractor.extract(report) if not m.negated and m.kind == "finding"]
    pending = {}
    for m in most_specific(wanted):
        region = region_for(m, [], SIZE_WORDS)
        pending.setdefault(region.phrase, region)
    return list(pending.values())


def placed(extractor, report):
    found = regions(extractor, report)
    anatomy = ImageAnatomy(
        {"right lung": (RIGHT_LUNG, "image_anatomy"), "left lung": (LEFT_LUNG, "image_anatomy")},
        ("right lung", "left lung"),
    )
    queries = [Query(None, r.phrase, r.label, r.kind, r.size, anatomy.frames(r.phrase)) for r in found]
    boxes = PriorLocalizer({"image_anatomy": 0.5, "corpus_anatomy": 0.2, "words": 0.1}).locate(queries)
    return [(r.phrase, p.bbox) for r, p in zip(found, boxes, strict=True)]


@pytest.mark.parametrize(
    "report, phrase",
    [
        ("There is a small nodule in the right upper zone.", "a small nodule in the right upper zone"),
        (
            "A large pleural effusion in the left lower zone.",
            "a large pleural effusion in the left lower zone",
        ),
        ("Mild cardiomegaly.", "mild cardiomegaly"),
        ("A lesion in the left mid abdomen.", "a lesion in the left mid abdomen"),
        ("Opacity in the left mid and lower zones.", "opacity in the left mid and lower zones"),
    ],
)
def test_phrases_the_prior_reads_as_the_reader_does_are_kept_as_written(extractor, report, phrase):
    (region,) = regions(extractor, report)
    assert region.phrase == phrase


@pytest.mark.parametrize(
    "report, phrases",
    [
        ("Right basal consolidation.", ["a consolidation in the right lower zone"]),
        ("LUL mass.", ["a mass in the left upper zone"]),
        ("Small R pleural effusion.", ["a small pleural effusion on the right"]),
        (
            "Consolidation in the left upper lobe and lingula.",
            ["a consolidation in the left upper to middle zones"],
        ),
        (
            "Bibasal atelectasis.",
            ["an atelectasis in the right lower zone", "an atelectasis in the left lower zone"],
        ),
        (
            "Consolidation in both lungs.",
            ["a consolidation in the right lung", "a consolidation in the left lung"],
        ),
        (
            "Bilateral pleural effusions.",
            ["a pleural effusion on the right", "a pleural effusion on the left"],
        ),
    ],
)
def test_other_location_words_are_written_in_the_projects_words(extractor, report, phrases):
    found = regions(extractor, report)
    assert [r.phrase for r in found] == phrases
    for r in found:  # the prior reads the phrase's side and zone
        side, _ = phrase_location(r.phrase)
        assert side in ("right", "left")


def test_a_side_swapped_hard_negative_is_kept_for_one_sided_findings(extractor):
    (region,) = regions(extractor, "Right basal consolidation.")
    assert "a consolidation in the left lower zone" in region.hard_negatives


@pytest.mark.parametrize(
    "report",
    [
        "Bilateral ground glass opacities.",
        "Bibasal consolidation.",
        "Patchy opacities in both lungs.",
        "Opacities at both bases.",
        "Diffuse bilateral airspace opacification.",
        "Consolidation in the RUL and LLL.",
        "Perihilar haziness bilaterally.",
    ],
)
def test_a_bilateral_finding_is_one_box_per_lung_none_across_the_midline(extractor, report):
    boxes = placed(extractor, report)
    assert len(boxes) == 2, boxes
    (_, right), (_, left) = boxes
    assert right[2] <= 0.5 <= left[0], boxes  # patient's right on the image's left
    # each inside its lung: none across the mediastinum
    assert RIGHT_LUNG[0] <= right[0] and right[2] <= RIGHT_LUNG[2] and LEFT_LUNG[0] <= left[0], boxes


def test_a_zone_span_gives_the_prior_box_over_both_thirds():
    means = train_box_means(TRAIN)
    box, source = text_prior_box("an opacity in the right middle to lower zones", means)
    assert source == "words"
    assert box.tolist() == pytest.approx([0.0, 1 / 3, 0.5, 1.0])
    one, _ = text_prior_box("an opacity in the right lower zone", means)
    assert one.tolist() == pytest.approx([0.0, 2 / 3, 0.5, 1.0])


def test_a_named_lung_frames_the_box_in_that_lung(extractor):
    ((phrase, box),) = placed(extractor, "Consolidation throughout the left lung.")
    assert phrase == "consolidation throughout the left lung"  # the prior reads "left"; all zones = no zone
    assert box == pytest.approx(LEFT_LUNG)
    (_, right), (_, left) = placed(extractor, "Consolidation in both lungs.")
    assert right == pytest.approx(RIGHT_LUNG) and left == pytest.approx(LEFT_LUNG)
