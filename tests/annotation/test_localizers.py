"""The localizers behind ``annotate.localizer``: one interface (a box in the image or None per query,
confidence in 0..1), the self localizer's candidates that grow to the structure, and the detector
path with tiny randomly initialised OWLv2 / SAM models (no pretrained weights: the code path only)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from helpers.params import default_params, default_section
from helpers.tiny_detectors import save_tiny_owlv2, save_tiny_sam

from regionmed.annotation import stage
from regionmed.annotation.anatomy import CorpusAnatomy, ImageAnatomy
from regionmed.annotation.localizers import NoLocalizer, PriorLocalizer, Query
from regionmed.annotation.self_localizer import (
    SelfLocalizer,
    cells_touching,
    centre_allowed,
    grown_boxes,
    mass_inside,
    peak_centre,
    tiling_boxes,
    train_box_sizes,
)
from regionmed.annotation.stage import AnnotateError, make_localizer
from regionmed.corpus.schema import read_manifest


def _queries(corpus: Path, n: int = 5) -> list[Query]:
    df = read_manifest(corpus, "train").head(n)
    return [
        Query(corpus / p, "a small nodule in the right upper zone", "nodule", "finding")
        for p in df["image_path"]
    ]


def _valid(placed, n):
    assert len(placed) == n
    for p in placed:
        assert p is not None
        x0, y0, x1, y1 = p.bbox
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and 0 <= p.confidence <= 1


def test_none_places_nothing(tiny_corpus):
    assert NoLocalizer().locate(_queries(tiny_corpus)) == [None] * 5


PRIOR_CONFIDENCE = {"image_anatomy": 0.5, "corpus_anatomy": 0.2, "words": 0.1}


def _framed(corpus: Path, q: Query) -> Query:
    """The query with the frames the stage gives it on an image without boxes: the corpus-mean chest."""
    anatomy = CorpusAnatomy(read_manifest(corpus, "train")).for_image("chest_xray", [])
    return replace(q, frames=anatomy.frames(q.phrase))


def test_prior_places_the_words_inside_the_anatomy_and_never_looked_at_the_image(tiny_corpus):
    prior = PriorLocalizer(PRIOR_CONFIDENCE)
    placed = prior.locate([_framed(tiny_corpus, q) for q in _queries(tiny_corpus)])
    _valid(placed, 5)
    assert len({p.bbox for p in placed}) == 1  # words and the corpus mean: the same box everywhere
    assert placed[0].confidence == 0.2 and placed[0].placed_by == "corpus_anatomy"
    # "right upper zone": the top third of the corpus's mean right lung (patient right = image left)
    x0, y0, x1, y1 = CorpusAnatomy(read_manifest(tiny_corpus, "train")).means["chest_xray"]["right lung"]
    assert placed[0].bbox == pytest.approx((x0, y0, x1, y0 + (y1 - y0) / 3), abs=1e-5)
    assert x1 < 0.5
    # no location word: no frame, no box; a zone without a side: a frame in each lung, and no box
    assert prior.locate([_framed(tiny_corpus, Query(Path("x.png"), "a mass", "mass", "finding"))]) == [None]
    both = _framed(tiny_corpus, Query(Path("x.png"), "an opacity in the lower zone", "opacity", "finding"))
    assert [f.organ for f in both.frames] == ["right lung", "left lung"] and prior.locate([both]) == [None]
    # no anatomy box of the modality anywhere (MedPix): the words cut the whole image, at the lowest level
    bare = ImageAnatomy({}, None)
    phrase = "a mass in the left upper zone"
    (box,) = prior.locate([Query(Path("x.png"), phrase, "mass", "finding", None, bare.frames(phrase))])
    assert box.bbox == pytest.approx((0.5, 0.0, 1.0, 1 / 3), abs=1e-5)
    assert (box.placed_by, box.confidence) == ("words", 0.1)


def test_grown_boxes_follow_the_connected_area_around_the_peak():
    heat = np.zeros((8, 8))
    heat[2:6, 1:4] = 1.0  # a 4 x 3 structure
    heat[3, 2] = 2.0  # its peak
    heat[7, 7] = 1.5  # a separate bright cell: not connected, not in the box
    boxes = grown_boxes(heat, (0.2, 0.9))
    np.testing.assert_allclose(
        boxes[0], [1 / 8, 2 / 8, 4 / 8, 6 / 8]
    )  # the whole structure: larger than 3/8 per side
    np.testing.assert_allclose(boxes[1], [2 / 8, 3 / 8, 3 / 8, 4 / 8])  # the peak alone at a high level


def test_tilings_and_confidence_mass():
    tiles = tiling_boxes([2, 3])
    assert len(tiles) == 4 + 1 + 9 + 4 and ((tiles >= 0) & (tiles <= 1)).all()
    assert any((t[2] - t[0]) >= 2 / 3 - 1e-6 for t in tiles)
    heat = np.zeros((4, 4))
    heat[0, 0] = 10.0
    assert mass_inside(heat, (0, 0, 1, 1), 10.0) == pytest.approx(1.0)
    assert mass_inside(heat, (0, 0, 0.25, 0.25), 10.0) > 0.9 > mass_inside(heat, (0.5, 0.5, 1, 1), 10.0)


def test_self_localizer_with_an_exported_model(tmp_path_factory):
    from helpers.tiny_service import build_tiny

    tiny = build_tiny(tmp_path_factory.mktemp("self_loc"))
    loc = SelfLocalizer(tiny["model"], channels=1, batch_size=4, tilings=(2, 3))
    _valid(loc.locate(_queries(tiny["corpus"], 6)), 6)
    by_heat = SelfLocalizer(tiny["model"], channels=1, batch_size=4, select="heatmap")
    _valid(by_heat.locate(_queries(tiny["corpus"], 6)), 6)
    # sized: the box has exactly the train size of the phrase's label and size word (unless clipped at an
    # edge)
    sizes = {("finding", "nodule", "small"): (0.1, 0.05), ("finding", "nodule", None): (0.3, 0.3)}
    sized = SelfLocalizer(tiny["model"], channels=1, batch_size=4, select="sized", sizes=sizes)
    queries = [Query(q.image_path, q.phrase, q.label, q.kind, "small") for q in _queries(tiny["corpus"], 6)]
    placed = sized.locate(queries)
    _valid(placed, 6)
    for p in placed:
        x0, y0, x1, y1 = p.bbox
        assert (x1 - x0) <= 0.1 + 1e-6 and (y1 - y0) <= 0.05 + 1e-6
        assert (x1 - x0) == pytest.approx(0.1, abs=1e-5) or x0 == 0 or x1 == 1
    with pytest.raises(ValueError, match="sized"):
        SelfLocalizer(tiny["model"], channels=1, select="sized")
    # through the stage: the sizes come from the corpus's given train boxes
    params = default_params(
        {"annotate": {"localizer": "self", "self_model_dir": str(tiny["model"]), "self_select": "sized"}}
    )
    staged = make_localizer(params, tiny["corpus"])
    train = read_manifest(tiny["corpus"], "train")
    assert staged.sizes == train_box_sizes(r for rs in train["regions"] for r in rs) and staged.sizes
    # an organ no given train region drew is not placed (the whole brain of a brain MRI is no region);
    # the organs the corpus boxes, and findings, are
    organs = {r["label"] for rs in train["regions"] for r in rs if r["kind"] == "anatomy"}
    assert staged.organs == organs and organs
    image = tiny["corpus"] / train["image_path"].iloc[0]
    mixed = staged.locate(
        [
            Query(image, "the brain", "brain", "anatomy"),
            Query(image, f"the {min(organs)}", min(organs), "anatomy"),
            Query(image, "a small nodule", "nodule", "finding", "small"),
        ]
    )
    assert mixed[0] is None and mixed[1] is not None and mixed[2] is not None


def test_frames_bound_where_the_self_localizer_looks(tmp_path_factory):
    from helpers.tiny_service import build_tiny

    tiny = build_tiny(tmp_path_factory.mktemp("self_loc_words"))
    params = default_params(
        {
            "annotate": {
                "localizer": "self",
                "self_model_dir": str(tiny["model"]),
                "self_select": "sized",
                "self_location_words": True,
            }
        }
    )
    loc = make_localizer(params, tiny["corpus"])
    assert loc.location_words and loc.places_organs
    # "right upper zone": the top third of the right lung; every box is centred in a cell touching it
    queries = [_framed(tiny["corpus"], q) for q in _queries(tiny["corpus"], 6)]
    grid = _heatmap_shape(loc, queries[0])
    open_cells = cells_touching(queries[0].frames[0].zone, grid)
    assert 0 < open_cells.sum() <= open_cells.size / 4
    for select in ("sized", "region_score"):
        loc.select = select
        placed = loc.locate(queries)
        _valid(placed, 6)
        assert {p.placed_by for p in placed} == {"heatmap"}
        centres = np.array([p.bbox for p in placed])
        assert centre_allowed(centres, open_cells).all(), select
    # a phrase without location words may be placed anywhere; a zone without a side, in either lung
    assert (
        loc.allowed_cells(Query(queries[0].image_path, "a small nodule", "nodule", "finding"), grid) is None
    )
    both = _framed(
        tiny["corpus"], Query(queries[0].image_path, "a nodule in the upper zone", "nodule", "finding")
    )
    right, left = (cells_touching(f.zone, grid) for f in both.frames)
    assert (loc.allowed_cells(both, grid) == (right | left)).all() and not (right & left).any()
    unbound = make_localizer(
        params.model_copy(
            update={"annotate": params.annotate.model_copy(update={"self_location_words": False})}
        ),
        tiny["corpus"],
    )
    assert unbound.allowed_cells(queries[0], grid) is None


def _heatmap_shape(loc, q) -> tuple[int, int]:
    import torch

    from regionmed.corpus.images import read_png, to_model_input
    from regionmed.model.text import encode_text_list

    pixels = torch.from_numpy(to_model_input(read_png(q.image_path), loc.channels)[None])
    heat, _ = loc.model.ground(pixels, encode_text_list(loc.model, loc.tokenizer, [q.phrase]))
    return tuple(heat.shape[-2:])


def test_ruled_out_cells_carry_no_belief():
    cells = cells_touching((0.0, 0.0, 0.5, 0.3), (4, 4))
    assert cells.tolist() == [
        [True, True, False, False],
        [True, True, False, False],
        [False] * 4,
        [False] * 4,
    ]
    assert centre_allowed(np.array([[0.0, 0.0, 0.2, 0.2], [0.6, 0.0, 0.9, 0.2]]), cells).tolist() == [
        True,
        False,
    ]
    heat = np.zeros((4, 4))
    heat[3, 3] = 5.0  # the model's peak, where the location words rule out
    heat[~cells] = np.nan
    assert peak_centre(heat, 10.0) == pytest.approx((1 / 4, 1 / 4), abs=1e-6)  # the open 2 x 2 block's middle
    assert mass_inside(heat, (0.0, 0.0, 0.5, 0.5), 10.0) == pytest.approx(1.0)
    assert mass_inside(heat, (0.0, 0.0, 0.25, 0.25), 10.0) == pytest.approx(0.25)


def test_train_box_sizes_use_given_boxes_only_by_label_and_size_word():
    regions = [
        {
            "bbox": [0.1, 0.1, 0.2, 0.3],
            "label": "nodule",
            "kind": "finding",
            "size": "small",
            "origin": "given",
        },
        {"bbox": [0.1, 0.1, 0.4, 0.3], "label": "nodule", "kind": "finding", "size": "small"},
        {
            "bbox": [0.0, 0.0, 0.6, 0.6],
            "label": "nodule",
            "kind": "finding",
            "size": "large",
            "origin": "given",
        },
        {
            "bbox": [0.0, 0.0, 0.9, 0.9],
            "label": "nodule",
            "kind": "finding",
            "size": "small",
            "origin": "annotated",
        },
    ]
    sizes = train_box_sizes(regions)
    assert sizes[("finding", "nodule", "small")] == pytest.approx((0.2, 0.2))  # median of 0.1 and 0.3 wide
    assert sizes[("finding", "nodule", None)] == pytest.approx((0.3, 0.2))  # every size: 0.1, 0.3, 0.6 wide
    assert ("finding", "nodule", "subtle") not in sizes


def test_peak_centre_moves_towards_the_heavier_neighbour_within_the_peak_cell():
    heat = np.zeros((4, 4))
    heat[1, 1] = 1.0
    assert peak_centre(heat, 50.0) == pytest.approx(
        (1.5 / 4, 1.5 / 4), abs=1e-6
    )  # a lone peak: its cell's centre
    heat[1, 2] = 0.98  # an almost equal right neighbour: the centre moves right, not past the cell edge
    x, y = peak_centre(heat, 50.0)
    assert 1.5 / 4 < x <= 2 / 4 and y == pytest.approx(1.5 / 4, abs=1e-6)


@pytest.fixture(scope="module")
def tiny_detector(tmp_path_factory):
    root = tmp_path_factory.mktemp("detectors")
    return save_tiny_owlv2(root / "owlv2"), save_tiny_sam(root / "sam")


def test_tiny_random_owlv2_and_sam_through_the_auto_classes(tiny_detector, tiny_corpus):
    from regionmed.annotation.detector import DetectorLocalizer

    owl, sam = tiny_detector
    detector = default_section("annotate.detector", model=str(owl))
    _valid(DetectorLocalizer(detector, 1).locate(_queries(tiny_corpus, 3)), 3)
    with_sam = default_section("annotate.detector", model=str(owl), sam=str(sam))
    _valid(DetectorLocalizer(with_sam, 1).locate(_queries(tiny_corpus, 2)), 2)


@pytest.mark.parametrize(
    "setting, detector",
    [
        ("annotate.detector.model", {"model": None}),
        ("annotate.detector.model", {"model": "/nonexistent/owlv2"}),
        ("annotate.detector.model", {"model": "SAM"}),  # a SamModel where a detector belongs
        ("annotate.detector.sam", {"model": "OWL", "sam": "OWL"}),  # a detector where SAM belongs
    ],
)
def test_a_missing_or_wrong_detector_stops_before_any_work_naming_the_setting(
    tiny_detector, tiny_corpus, tmp_path, setting, detector
):
    owl, sam = tiny_detector
    named = {k: {"SAM": str(sam), "OWL": str(owl)}.get(v, v) for k, v in detector.items()}
    params = default_params(
        {
            "corpus": {"out_dir": str(tiny_corpus), "image_size": 64},
            "annotate": {
                "localizer": "detector",
                "detector": named,
                "out_dir": str(tmp_path / "out"),
                "summary_file": str(tmp_path / "a.json"),
            },
        }
    )
    with pytest.raises(AnnotateError, match=setting.replace(".", r"\.")):
        stage.run(params, log=lambda *_: None)
    assert not (tmp_path / "out").exists() and not (tmp_path / "a.json").exists()


def test_self_without_a_model_folder_names_the_setting(tiny_corpus, tmp_path):
    params = default_params({"annotate": {"localizer": "self", "self_model_dir": str(tmp_path / "none")}})
    with pytest.raises(AnnotateError, match=r"annotate\.self_model_dir"):
        make_localizer(params, tiny_corpus)
