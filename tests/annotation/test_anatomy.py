"""Findings placed inside this image's anatomy: "right lower zone" is the lower third of this patient's
right lung, from the image's own lung boxes, else the annotator's, else the corpus mean; a bilateral
finding is one box per lung, and no finding box lies across both lungs unless the corpus's boxes do."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from helpers.params import default_section

from regionmed.annotation.anatomy import (
    CorpusAnatomy,
    ImageAnatomy,
    find_pair,
    keep_in_one_of_the_pair,
    spans_pair,
)
from regionmed.annotation.annotate import annotate_frame
from regionmed.annotation.localizers import Placed, PriorLocalizer
from regionmed.annotation.summary import AnnotationCounts

# patient's right lung on the image's left
RIGHT, LEFT = (0.10, 0.20, 0.45, 0.80), (0.55, 0.20, 0.90, 0.80)
MEAN_RIGHT, MEAN_LEFT = (0.05, 0.10, 0.40, 0.70), (0.60, 0.10, 0.95, 0.70)
CONFIDENCE = {"image_anatomy": 0.5, "corpus_anatomy": 0.2, "words": 0.1}


def _anatomy(right=RIGHT, left=LEFT, source="image_anatomy") -> ImageAnatomy:
    return ImageAnatomy(
        {"right lung": (right, source), "left lung": (left, source)}, ("right lung", "left lung")
    )


def test_a_zone_phrase_is_that_part_of_this_images_lung():
    anatomy = _anatomy()
    (frame,) = anatomy.frames("a consolidation in the right lower zone")
    assert frame.organ == "right lung" and frame.source == "image_anatomy"
    assert frame.zone == pytest.approx((0.10, 0.60, 0.45, 0.80))  # the lower third of the right lung
    (frame,) = anatomy.frames("an opacity in the left middle to lower zones")
    assert frame.zone == pytest.approx((0.55, 0.40, 0.90, 0.80))
    (frame,) = anatomy.frames("a pleural effusion on the left")  # a side alone: the whole lung
    assert frame.zone == pytest.approx(LEFT)
    (frame,) = anatomy.frames("the right lung")  # an organ named: its box
    assert frame.zone == pytest.approx(RIGHT) and frame.organ == "right lung"
    # a zone without a side: that zone of either lung (only the image can choose); no location word: none
    assert [f.organ for f in anatomy.frames("opacities in the lower zone")] == ["right lung", "left lung"]
    assert anatomy.frames("ground glass opacities") == ()


def test_without_anatomy_the_words_cut_the_image_and_a_bare_zone_names_nothing():
    bare = ImageAnatomy({}, None)
    (frame,) = bare.frames("a consolidation in the right lower zone")
    assert frame.source == "words" and frame.zone == pytest.approx((0.0, 2 / 3, 0.5, 1.0))
    assert bare.frames("an opacity in the lower zone") == ()  # across the whole image: says nothing


def test_a_pair_frames_a_side_word_only_when_it_fills_the_image():
    assert find_pair({"right lung": RIGHT, "left lung": LEFT, "heart": (0.4, 0.5, 0.7, 0.8)}) == (
        "right lung",
        "left lung",
    )
    kidneys = {"right kidney": (0.28, 0.55, 0.40, 0.72), "left kidney": (0.60, 0.55, 0.72, 0.72)}
    assert find_pair(kidneys) is None  # "the left mid abdomen" is not the left kidney
    assert find_pair({"right lung": RIGHT}) is None


def _train_frame() -> pd.DataFrame:
    def lungs(right, left):
        return [
            {"bbox": list(right), "label": "right lung", "kind": "anatomy", "origin": "given"},
            {"bbox": list(left), "label": "left lung", "kind": "anatomy", "origin": "given"},
        ]

    heart = {"bbox": [0.35, 0.45, 0.70, 0.80], "label": "cardiomegaly", "kind": "finding", "origin": "given"}
    nodule = {"bbox": [0.2, 0.3, 0.25, 0.35], "label": "nodule", "kind": "finding", "origin": "given"}
    return pd.DataFrame(
        {
            "modality": ["chest_xray", "chest_xray", "ct"],
            "regions": [
                [*lungs(MEAN_RIGHT, MEAN_LEFT), heart],
                [*lungs(MEAN_RIGHT, MEAN_LEFT), nodule],
                [{"bbox": [0.1, 0.1, 0.2, 0.2], "label": "aorta", "kind": "anatomy", "origin": "given"}],
            ],
        }
    )


def test_the_images_own_boxes_come_first_then_the_annotators_then_the_corpus_mean():
    corpus = CorpusAnatomy(_train_frame())
    assert corpus.organs("chest_xray")["right lung"] == pytest.approx(MEAN_RIGHT)
    assert corpus.organs("ct") == {"aorta": pytest.approx((0.1, 0.1, 0.2, 0.2))}  # per modality
    mean = corpus.for_image("chest_xray", [])
    assert mean.boxes["right lung"] == (pytest.approx(MEAN_RIGHT), "corpus_anatomy")
    learned = corpus.for_image("chest_xray", [], {"right lung": RIGHT})
    assert learned.boxes["right lung"] == (pytest.approx(RIGHT), "annotator_anatomy")
    assert learned.boxes["left lung"][1] == "corpus_anatomy"
    given = [{"bbox": list(LEFT), "label": "left lung", "kind": "anatomy"}]
    own = corpus.for_image("chest_xray", given, {"left lung": MEAN_LEFT})
    assert own.boxes["left lung"] == (pytest.approx(LEFT), "image_anatomy")
    # the corpus's own boxes put an enlarged heart across both lungs, a nodule inside one
    assert corpus.spans("cardiomegaly") and not corpus.spans("nodule")


def test_a_finding_box_across_both_lungs_is_cut_to_one():
    anatomy = _anatomy()
    across = (0.30, 0.40, 0.70, 0.60)
    assert spans_pair(across, anatomy)
    right_frames = anatomy.frames("an opacity on the right")
    assert keep_in_one_of_the_pair(across, anatomy, right_frames) == pytest.approx((0.30, 0.40, 0.45, 0.60))
    left_of_centre = (0.35, 0.40, 0.60, 0.60)  # centre x 0.475: in neither lung, overlaps the right most
    assert keep_in_one_of_the_pair(left_of_centre, anatomy, ()) == pytest.approx((0.35, 0.40, 0.45, 0.60))
    inside = (0.60, 0.30, 0.70, 0.40)
    assert keep_in_one_of_the_pair(inside, anatomy, ()) == inside and not spans_pair(inside, anatomy)


def _manifest(reports: list[str], regions: list[list[dict]]) -> pd.DataFrame:
    n = len(reports)
    return pd.DataFrame(
        {
            "image_id": [f"img{i}" for i in range(n)],
            "image_path": [f"images/img{i}.png" for i in range(n)],
            "split": ["train"] * n,
            "modality": ["chest_xray"] * n,
            "report": reports,
            "regions": regions,
        }
    )


def _given_lungs(right, left) -> list[dict]:
    return [
        {
            "bbox": list(box),
            "label": label,
            "phrase": f"the {label}",
            "hard_negatives": [],
            "kind": "anatomy",
            "size": None,
            "origin": "given",
            "confidence": 1.0,
            "placed_by": None,
        }
        for label, box in (("right lung", right), ("left lung", left))
    ]


def test_findings_are_placed_inside_this_images_lungs_and_bilateral_ones_in_each(extractor):
    report = "Right lower zone consolidation. Bilateral ground glass opacities. The right breast is dense."
    # image 0 has its own lungs, image 1 none, image 2 other lungs: the corpus mean is of 0 and 2
    df = _manifest([report] * 3, [_given_lungs(RIGHT, LEFT), [], _given_lungs(MEAN_RIGHT, MEAN_LEFT)])
    mean_right, mean_left = (
        [(u + v) / 2 for u, v in zip(a, b, strict=True)] for a, b in ((RIGHT, MEAN_RIGHT), (LEFT, MEAN_LEFT))
    )
    a = default_section("annotate", localizer="prior", prior_confidence=CONFIDENCE)
    counts = AnnotationCounts("prior")
    out = annotate_frame(df, Path("."), a, PriorLocalizer(CONFIDENCE), extractor, counts)
    own = out.at[0, "regions"]
    assert own[:2] == df.at[0, "regions"]  # the given lungs stay as they are, and are not drawn again
    placed = own[2:]
    assert {r["kind"] for r in placed} == {"finding"}  # anatomy is given: only findings added
    right_lower = next(r for r in placed if r["label"] == "consolidation")
    assert right_lower["bbox"] == pytest.approx([0.10, 0.60, 0.45, 0.80])  # this image's right lung
    assert (right_lower["placed_by"], right_lower["confidence"]) == ("image_anatomy", 0.5)
    ggo = sorted((r for r in placed if r["label"] == "ground-glass opacity"), key=lambda r: r["bbox"][0])
    assert [r["bbox"] for r in ggo] == [pytest.approx(list(RIGHT)), pytest.approx(list(LEFT))]
    # the image without boxes: the same words inside the corpus's mean lungs, at the corpus's confidence
    bare = out.at[1, "regions"]
    assert {r["placed_by"] for r in bare} == {"corpus_anatomy"} and {r["confidence"] for r in bare} == {0.2}
    right_lower = next(r for r in bare if r["label"] == "consolidation")
    third = (mean_right[3] - mean_right[1]) / 3
    assert right_lower["bbox"] == pytest.approx([mean_right[0], mean_right[3] - third, *mean_right[2:]])
    assert not any(r["label"] == "right breast" for r in bare)  # an organ no box draws: not placed
    for rs, lungs in zip(
        out["regions"], ((RIGHT, LEFT), (mean_right, mean_left), (MEAN_RIGHT, MEAN_LEFT)), strict=True
    ):
        assert len([r for r in rs if r["origin"] == "annotated"]) == 3  # one right lower, one per lung
        assert not any(spans_pair(tuple(r["bbox"]), _anatomy(*lungs)) for r in rs if r["kind"] == "finding")


class _Across:
    """A localizer that places every finding across the mediastinum and places organs where told."""

    name = "across"
    places_organs = True

    def __init__(self, organs: dict[str, tuple], finding=(0.25, 0.40, 0.75, 0.60)):
        self.organs, self.finding = organs, finding

    def locate(self, queries):
        return [
            Placed(self.organs[q.label], 0.9, "heatmap")
            if q.kind == "anatomy" and q.label in self.organs
            else Placed(self.finding, 0.7, "heatmap")
            if q.kind == "finding"
            else None
            for q in queries
        ]


def test_an_image_reading_localizer_frames_with_the_organs_it_places_where_they_beat_the_mean(extractor):
    report = "Left basal consolidation. Right upper zone nodule."
    shifted = (0.55, 0.25, 0.90, 0.75)  # the annotator's left lung
    far = (0.0, 0.0, 0.2, 0.2)  # its right lung: nowhere near
    # a val image with lung boxes (the annotator never trained on it) is the check: there its left lung is
    # right, its right lung wrong, so its left lung frames the words and the mean right lung does
    df = _manifest(
        [report, report, ""], [_given_lungs(MEAN_RIGHT, MEAN_LEFT), [], _given_lungs(RIGHT, shifted)]
    )
    df.loc[2, "split"] = "val"
    a = default_section("annotate", localizer="self", prior_confidence=CONFIDENCE, annotator_anatomy_check=8)
    counts = AnnotationCounts("self")
    out = annotate_frame(
        df, Path("."), a, _Across({"left lung": shifted, "right lung": far}), extractor, counts
    )
    check = counts.organ_check
    assert check["chest_xray/left lung"] == {
        "n": 1,
        "annotator_iou": 1.0,
        "mean_iou": check["chest_xray/left lung"]["mean_iou"],
        "used": True,
    }
    assert (
        check["chest_xray/right lung"]["used"] is False
        and check["chest_xray/right lung"]["annotator_iou"] == 0.0
    )
    boxes = {r["label"]: r for r in out.at[1, "regions"]}
    assert {r["placed_by"] for r in boxes.values()} == {"heatmap"} and boxes["nodule"]["confidence"] == 0.7
    # each box across both lungs is cut to the lung its words name: the annotator's left lung, the mean right
    assert boxes["consolidation"]["bbox"] == pytest.approx([0.55, 0.40, 0.75, 0.60])
    assert boxes["nodule"]["bbox"] == pytest.approx([0.25, 0.40, 0.40, 0.60])
    # the image with given lungs: its own left lung (the annotator is not asked for organs it has)
    own = {r["label"]: r for r in out.at[0, "regions"] if r["origin"] == "annotated"}
    assert own["consolidation"]["bbox"] == pytest.approx([0.60, 0.40, 0.75, 0.60])
    assert (
        counts.cut_to_one_organ == 4 and counts.cut_away == 0 and out.at[2, "regions"] == df.at[2, "regions"]
    )  # val: not annotated
    # no check asked for: the mean frames everything
    counts = AnnotationCounts("self")
    a = default_section("annotate", localizer="self", prior_confidence=CONFIDENCE, annotator_anatomy_check=0)
    out = annotate_frame(
        df, Path("."), a, _Across({"left lung": shifted, "right lung": far}), extractor, counts
    )
    assert counts.organ_check == {}
    by_label = {r["label"]: r["bbox"] for r in out.at[1, "regions"]}
    assert by_label["consolidation"] == pytest.approx([0.60, 0.40, 0.75, 0.60])


def test_a_box_cut_to_a_sliver_of_its_lung_is_dropped(extractor):
    df = _manifest(["Right upper zone nodule."], [_given_lungs(MEAN_RIGHT, MEAN_LEFT)])
    a = default_section("annotate", localizer="self", prior_confidence=CONFIDENCE)
    counts = AnnotationCounts("self")
    # centred in the mediastinum: 0.02 of its 0.24 width lies in the right lung (x1 0.40)
    out = annotate_frame(df, Path("."), a, _Across({}, finding=(0.38, 0.40, 0.62, 0.60)), extractor, counts)
    assert out.at[0, "regions"] == df.at[0, "regions"]
    assert (counts.cut_to_one_organ, counts.cut_away) == (1, 1)
