"""Importer inputs found by trying it as a careless user would: patient ids that differ in case or
whitespace, patients whose records ask for different splits, a huge report in a rejected record,
formats that are not accepted, absolute image paths, images over Pillow's own bomb limit."""

from __future__ import annotations

import json

import pytest
from helpers.hostile_images import header_bomb_png, other_format
from helpers.params import write_params

from regionmed.corpus.images import ImageError, decode_image
from regionmed.corpus.schema import BUILD_SUMMARY_FILE, REJECTED_FILE

MAX_REJECTED_CHARS = 2000  # docs/import-format.md, section 6


def _rec(record_id: str, image: str, **fields) -> dict:
    return {"id": record_id, "image": image, "report": f"Report of {record_id}.", **fields}


def test_patient_ids_are_one_patient_whatever_the_case_and_whitespace(kit):
    for i in range(3):
        kit.png(f"{i}.png", 20, 20, value=40 + 60 * i)
    lines = [
        _rec("a", "0.png", patient_id="P001"),
        _rec("b", "1.png", patient_id="p001 "),
        _rec("c", "2.png", patient_id="  P001\t"),
    ]
    _, df, rejected = kit.build("jsonl", kit.jsonl(lines))
    assert rejected == []
    assert set(df["patient_id"]) == {"P001"}
    assert df["split"].nunique() == 1


def test_records_of_one_patient_asking_for_different_splits_are_counted(kit):
    for i in range(4):
        kit.png(f"{i}.png", 20, 20, value=30 + 50 * i)
    lines = [
        _rec("a", "0.png", patient_id="P001", split="train"),
        _rec("b", "1.png", patient_id="p001 ", split="test"),
        _rec("c", "2.png", patient_id="P001 ", split="val"),
        _rec("d", "3.png", patient_id="P002", split="test"),
    ]
    summary, df, _ = kit.build("jsonl", kit.jsonl(lines))
    assert set(df.loc[df["patient_id"] == "P001", "split"]) == {"train"}
    assert summary.n_split_conflicts == 1
    saved = json.loads((kit.root.parent / "corpus" / BUILD_SUMMARY_FILE).read_text())
    assert saved["n_split_conflicts"] == 1
    assert saved["split_conflicts"] == [
        {"records": ["a", "b", "c"], "asked": {"train": 1, "test": 1, "val": 1}, "split": "train"}
    ]
    assert "P001" not in json.dumps(saved["split_conflicts"])  # record ids only: patient ids identify people


def test_the_cli_warns_about_split_conflicts(kit, tmp_path):
    from typer.testing import CliRunner

    from regionmed.cli import app

    for i in range(2):
        kit.png(f"{i}.png", 20, 20, value=30 + 90 * i)
    path = kit.jsonl(
        [
            _rec("a", "0.png", patient_id="P9", split="train"),
            _rec("b", "1.png", patient_id="P9", split="test"),
        ]
    )
    params = write_params(
        tmp_path / "params.yaml",
        {
            "corpus": {"source": "jsonl", "image_size": 64, "importer": {"path": str(path)}},
            "model": {"vision": {"image_size": 64, "channels": 1}},
        },
    )
    result = CliRunner().invoke(
        app, ["corpus", "build", "--params", str(params), "--out", str(tmp_path / "c"), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "1 patients have records that ask for different splits" in " ".join(result.output.split())


def test_rejected_records_keep_no_string_longer_than_the_documented_limit(kit):
    huge = "A very long report. " * 50_000  # 1 MB
    lines = [_rec("huge", "missing.png", report=huge, finding_text=huge)]
    _, _, rejected = kit.build("jsonl", kit.jsonl(lines))
    raw = (kit.root.parent / "corpus" / REJECTED_FILE).read_text()
    assert len(raw) < 4 * MAX_REJECTED_CHARS + 2000, len(raw)
    record = rejected[0]["record"]
    assert (
        record["report"].startswith("A very long report.") and "[cut: 1000000 characters]" in record["report"]
    )


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "BMP", "WEBP"])
def test_formats_other_than_png_jpeg_dicom_are_rejected(kit, fmt):
    kit.raw(f"scan.{fmt.lower()}", other_format(fmt))
    kit.png("ok.png", 20, 20)
    _, df, rejected = kit.build(
        "jsonl", kit.jsonl([_rec("odd", f"scan.{fmt.lower()}"), _rec("ok", "ok.png")])
    )
    assert list(df["image_id"]) == ["ok"]
    assert rejected[0]["category"] == "unsupported_format" and "not accepted" in rejected[0]["reason"], (
        rejected
    )


def test_an_absolute_path_inside_the_data_root_is_rejected_as_documented(kit):
    kit.png("inside.png", 20, 20)
    kit.png("ok.png", 20, 30)
    absolute = str((kit.root / "inside.png").resolve())
    _, df, rejected = kit.build("jsonl", kit.jsonl([_rec("abs", absolute), _rec("ok", "ok.png")]))
    assert list(df["image_id"]) == ["ok"]
    assert rejected[0]["category"] == "path_escapes_root" and "absolute" in rejected[0]["reason"], rejected


def test_the_configured_pixel_limit_is_the_only_one():
    bomb = header_bomb_png()  # 200 M pixels: over Pillow's own 179 M limit
    with pytest.raises(ImageError) as below:
        decode_image(bomb, 150_000_000)
    assert below.value.category == "image_too_large" and "limit 150000000" in str(below.value)
    assert "178956970" not in str(below.value)
    with pytest.raises(
        ImageError
    ) as above:  # a limit above Pillow's: the header passes, the data is truncated
        decode_image(bomb, 300_000_000)
    assert above.value.category != "image_too_large", str(above.value)
