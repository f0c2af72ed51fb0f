"""Chest findings of real notes placed on real chest X-rays (the covid-cxr-dev development set; skipped
when it is absent): no finding box lies across both lungs, a bilateral finding is one box per lung,
a finding that names a side lies in that lung, and on the images with lung boxes, placed as an image
without them would be (the other images' mean lungs), its centre still lies in the lung it names."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.params import default_params

from regionmed.annotation.anatomy import CorpusAnatomy
from regionmed.annotation.annotate import annotate_frame
from regionmed.annotation.localizers import PriorLocalizer
from regionmed.annotation.placement_audit import centre_inside, inside, lungs_of, named_side, spans_both
from regionmed.annotation.summary import AnnotationCounts
from regionmed.corpus.schema import read_manifest

COVID_CXR_DEV = Path(__file__).resolve().parents[3] / "shared" / "data" / "covid-cxr-dev"
pytestmark = pytest.mark.skipif(
    not (COVID_CXR_DEV / "records.jsonl").is_file(), reason="covid-cxr-dev is not next to the project"
)


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    from regionmed.corpus.build import build_corpus

    params = default_params(
        {
            "corpus": {"source": "jsonl", "importer": {"path": str(COVID_CXR_DEV / "records.jsonl")}},
            "annotate": {"localizer": "prior"},
        }
    )
    corpus = tmp_path_factory.mktemp("cxr") / "corpus"
    build_corpus(params, corpus, progress=False)
    return params, corpus, read_manifest(corpus)


def _annotate(df, corpus, params, extractor):
    a = params.annotate
    counts = AnnotationCounts("prior")
    return annotate_frame(df, corpus, a, PriorLocalizer(a.prior_confidence.model_dump()), extractor, counts)


def test_no_chest_finding_box_lies_across_both_lungs_and_each_lies_in_the_lung_it_names(dev, extractor):
    params, corpus, df = dev
    out = _annotate(df, corpus, params, extractor)
    anatomy = CorpusAnatomy(df[df["split"] == "train"])
    placed = 0
    for modality, regions in zip(out["modality"], out["regions"], strict=True):
        if modality != "chest_xray":
            continue
        lungs = lungs_of(regions, modality, anatomy)
        for r in regions:
            if r["origin"] != "annotated" or r["kind"] != "finding":
                continue
            placed += 1
            assert not spans_both(r["bbox"], lungs), r["phrase"]
            side = named_side(r["phrase"])
            assert side and inside(r["bbox"], lungs[f"{side} lung"]), r["phrase"]  # no side: not placed
    assert placed >= 50  # the set's notes name ~75 located findings on chest films


def test_a_finding_that_names_both_sides_is_one_box_in_each_lung(dev, extractor):
    params, corpus, df = dev
    out = _annotate(df, corpus, params, extractor)
    bilateral = 0
    for i, report in zip(df.index, df["report"], strict=True):
        if df.at[i, "modality"] != "chest_xray" or df.at[i, "split"] != "train":
            continue
        for m in extractor.extract(report):
            if not m.bilateral or m.negated or m.uncertain or m.kind != "finding":
                continue
            sides = {named_side(r["phrase"]) for r in out.at[i, "regions"] if r["label"] == m.label}
            if sides:  # placed (a side-less zone, "the lower zones", stays unplaced without the image)
                bilateral += 1
                assert sides == {"right", "left"}, (m.label, sides)
    assert bilateral >= 5


def test_on_images_with_lung_boxes_a_box_placed_without_them_names_the_right_lung(dev, extractor):
    params, corpus, df = dev
    boxed = [i for i in df.index if df.at[i, "split"] == "train" and df.at[i, "regions"]]
    assert len(boxed) == 4
    checked = 0
    for i in boxed:
        truth = {r["label"]: r["bbox"] for r in df.at[i, "regions"]}
        own = _annotate(df, corpus, params, extractor).at[i, "regions"]
        hidden = df.copy()
        hidden.at[i, "regions"] = []  # as an image without boxes: the other images' mean lungs
        mean = _annotate(hidden, corpus, params, extractor).at[i, "regions"]
        for with_own, regions in ((True, own), (False, mean)):
            for r in regions:
                side = named_side(r["phrase"])
                if r["origin"] != "annotated" or r["kind"] != "finding" or side is None:
                    continue
                lung = truth[f"{side} lung"]
                checked += 1
                # its own lung boxes: the box is that lung's part; the mean lungs: the centre still in it
                assert inside(r["bbox"], lung, share=1.0) if with_own else centre_inside(r["bbox"], lung)
                assert r["placed_by"] == ("image_anatomy" if with_own else "corpus_anatomy")
    assert checked == 8  # 4 located findings on the 4 boxed train images, placed both ways
