"""Every kind of bad input is set aside in rejected.jsonl with a reason, and the good records go on."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from regionmed.corpus.build import BuildError
from regionmed.corpus.schema import BUILD_SUMMARY_FILE, REJECTED_FILE
from regionmed.corpus.shards import iter_shard

GOOD = ("good-1", "good-2", "good-3")


def _rec(record_id: str, image: str, **fields) -> dict:
    return {"id": record_id, "image": image, "report": f"Report of {record_id}.", **fields}


# (record id, category, words the reason must contain)
EXPECTED = [
    ("truncated", "unreadable_image", ["truncated.png", "truncated"]),
    ("not-an-image", "not_an_image", ["notes.png", "not a readable"]),
    ("dicom-no-pixels", "no_pixel_data", ["empty.dcm", "no pixel data"]),
    ("broken-dicom", "unreadable_image", ["broken.dcm", "DICOM"]),
    ("box-outside", "bad_box", ["region 0", "'nodule'", "outside the 40x30 image"]),
    ("box-zero-area", "bad_box", ["region 1", "'cyst'", "zero or negative area"]),
    ("box-inverted", "bad_box", ["region 0", "zero or negative area"]),
    ("box-tiny", "bad_box", ["min_box_area"]),
    ("no-report", "missing_text", ["line 9", "'report'"]),
    ("blank-report", "missing_text", ["line 10", "'report'"]),
    ("no-image-field", "missing_image", ["line 11", "'image'"]),
    ("missing-file", "file_not_found", ["nowhere.png", "not found"]),
    ("escape", "path_escapes_root", ["../../etc/passwd", "escapes the data root"]),
    ("absolute", "path_escapes_root", ["/etc/passwd", "absolute"]),
    ("symlink-out", "path_escapes_root", ["link.png", "escapes the data root"]),
    ("bomb", "image_too_large", ["bomb.png", "100000x100000 = 10000000000 pixels > limit 40000000"]),
    ("bomb-9000", "image_too_large", ["bomb-9000.png", "9000x9000 = 81000000 pixels > limit 40000000"]),
    ("big-file", "file_too_large", ["bytes > limit"]),
    ("records.jsonl:18", "invalid_json", ["line 18", "invalid JSON", "Unterminated string"]),
    ("records.jsonl:19", "invalid_json", ["line 19", "expected a JSON object"]),
    ("wrong-types", "bad_record", ["line 20", "'regions[0].bbox'", "'labels'"]),
    ("bad-split", "bad_record", ["line 21", "'split'", "unknown split"]),
    ("typo-field", "bad_record", ["line 22", "'finding_txt'"]),
    ("nan-box", "bad_record", ["line 23", "'regions[0].bbox[2]'"]),
    ("bad-qa", "bad_record", ["line 24", "'qa[0].answer'"]),
    ("records.jsonl:31", "bad_record", ["line 31", "field 'id'"]),
    ("good-1", "duplicate_id", ["duplicate record id 'good-1'"]),
    ("same-pixels", "duplicate_image", ["same image as"]),
]


@pytest.fixture
def built(kit):
    outside = kit.root.parent / "outside"
    outside.mkdir()
    Image.fromarray(np.full((30, 40), 90, dtype=np.uint8)).save(outside / "secret.png")
    for i, name in enumerate(GOOD):
        kit.png(f"{name}.png", 40, 30, value=50 + 40 * i)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 60), dtype=np.uint8)).save(buf, "PNG")
    kit.raw("truncated.png", buf.getvalue()[: len(buf.getvalue()) // 2])
    kit.raw("notes.png", b"these are my notes, not a picture\n")
    kit.dicom("empty.dcm", None)
    kit.dicom("whole.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    whole = (kit.root / "whole.dcm").read_bytes()
    kit.raw("broken.dcm", whole[: len(whole) - 4000])  # pixel data cut short
    kit.bomb_png("bomb.png")  # 100000 x 100000: over PIL's own limit too, refused by ours
    kit.bomb_png("bomb-9000.png", 9000, 9000)  # under PIL's limit, over max_image_pixels (40M)
    kit.raw("big.png", (kit.root / "good-1.png").read_bytes() + b"\0" * 50_000)
    os.symlink(outside / "secret.png", kit.root / "link.png")
    box = {"label": "nodule"}
    lines = [
        _rec("good-1", "good-1.png", regions=[{"bbox": [2, 2, 20, 20], **box}]),  # 1
        _rec("good-2", "good-2.png"),  # 2
        _rec("truncated", "truncated.png"),  # 3
        _rec("not-an-image", "notes.png"),  # 4
        _rec("dicom-no-pixels", "empty.dcm"),  # 5
        _rec("box-outside", "good-3.png", regions=[{"bbox": [10, 10, 60, 20], **box}]),  # 6
        _rec(
            "box-zero-area",
            "good-3.png",
            regions=[{"bbox": [1, 1, 5, 5], **box}, {"bbox": [10, 10, 10, 20], "label": "cyst"}],
        ),  # 7
        _rec("box-inverted", "good-3.png", regions=[{"bbox": [20, 20, 10, 10], **box}]),  # 8
        {"id": "no-report", "image": "good-3.png"},  # 9
        {"id": "blank-report", "image": "good-3.png", "report": "   "},  # 10
        {"id": "no-image-field", "report": "text"},  # 11
        _rec("missing-file", "nowhere.png"),  # 12
        _rec("escape", "../../etc/passwd"),  # 13
        _rec("absolute", "/etc/passwd"),  # 14
        _rec("symlink-out", "link.png"),  # 15
        _rec("bomb", "bomb.png"),  # 16
        _rec("big-file", "big.png"),  # 17
        '{"id": "cut-off", "image": "good-3.png", "report": "tru',  # 18
        '["a list", "not an object"]',  # 19
        _rec("wrong-types", "good-3.png", labels="nodule", regions=[{"bbox": [1, 2, 3], **box}]),  # 20
        _rec("bad-split", "good-3.png", split="holdout"),  # 21
        _rec("typo-field", "good-3.png", finding_txt="nodule"),  # 22
        (
            '{"id": "nan-box", "image": "good-3.png", "report": "r", '
            '"regions": [{"bbox": [1, 1, NaN, 5], "label": "x"}]}'
        ),  # 23
        _rec("bad-qa", "good-3.png", qa=[{"question": "Is there a nodule?", "answer": 1}]),  # 24
        _rec("good-1", "good-2.png"),  # 25
        _rec("box-tiny", "good-3.png", regions=[{"bbox": [1, 1, 1.1, 1.1], **box}]),  # 26
        _rec("same-pixels", "good-1.png"),  # 27
        _rec("good-3", "good-3.png", split="test", patient_id="P3"),  # 28
        _rec("broken-dicom", "broken.dcm"),  # 29
        _rec("bomb-9000", "bomb-9000.png"),  # 30
        _rec("   ", "good-3.png"),  # 31
    ]
    big_limit = 20_000
    summary, df, rejected = kit.build("jsonl", kit.jsonl(lines), importer={"max_file_bytes": big_limit})
    return summary, df, {(r["record_id"], r["category"]): r for r in rejected}


def test_good_records_are_kept(built):
    summary, df, rejected = built
    assert sorted(df["image_id"]) == sorted(GOOD)
    assert summary.n_kept == 3 and summary.n_rejected == len(EXPECTED) == len(rejected)
    assert summary.n_input == 31
    assert sum(summary.rejected_by_category.values()) == len(EXPECTED)
    assert df.set_index("image_id").loc["good-3", "split"] == "test"


@pytest.mark.parametrize("record_id, category, words", EXPECTED, ids=[e[0] for e in EXPECTED])
def test_bad_record_is_rejected_with_its_reason(built, record_id, category, words):
    _, _, rejected = built
    assert (record_id, category) in rejected, sorted(rejected)
    entry = rejected[(record_id, category)]
    for word in words:
        assert word in entry["reason"], entry["reason"]
    assert entry["record"]  # the record (or its raw line) is kept for the person fixing the data


def test_a_rejected_record_is_written_as_the_user_wrote_it(built):
    """Not a Python repr of an internal tuple: the record's own fields, as JSON, to find and fix it."""
    _, _, rejected = built
    duplicate = rejected[("good-1", "duplicate_id")]["record"]
    assert duplicate["record_id"] == "good-1" and duplicate["image_file"] == "good-2.png"
    assert duplicate["report"] == "Report of good-1." and "task" not in duplicate


def test_symlinked_secret_is_not_read(built, kit):
    _, df, _ = built
    corpus = kit.root.parent / "corpus"
    stored = [name for path in (corpus / "shards").glob("*.tar") for name, _ in iter_shard(path)]
    assert {f"{i}.png" for i in df["image_id"]} <= set(stored)  # (a duplicate image's member stays too)
    assert not any("secret" in name for name in stored + os.listdir(corpus))


def test_decompression_bomb_is_refused_from_the_header_with_the_pixel_limit(kit):
    """A real, fully valid PNG above max_image_pixels is refused before its pixels are decoded."""
    kit.png("big.png", 300, 300)
    kit.png("ok.png", 20, 20)
    _, df, rejected = kit.build(
        "jsonl",
        kit.jsonl([_rec("big", "big.png"), _rec("ok", "ok.png")]),
        importer={"max_image_pixels": 50_000},
    )
    assert list(df["image_id"]) == ["ok"]
    assert (
        rejected[0]["category"] == "image_too_large" and "90000 pixels > limit 50000" in rejected[0]["reason"]
    )


def test_too_many_rejects_fail_the_build_with_the_summary(kit):
    kit.png("ok.png", 20, 20)
    lines = [_rec("ok", "ok.png"), _rec("gone", "missing.png"), _rec("esc", "../x.png"), "{not json"]
    with pytest.raises(BuildError) as info:
        kit.build("jsonl", kit.jsonl(lines), max_reject_fraction=0.5)
    message = str(info.value)
    assert "3 of 4 records rejected" in message and "max_reject_fraction 50.0%" in message
    assert "'file_not_found': 1" in message and "'invalid_json': 1" in message
    assert "'path_escapes_root': 1" in message and REJECTED_FILE in message
    out = kit.root.parent / "corpus"
    # the evidence is still written for the person who has to fix the data
    assert len((out / REJECTED_FILE).read_text().splitlines()) == 3
    assert json.loads((out / BUILD_SUMMARY_FILE).read_text())["n_rejected"] == 3
