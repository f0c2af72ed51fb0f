"""The generic JSONL importer: fields, box geometry under letterbox, phrases, splits, DICOM."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.params import default_section

from regionmed.corpus.build import BuildError
from regionmed.corpus.images import read_png
from regionmed.corpus.importers import ImporterConfigError, make_importer
from regionmed.corpus.importers.jsonl import write_jsonl
from regionmed.corpus.phrases import side_of

# A 200 x 100 image letterboxed to 64: scale 0.32, 64 x 32 pixels, 16 rows of padding above.
LEFT_BOX_PX = [20, 10, 60, 50]  # image-left = the patient's right
LEFT_BOX_NORM = [0.1, 0.3, 0.3, 0.5]
RIGHT_BOX_PX = [150, 80, 190, 100]  # image-right, bottom third = the patient's left, lower zone
RIGHT_BOX_NORM = [0.75, 0.65, 0.95, 0.75]


def _record(i: int, image: str, **fields) -> dict:
    return {"id": f"r{i}", "image": image, "report": f"Report number {i}.", **fields}


def test_every_field_reaches_the_manifest(kit):
    kit.png("img/a.png", 200, 100)
    record = {
        "id": "case-1/a",
        "image": "img/a.png",
        "report": "Chest CT. Small right nodule.",
        "patient_id": 1234,
        "split": "dev",
        "modality": "ct",
        "body_part": "chest",
        "modality_text": "axial chest CT",
        "anatomy_text": "the lungs",
        "finding_text": "a small nodule",
        "labels": ["nodule"],
        "meta": {"anything": [1, 2]},
        "regions": [
            {
                "bbox": LEFT_BOX_PX,
                "label": "nodule",
                "phrase": "a small right nodule",
                "hard_negatives": ["a small left nodule"],
                "kind": "finding",
                "size": "small",
            },
            {"bbox": [0, 0, 100, 100], "label": "right lung", "kind": "anatomy"},
        ],
        "qa": [
            {"question": "Is there a nodule?", "answer": "yes", "type": "presence"},
            {"question": "Which lung?", "answer": "right"},
        ],
    }
    summary, df, rejected = kit.build("jsonl", kit.jsonl([record]))
    assert summary.n_kept == 1 and rejected == []
    row = df.iloc[0]
    assert row["image_id"] == "case-1_a" and row["image_path"] == "shards/000000.tar#case-1_a.png"
    assert (row["patient_id"], row["split"], row["modality"], row["body_part"]) == (
        "1234",
        "val",
        "ct",
        "chest",
    )
    assert (row["modality_text"], row["anatomy_text"], row["finding_text"]) == (
        "axial chest CT",
        "the lungs",
        "a small nodule",
    )
    assert row["labels"] == ["nodule"] and row["source"] == "jsonl"
    nodule, lung = row["regions"]
    assert nodule["phrase"] == "a small right nodule" and nodule["hard_negatives"] == ["a small left nodule"]
    assert nodule["size"] == "small" and lung["kind"] == "anatomy" and lung["size"] is None
    assert nodule["bbox"] == pytest.approx(LEFT_BOX_NORM)
    assert row["qa"][1] == {"question": "Which lung?", "answer": "right", "type": "other"}


def test_boxes_follow_the_letterbox_and_phrases_follow_the_geometry(kit):
    kit.png("wide.png", 200, 100, value=200)
    record = _record(
        0,
        "wide.png",
        body_part="chest",
        regions=[
            {"bbox": LEFT_BOX_PX, "label": "nodule", "size": "small"},
            {"bbox": RIGHT_BOX_PX, "label": "effusion"},
            {"bbox": [0, 0, 100, 100], "label": "right lung", "kind": "anatomy", "phrase": "the right lung"},
        ],
    )
    _, df, _ = kit.build("jsonl", kit.jsonl([record]))
    nodule, effusion, lung = df.iloc[0]["regions"]
    assert nodule["bbox"] == pytest.approx(LEFT_BOX_NORM, abs=1e-6)
    assert effusion["bbox"] == pytest.approx(RIGHT_BOX_NORM, abs=1e-6)
    # radiological convention: the image's left half is the patient's right
    assert nodule["phrase"] == "a small nodule in the right middle zone"
    assert effusion["phrase"] == "an effusion in the left lower zone"
    assert side_of((nodule["bbox"][0] + nodule["bbox"][2]) / 2) == "right"
    assert "a small nodule in the left middle zone" in nodule["hard_negatives"]
    assert "a large nodule in the right middle zone" in nodule["hard_negatives"]
    assert "an effusion in the right lower zone" in effusion["hard_negatives"]
    assert "a nodule in the left lower zone" in effusion["hard_negatives"]  # another finding, same place
    assert not any("lung" in n for n in nodule["hard_negatives"] + effusion["hard_negatives"])  # not anatomy
    assert lung["kind"] == "anatomy" and lung["phrase"] == "the right lung"
    # with no labels given, the labels are the findings' labels
    assert df.iloc[0]["labels"] == ["nodule", "effusion"]
    # the stored image: 64 x 64, the 64 x 32 picture centred between black bars
    img = np.asarray(read_png(kit.root.parent / "corpus" / df.iloc[0]["image_path"]))
    assert img.shape == (64, 64)
    assert img[:16].max() == 0 and img[48:].max() == 0
    assert img[17:47].min() > 150


def test_tall_image_pads_left_and_right_and_normalised_boxes_pass_through(kit):
    kit.png("tall.png", 50, 100)
    record = _record(
        0,
        "tall.png",
        regions=[
            {"bbox": [0, 0, 50, 50], "label": "mass"},  # the top half of the picture
            {"bbox": [0.5, 0.5, 1.0, 1.0], "label": "cyst", "normalised": True},
        ],
    )
    _, df, _ = kit.build("jsonl", kit.jsonl([record]))
    mass, cyst = df.iloc[0]["regions"]
    assert mass["bbox"] == pytest.approx([0.25, 0.0, 0.75, 0.5])  # 32 px wide, 16 px of padding each side
    assert cyst["bbox"] == pytest.approx([0.5, 0.5, 1.0, 1.0])


def test_jpeg_and_numeric_ids_and_blank_lines(kit):
    kit.jpeg("a.jpg", 80, 60)
    path = kit.jsonl([{"id": 7, "image": "a.jpg", "report": "ok"}, "", "   "])
    summary, df, rejected = kit.build("jsonl", path, channels=3)
    assert summary.n_input == 1 and rejected == []
    assert df.iloc[0]["image_id"] == "7"
    img = np.asarray(read_png(kit.root.parent / "corpus" / df.iloc[0]["image_path"]))
    assert img.shape == (64, 64, 3)


def test_patients_never_span_two_splits(kit):
    records = []
    for p in range(40):
        for k in range(3):
            i = p * 3 + k
            kit.png(f"p{p}/{k}.png", 32, 32, value=(i * 7) % 250 + 1)  # distinct images
            given = {}
            if p % 4 == 0:  # a source split that disagrees with itself within the patient
                given = {"split": ["train", "test", "val"][k]}
            elif p % 4 == 1:
                given = {"split": "dev"}
            records.append(_record(i, f"p{p}/{k}.png", patient_id=f"P{p}", **given))
    _, df, rejected = kit.build("jsonl", kit.jsonl(records))
    assert len(df) == 120 and rejected == []
    assert df.groupby("patient_id")["split"].nunique().max() == 1
    given_dev = df[df["patient_id"].isin([f"P{p}" for p in range(1, 40, 4)])]
    assert set(given_dev["split"]) == {"val"}
    assert set(df["split"]) == {"train", "val", "test"}


def test_dicom_monochrome1_with_rescale_and_window(kit):
    # stored value v -> HU 2v - 1024; window 40 +- 200 HU; MONOCHROME1: low values are shown white
    bands = {"air": 0, "centre": 532, "bright_tissue": 612, "bone": 2000}  # HU -1024, 40, 200, 2976
    stored = np.zeros((64, 64), dtype=np.uint16)
    for k, v in enumerate(bands.values()):
        stored[:, k * 16 : (k + 1) * 16] = v
    kit.dicom("scan.dcm", stored)
    kit.dicom("scan2.dcm", stored, photometric="MONOCHROME2")
    kit.dicom("empty.dcm", None)
    path = kit.jsonl(
        [
            _record(0, "scan.dcm", regions=[{"bbox": [0, 0, 16, 64], "label": "lung"}]),
            _record(1, "scan2.dcm"),
            _record(2, "empty.dcm"),
        ]
    )
    summary, df, rejected = kit.build("jsonl", path)
    assert summary.n_kept == 2
    mono1 = np.asarray(read_png(kit.root.parent / "corpus" / df.iloc[0]["image_path"])).astype(int)
    mono2 = np.asarray(read_png(kit.root.parent / "corpus" / df.iloc[1]["image_path"])).astype(int)
    air, centre, tissue, bone = (mono1[32, k * 16 + 8] for k in range(4))
    assert air == 255 and bone == 0  # inverted: air white, bone black
    assert 115 <= centre <= 140  # the window centre is mid-grey
    assert 10 <= tissue <= 40  # 200 HU is near the top of the window (about 90%), so dark once inverted
    assert np.array_equal(mono1, 255 - mono2)  # MONOCHROME2 of the same data is the inverse
    assert df.iloc[0]["regions"][0]["bbox"] == pytest.approx([0, 0, 0.25, 1])
    assert [(r["record_id"], r["category"]) for r in rejected] == [("r2", "no_pixel_data")]
    assert "scan" not in rejected[0]["reason"] and "empty.dcm" in rejected[0]["reason"]


def test_dicom_minmax_window_ignores_the_header(kit):
    stored = np.tile(np.linspace(0, 2000, 64, dtype=np.uint16), (64, 1))
    kit.dicom("scan.dcm", stored, photometric="MONOCHROME2")
    _, df, _ = kit.build("jsonl", kit.jsonl([_record(0, "scan.dcm")]), importer={"dicom_window": "minmax"})
    img = np.asarray(read_png(kit.root.parent / "corpus" / df.iloc[0]["image_path"])).astype(int)
    assert img[10, 0] == 0 and img[10, 63] == 255
    assert np.all(np.diff(img[10]) >= 0) and 100 <= img[10, 32] <= 155  # a full ramp, no window clipping


def test_write_jsonl_validates(tmp_path):
    path = write_jsonl([{"id": "a", "image": "a.png", "report": "r"}], tmp_path / "out.jsonl")
    assert path.read_text().count("\n") == 1
    with pytest.raises(ValueError, match="bbox"):
        write_jsonl(
            [{"id": "a", "image": "a.png", "report": "r", "regions": [{"bbox": [1, 2], "label": "x"}]}],
            tmp_path / "bad.jsonl",
        )


def test_missing_settings_name_the_parameter(tmp_path):
    with pytest.raises(ImporterConfigError, match=r"corpus\.importer\.path is not set"):
        make_importer("jsonl", default_section("corpus.importer"))
    with pytest.raises(ImporterConfigError, match=r"corpus\.importer\.path = .*no such file"):
        make_importer("jsonl", default_section("corpus.importer", path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(ImporterConfigError, match=r"corpus\.source = 'csv'"):
        make_importer("csv", default_section("corpus.importer", path="x"))
    assert issubclass(ImporterConfigError, BuildError)  # the CLI prints it as a failed build
