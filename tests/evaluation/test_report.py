"""Markdown report, heatmap overlay PNG, and DVC plot data files."""

from __future__ import annotations

import csv
import json

import numpy as np

from regionmed.evaluation.bootstrap import CI
from regionmed.evaluation.report import (
    draw_heatmap_overlay,
    plot_recall_at_k,
    plot_roc,
    write_markdown_report,
)


def test_markdown_report_table_andwrite_gallery(tmp_path):
    ci = CI(0.8, 0.75, 0.85, 0.05, 1000, 100, 300)
    rows = [
        {"metric": "pointing/lenient", "regionmed": 0.8, "baseline": 0.6},
        {"metric": "i2t/recall@1", "regionmed": 0.3, "baseline": None},
    ]
    cis = {
        "pointing/lenient": {
            "regionmed": ci,
            "baseline": {"low": 0.55, "high": 0.65},
            "difference": (0.1, 0.3),
        }
    }
    gallery = tmp_path / "gallery" / "case_001.png"
    out = write_markdown_report(tmp_path / "reports" / "eval.md", rows, cis, [gallery])
    text = out.read_text()
    assert "| metric | RegionMed | baseline | difference |" in text
    assert "| pointing/lenient | 0.800 [0.750, 0.850] | 0.600 [0.550, 0.650] | 0.200 [0.100, 0.300] |" in text
    assert "| i2t/recall@1 | 0.300 | – | – |" in text
    assert "![case_001](../gallery/case_001.png)" in text


def test_heatmap_overlay_writes_png(tmp_path):
    img = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    heat = np.zeros((8, 8))
    heat[2, 5] = 1.0
    out = draw_heatmap_overlay(
        img,
        heat,
        [0.6, 0.2, 0.8, 0.4],
        [0.55, 0.25, 0.75, 0.45],
        "a small nodule in the left upper zone",
        tmp_path / "g" / "x.png",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rgb = np.stack([img] * 3, axis=-1)
    assert draw_heatmap_overlay(rgb, heat, [0, 0, 1, 1], None, "rgb", tmp_path / "y.png").exists()


def test_plot_data_files(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.random((50, 3)) < 0.4
    y[:, 2] = False  # no positives: no curve
    s = rng.random((50, 3)) + y
    roc = plot_roc(s, y, ["a", "b", "c"], tmp_path / "plots" / "roc.csv")
    rows = list(csv.DictReader(roc.open()))
    assert {r["class"] for r in rows} == {"a", "b"} and set(rows[0]) == {"class", "fpr", "tpr"}
    a = [r for r in rows if r["class"] == "a"]
    assert float(a[0]["fpr"]) == 0.0 and float(a[-1]["tpr"]) == 1.0
    rk = plot_recall_at_k(
        {"i2t": {1: 0.2, 5: 0.5}, "t2i": {1: 0.3, 5: 0.6}}, tmp_path / "plots" / "recall.json"
    )
    blob = json.loads(rk.read_text())
    assert blob == {
        "recall": [
            {"series": "i2t", "k": 1, "recall": 0.2},
            {"series": "i2t", "k": 5, "recall": 0.5},
            {"series": "t2i", "k": 1, "recall": 0.3},
            {"series": "t2i", "k": 5, "recall": 0.6},
        ]
    }
    single = plot_recall_at_k({10: 0.9, 1: 0.4}, tmp_path / "r.csv")
    assert [r["k"] for r in csv.DictReader(single.open())] == ["1", "10"]


def testwrite_gallery_folder_is_written_even_without_regions(tmp_path):
    """``reports/evalwrite_gallery`` is a declared DVC output: a corpus without boxes (MedPix) must still
    produce it, or ``dvc repro evaluate`` fails after the work is done."""
    from regionmed.evaluation.stage import write_gallery
    from regionmed.evaluation.suite import ModelEvaluation

    results = {"regionmed": ModelEvaluation(), "baseline": ModelEvaluation()}
    out = tmp_path / "evalwrite_gallery"
    assert write_gallery(results, tmp_path, None, out, n=4) == []
    assert "no finding regions" in (out / "README.md").read_text()
    assert write_gallery(results, tmp_path, None, tmp_path / "g0", n=0) == []
    assert "gallery_size is 0" in (tmp_path / "g0" / "README.md").read_text()
