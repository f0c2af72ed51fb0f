"""Box quality against hidden truth: pointing, cell pointing (the evaluation's lenient rule), IoU."""

from __future__ import annotations

import pytest

from regionmed.annotation.quality import box_quality


def _finding(box, label="nodule", size="small", origin="annotated"):
    return {"bbox": box, "label": label, "kind": "finding", "size": size, "origin": origin}


def test_pointing_cell_pointing_and_iou_on_hand_made_boxes():
    truth = [0.40, 0.40, 0.45, 0.45]
    hidden = {
        "a": [_finding(truth, origin="given")],
        "b": [_finding(truth, origin="given")],
        "c": [_finding(truth, label="mass", size="large", origin="given")],
    }
    annotated = {
        "a": [_finding([0.40, 0.40, 0.45, 0.45])],  # exact: every measure hits
        # centre (0.38, 0.38): outside the true box, but in the 8 x 8 cell [0.375, 0.5] that overlaps it
        "b": [_finding([0.36, 0.36, 0.40, 0.40])],
        "c": [_finding([0.40, 0.40, 0.45, 0.45], label="nodule")],  # another label: no match for "mass"
    }
    q = box_quality(annotated, hidden, seed=0, n_boot=50, grid=8)
    assert q["n_hidden_findings"] == 3 and q["grid"] == 8
    assert q["all"]["recall"]["value"] == pytest.approx(2 / 3, abs=1e-4)  # rounded to 4 places
    assert q["all"]["pointing"]["value"] == 0.5 and q["all"]["cell_pointing"]["value"] == 1.0
    assert q["all"]["iou>0.5"]["value"] == 0.5
    assert q["large"]["recall"]["value"] == 0.0 and q["large"]["pointing"]["n"] == 0
    # at a 4 x 4 grid the centre (0.38, 0.38) falls in the cell [0.25, 0.5], which still overlaps
    assert box_quality(annotated, hidden, seed=0, n_boot=50, grid=4)["all"]["cell_pointing"]["value"] == 1.0
    # and a centre two cells away misses at either resolution
    far = {"a": [_finding([0.10, 0.10, 0.15, 0.15])]}
    assert (
        box_quality(far, {"a": hidden["a"]}, seed=0, n_boot=50, grid=8)["all"]["cell_pointing"]["value"]
        == 0.0
    )
    assert "cell_pointing" not in box_quality(annotated, hidden, seed=0, n_boot=50)["all"]
