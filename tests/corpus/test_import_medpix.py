"""The MedPix 2.0 importer: a tiny fixture in the native layout, and the shared sample when present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.params import default_section

from regionmed.corpus.importers import ImporterConfigError, make_importer
from regionmed.corpus.importers.medpix import LABELS
from regionmed.prompts.templates import label_axes, load_prompts

MEDPIX_SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "medpix2-sample"


def _description(
    image: str,
    case: str,
    type_: str,
    caption: str,
    plane: str = "Axial",
    modality: str = "CT w/contrast (IV)",
    location: str = "Brain and Neuro",
    category: str = "Head",
) -> dict:
    return {
        "Type": type_,
        "U_id": case,
        "image": image,
        "Description": {
            "ACR Codes": "1.3",
            "Age": "40",
            "Caption": caption,
            "Figure Part": None,
            "Modality": modality,
            "Plane": plane,
            "Sex": "male",
        },
        "Location": location,
        "Location Category": category,
    }


def _case(
    case: str,
    ct: list[str],
    mri: list[str],
    findings: str = "A mass.",
    history: str = "Headache.",
    diagnosis: str = "Glioma",
) -> dict:
    return {
        "U_id": case,
        "TAC": ct,
        "MRI": mri,
        "Case": {
            "Title": diagnosis,
            "History": history,
            "Exam": "N/A",
            "Findings": findings,
            "Differential Diagnosis": "x",
            "Case Diagnosis": diagnosis,
            "Diagnosis By": "N/A",
        },
        "Topic": {"Title": diagnosis, "Disease Discussion": "long text", "ACR Code": "1.3", "Category": "x"},
    }


@pytest.fixture
def medpix(kit):
    descriptions = [
        _description("MPX1_synpic1", "MPX1", "CT", "Axial CT: mass in the right frontal lobe."),
        _description(
            "MPX1_synpic2", "MPX1", "MR", "Coronal T2.", plane="Coronal", modality="MR - T2 weighted"
        ),
        _description(
            "MPX2_synpic3",
            "MPX2",
            "CT",
            "Chest CT.",
            plane="Transverse",
            location="Chest, Pulmonary",
            category="Thorax",
        ),
        _description(
            "MPX2_synpic4",
            "MPX2",
            "MR",
            "Montage.",
            plane="Multiple or Montage",
            category="Abdomen",
            location="Gastrointestinal",
        ),
        _description(
            "MPX3_synpic5",
            "MPX3",
            "MR",
            "Sagittal spine.",
            plane="Sagittal",
            category="Spine and Muscles",
            location="Spine",
        ),
        _description("MPX4_synpic6", "MPX4", "CT", "Case without a case entry."),
        _description("MPX5_synpic7", "MPX5", "CT", "Case with empty texts."),
        {"Type": "CT", "image": "MPX6_synpic8", "Description": None},  # no U_id
        _description("MPX3_synpic9", "MPX3", "MR", "Image file missing.", plane="Sagittal"),
        _description(
            "MPX7_synpic10",
            "MPX7",
            "CT",
            "Not in any split.",
            category="Reproductive and Urinary System",
            location="Genitourinary",
        ),
    ]
    cases = [
        _case("MPX1", ["MPX1_synpic1"], ["MPX1_synpic2"], findings="Enhancing mass.\n\nEdema."),
        _case("MPX2", ["MPX2_synpic3"], ["MPX2_synpic4"], diagnosis="Lymphoma"),
        _case("MPX3", [], ["MPX3_synpic5", "MPX3_synpic9"], diagnosis="Disc herniation"),
        _case("MPX5", ["MPX5_synpic7"], [], findings="N/A", history="", diagnosis=" "),
        _case("MPX7", ["MPX7_synpic10"], []),
    ]
    for i, d in enumerate(descriptions):
        if d["image"] != "MPX3_synpic9":
            kit.png(f"images/{d['image']}.png", 60 + i, 50, value=20 + 20 * i)
    kit.json("Descriptions.json", descriptions)
    kit.json("Case_topic.json", cases)
    kit.json(
        "splitted_dataset/uid_list.json",
        {
            "train": ["MPX1", "MPX5"],
            "train_1": ["MPX1"],
            "train_2": ["MPX5"],
            "dev": ["MPX2"],
            "test": ["MPX3", "MPX4"],
        },
    )
    return kit.root


def test_medpix_fields_labels_and_splits(kit, medpix):
    summary, df, rejected = kit.build("medpix", medpix)
    df = df.set_index("image_id")
    assert sorted(df.index) == [
        "MPX1_synpic1",
        "MPX1_synpic2",
        "MPX2_synpic3",
        "MPX2_synpic4",
        "MPX3_synpic5",
        "MPX7_synpic10",
    ]
    a = df.loc["MPX1_synpic1"]
    assert (a["modality"], a["body_part"], a["patient_id"], a["split"]) == ("ct", "head", "MPX1", "train")
    assert a["report"] == "HISTORY: Headache. FINDINGS: Enhancing mass. Edema. DIAGNOSIS: Glioma"
    assert a["finding_text"] == "Axial CT: mass in the right frontal lobe."
    assert a["modality_text"] == "CT w/contrast (IV), axial plane"
    assert a["anatomy_text"] == "Head: Brain and Neuro"
    assert a["labels"] == ["modality:ct", "plane:axial", "body_part:head"]
    assert a["qa"] == [
        {"question": "What imaging modality is this?", "answer": "CT", "type": "modality"},
        {"question": "In which plane is this image?", "answer": "axial", "type": "other"},
    ]
    assert a["regions"] == [] and a["source"] == "medpix"
    b = df.loc["MPX1_synpic2"]
    assert b["modality"] == "mri" and b["labels"] == ["modality:mri", "plane:coronal", "body_part:head"]
    assert b["qa"][0]["answer"] == "MRI" and b["report"] == a["report"]
    c = df.loc["MPX2_synpic3"]  # Transverse is axial; Thorax is chest; dev is val
    assert c["labels"] == ["modality:ct", "plane:axial", "body_part:chest"] and c["split"] == "val"
    d = df.loc["MPX2_synpic4"]  # a montage has no plane label or plane question
    assert d["labels"] == ["modality:mri", "body_part:abdomen"] and len(d["qa"]) == 1
    assert d["modality_text"] == "CT w/contrast (IV)"
    assert df.loc["MPX3_synpic5", "labels"] == ["modality:mri", "plane:sagittal", "body_part:spine_muscles"]
    assert df.loc["MPX3_synpic5", "split"] == "test"
    assert df.loc["MPX7_synpic10", "body_part"] == "genitourinary"  # no listed split: hashed by case
    assert df.groupby("patient_id")["split"].nunique().max() == 1

    reasons = {(r["record_id"], r["category"]): r["reason"] for r in rejected}
    assert set(reasons) == {
        ("MPX4_synpic6", "missing_text"),
        ("MPX5_synpic7", "missing_text"),
        ("MPX6_synpic8", "bad_record"),
        ("MPX3_synpic9", "file_not_found"),
    }
    assert "case 'MPX4' is not in Case_topic.json" in reasons[("MPX4_synpic6", "missing_text")]
    assert "no History, Findings or Case Diagnosis" in reasons[("MPX5_synpic7", "missing_text")]
    assert "Descriptions.json[7]: field 'U_id'" in reasons[("MPX6_synpic8", "bad_record")]
    assert summary.n_input == 10


def test_every_label_has_a_prompt_text():
    texts = load_prompts()["label_texts"]
    assert set(LABELS) == set(texts), (
        "each MedPix label needs its prompt text in regionmed/prompts/zeroshot.yaml"
    )
    assert set(label_axes(LABELS)) == {"modality", "plane", "body_part"}


def test_medpix_settings_are_checked(tmp_path):
    with pytest.raises(ImporterConfigError, match=r"corpus\.importer\.path is not set"):
        make_importer("medpix", default_section("corpus.importer"))
    with pytest.raises(ImporterConfigError, match=r"no Descriptions\.json"):
        make_importer("medpix", default_section("corpus.importer", path=str(tmp_path)))


@pytest.mark.medpix
@pytest.mark.skipif(not MEDPIX_SAMPLE.is_dir(), reason=f"MedPix sample not at {MEDPIX_SAMPLE}")
def test_medpix_shared_sample(kit):
    summary, df, rejected = kit.build("medpix", MEDPIX_SAMPLE, workers=2, max_reject_fraction=0.0)
    assert summary.n_input == 2050 and summary.n_kept == 2050 and rejected == []
    assert df["patient_id"].nunique() == 671
    assert df.groupby("patient_id")["split"].nunique().max() == 1  # no case in two splits
    uid = json.loads((MEDPIX_SAMPLE / "splitted_dataset" / "uid_list.json").read_text())
    expected = {
        case: split
        for split, key in (("train", "train"), ("val", "dev"), ("test", "test"))
        for case in uid[key]
    }
    assert all(df["patient_id"].map(expected) == df["split"])
    assert set(df["modality"]) == {"ct", "mri"}
    assert set(df["body_part"]) == {"head", "chest", "abdomen", "spine_muscles", "genitourinary"}
    assert all(label in LABELS for labels in df["labels"] for label in labels)
    assert all(len(q) >= 1 for q in df["qa"])
    assert df["finding_text"].str.len().min() > 0 and df["report"].str.len().min() > 0
