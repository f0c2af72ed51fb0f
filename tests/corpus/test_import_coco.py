"""The COCO importer: boxes [x, y, w, h] in pixels + a captions CSV."""

from __future__ import annotations

import pytest
from helpers.params import default_section

from regionmed.corpus.importers import ImporterConfigError, make_importer

COLUMNS = ["file_name", "report", "patient_id", "split", "modality", "body_part", "labels"]


def _coco(images, annotations, categories=None):
    return {
        "info": {"description": "test"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories
        if categories is not None
        else [
            {"id": 1, "name": "nodule", "supercategory": "finding"},
            {"id": 2, "name": "effusion"},
            {"id": 3, "name": "heart", "supercategory": "anatomy"},
        ],
    }


@pytest.fixture
def coco_set(kit):
    kit.png("images/wide.png", 200, 100)
    kit.png("images/small.png", 40, 40, value=90)
    kit.png("images/other.png", 40, 40, value=30)
    kit.png("images/resized.png", 100, 50, value=60)
    kit.png("images/bad-ann.png", 40, 40, value=10)
    images = [
        {"id": 1, "file_name": "images/wide.png", "width": 200, "height": 100, "license": 0},
        {"id": 2, "file_name": "images/small.png", "width": 40, "height": 40},
        {"id": 3, "file_name": "images/other.png"},  # no caption row
        {"id": 4, "file_name": "images/resized.png", "width": 200, "height": 100},  # file is 100x50
        {"id": 5, "file_name": "images/bad-ann.png"},
        {"id": 2, "file_name": "images/again.png"},  # duplicate COCO id
        {"file_name": "images/no-id.png"},
    ]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [20, 10, 40, 40], "area": 1600, "iscrowd": 0},
        {"id": 11, "image_id": 1, "category_id": 2, "bbox": [150, 80, 40, 20]},
        {"id": 12, "image_id": 1, "category_id": 3, "bbox": [90, 40, 30, 30]},
        {"id": 13, "image_id": 4, "category_id": 1, "bbox": [10, 10, 20, 20]},
        {"id": 14, "image_id": 5, "category_id": 99, "bbox": [1, 1, 5, 5]},
        {"id": 15, "image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5]},
    ]
    ann = kit.json("annotations.json", _coco(images, annotations))
    rows = [
        {
            "file_name": "images/wide.png",
            "report": "Right middle zone nodule; left effusion.",
            "patient_id": "P1",
            "split": "dev",
            "modality": "ct",
            "body_part": "chest",
            "labels": "nodule; effusion",
        },
        {
            "file_name": "./images/small.png",
            "report": "Normal.",
            "patient_id": "",
            "split": "",
            "modality": "",
            "body_part": "",
            "labels": "",
        },
        {"file_name": "images/resized.png", "report": "Nodule.", "patient_id": "P1"},
        {"file_name": "images/bad-ann.png", "report": "Something."},
        {"file_name": "images/unknown.png", "report": "Orphan text."},
        {"file_name": "images/wide.png", "report": "A second row for the same image."},
    ]
    captions = kit.csv("captions.csv", rows, COLUMNS)
    return ann, captions


def test_coco_boxes_labels_and_captions(kit, coco_set):
    ann, captions = coco_set
    summary, df, rejected = kit.build("coco", ann, captions, workers=2)  # materialise runs in workers
    df = df.set_index("image_id")
    assert sorted(df.index) == ["images_small", "images_wide"]
    wide = df.loc["images_wide"]
    assert (wide["patient_id"], wide["split"], wide["modality"], wide["body_part"]) == (
        "P1",
        "val",
        "ct",
        "chest",
    )
    assert wide["labels"] == ["nodule", "effusion"] and wide["source"] == "coco"
    nodule, effusion, heart = wide["regions"]
    # [x, y, w, h] = [20, 10, 40, 40] in a 200 x 100 image letterboxed to 64 (16 rows of padding)
    assert nodule["bbox"] == pytest.approx([0.1, 0.3, 0.3, 0.5])
    assert effusion["bbox"] == pytest.approx([0.75, 0.65, 0.95, 0.75])
    # labels are the category names; phrases come from the geometry (image-left = patient's right)
    assert nodule["label"] == "nodule" and nodule["phrase"] == "a nodule in the right middle zone"
    assert effusion["phrase"] == "an effusion in the left lower zone"
    assert "a nodule in the left middle zone" in nodule["hard_negatives"]
    assert heart["kind"] == "anatomy" and nodule["kind"] == effusion["kind"] == "finding"
    small = df.loc["images_small"]
    assert small["regions"] == [] and small["patient_id"] == "images/small"
    assert small["modality"] == "unknown" and small["labels"] == []

    by_id = {(r["record_id"], r["category"]): r["reason"] for r in rejected}
    assert "no row in the captions CSV" in by_id[("images/other", "missing_text")]
    assert "100x50 but the COCO entry says 200x100" in by_id[("images/resized", "size_mismatch")]
    assert "category_id '99'" in by_id[("images/bad-ann", "bad_record")]
    assert "annotations[5] (id 15)" in by_id[("annotation:5", "bad_record")]
    assert "image id '2' used twice" in by_id[("images/again", "duplicate_id")]
    assert "field 'id'" in by_id[("images/no-id", "bad_record")]
    assert (
        "'images/unknown.png' is not in the COCO 'images' list" in by_id[("captions.csv:6", "unknown_image")]
    )
    assert "second row for file_name 'images/wide.png'" in by_id[("captions.csv:7", "duplicate_id")]
    assert summary.n_rejected == len(rejected) == 8


def test_captions_csv_next_to_the_annotations_and_patient_splits(kit, monkeypatch):
    images, rows = [], []
    for i in range(30):
        name = f"im{i}.png"
        kit.png(name, 24, 24, value=i * 8 + 1)
        images.append({"id": i, "file_name": name, "width": 24, "height": 24})
        rows.append(
            {
                "file_name": name,
                "report": f"Report {i}.",
                "patient_id": f"P{i // 3}",
                "split": "test" if i == 4 else "",
            }
        )
    kit.json("ann.json", _coco(images, []))
    kit.csv("caps.csv", rows, ["file_name", "report", "patient_id", "split", "extra_column"])
    monkeypatch.chdir(kit.root.parent)
    # captions_csv is relative: not in the working directory, so it is found next to ann.json
    summary, df, rejected = kit.build("coco", kit.root / "ann.json", captions_csv="caps.csv")
    assert summary.n_kept == 30 and rejected == []
    assert df.groupby("patient_id")["split"].nunique().max() == 1
    assert set(df[df["patient_id"] == "P1"]["split"]) == {"test"}  # im4's given split moves its patient


def test_coco_settings_are_checked(kit):
    ann = kit.json("ann.json", _coco([], []))
    with pytest.raises(ImporterConfigError, match=r"corpus\.importer\.captions_csv is not set"):
        make_importer("coco", default_section("corpus.importer", path=str(ann)))
    caps = kit.csv("caps.csv", [], ["file_name", "text"])
    with pytest.raises(ImporterConfigError, match=r"captions_csv: .* lacks column\(s\) \['report'\]"):
        settings = default_section("corpus.importer", path=str(ann), captions_csv=str(caps))
        list(make_importer("coco", settings).tasks())
    bad = kit.json("bad.json", {"annotations": []})
    caps = kit.csv("caps2.csv", [], ["file_name", "report"])
    with pytest.raises(ImporterConfigError, match="not a COCO annotations file"):
        settings = default_section("corpus.importer", path=str(bad), captions_csv=str(caps))
        list(make_importer("coco", settings).tasks())
