"""The embedded default corpus: schema, determinism, content, and splits."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from regionmed.corpus.atlas import ALL_FINDINGS, MODALITIES
from regionmed.corpus.build import build_corpus
from regionmed.corpus.images import read_png
from regionmed.corpus.phrases import has_laterality, strip_location, swap_laterality
from regionmed.corpus.schema import (
    COLUMNS,
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    NO_FINDING,
    QA_TYPES,
    read_manifest,
)
from regionmed.corpus.shards import image_bytes


def test_manifest_has_the_contract_schema(tiny_corpus):
    table = pq.read_table(tiny_corpus / MANIFEST_FILE)
    assert table.schema.names == list(COLUMNS)
    assert table.schema.equals(MANIFEST_SCHEMA, check_metadata=False)
    df = read_manifest(tiny_corpus)
    assert df["image_id"].is_unique and df["sha256"].is_unique
    assert set(df["split"]) == {"train", "val", "test"}
    for text_col in ("report", "modality_text", "anatomy_text", "finding_text"):
        assert df[text_col].str.len().min() > 0


def test_images_match_manifest(tiny_corpus):
    df = read_manifest(tiny_corpus)
    for row in df.head(40).itertuples():
        data = image_bytes(tiny_corpus / row.image_path)
        assert hashlib.sha256(data).hexdigest() == row.sha256
        img = Image.open(io.BytesIO(data))
        assert img.size == (row.width, row.height) == (64, 64)
        assert img.mode == "L"


def test_every_modality_and_finding_appears_with_boxes_inside_the_image(tiny_corpus):
    df = read_manifest(tiny_corpus)
    assert set(df["modality"]) == set(MODALITIES)
    labels = {label for labels in df["labels"] for label in labels}
    assert labels == set(ALL_FINDINGS) | {NO_FINDING}
    sizes = set()
    for regions in df["regions"]:
        for r in regions:
            x0, y0, x1, y1 = r["bbox"]
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
            if r["kind"] == "finding":
                sizes.add(r["size"])
                assert r["phrase"] not in r["hard_negatives"] and len(r["hard_negatives"]) >= 1
    assert sizes == {"subtle", "small", "large"}
    qa_types = {q["type"] for qa in df["qa"] for q in qa}
    assert qa_types == set(QA_TYPES)


def test_laterality_words_follow_the_geometry(tiny_corpus):
    """Radiological convention: a finding on the patient's right lies on the image's left half."""
    df = read_manifest(tiny_corpus)
    checked = 0
    for regions in df["regions"]:
        for r in regions:
            if (
                r["kind"] != "finding"
                or not has_laterality(r["phrase"])
                or "lobe of the liver" in r["phrase"]
            ):
                continue
            cx = (r["bbox"][0] + r["bbox"][2]) / 2
            side = "right" if " right " in f" {r['phrase']} " else "left"
            assert (cx < 0.5) == (side == "right"), (r["phrase"], cx)
            checked += 1
    assert checked > 50


def test_report_mentions_findings_and_pertinent_negatives(tiny_corpus):
    df = read_manifest(tiny_corpus)
    with_findings = df[df["labels"].map(lambda labels: labels != [NO_FINDING])]
    for row in with_findings.head(30).itertuples():
        for label in row.labels:
            assert label in row.report
        assert "IMPRESSION:" in row.report
    # a report names at least one absent finding of its modality as a pertinent negative
    findings_of = {name: {f.label for f in m.findings} for name, m in MODALITIES.items()}
    for row in df.itertuples():
        absent = findings_of[row.modality] - set(row.labels)
        if absent:
            assert any(f"no {a}" in row.report.lower() or f"of {a}" in row.report for a in absent), row.report
    # several wordings per sentence: the text is not a fixed code of the labels
    assert df["modality_text"].nunique() >= 9


def test_same_params_give_a_byte_identical_corpus_whatever_the_workers(tmp_path, tiny_params):
    """One in-process worker, two worker processes of a LocalCluster, other shard boundaries: the same
    images byte for byte (the manifest names the shard holding each, so it differs only there)."""
    from helpers.params import with_updates

    small = with_updates(tiny_params, {"corpus": {"synthetic": {"n_images": 60}, "shard_size": 25}})
    two_workers = with_updates(small, {"cluster": {"workers": 2}})
    as_files = with_updates(small, {"corpus": {"layout": "files", "shard_size": 8}})
    build_corpus(small, tmp_path / "a", progress=False)
    build_corpus(small, tmp_path / "b", progress=False)
    build_corpus(two_workers, tmp_path / "c", progress=False)
    build_corpus(as_files, tmp_path / "d", progress=False)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files_a) == 3 + 3  # 60 images in shards of 25, manifest, rejected.jsonl, build.json
    for other in ("b", "c"):
        for rel in files_a:
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / other / rel).read_bytes(), rel
    shards, files = read_manifest(tmp_path / "a"), read_manifest(tmp_path / "d")
    assert list(shards["sha256"]) == list(files["sha256"])
    assert shards["image_path"].str.match(r"^shards/00000[0-2]\.tar#.+\.png$").all()
    for a, d in zip(shards["image_path"], files["image_path"], strict=True):
        assert read_png(tmp_path / "a" / a).tobytes() == read_png(tmp_path / "d" / d).tobytes()


def test_a_different_seed_gives_different_images(tmp_path, tiny_params):
    a = build_corpus(tiny_params, tmp_path / "a", progress=False)
    b_params = tiny_params.model_copy(update={"seed": 1})
    build_corpus(b_params, tmp_path / "b", progress=False)
    assert a.n_kept == 240
    pixels_a = read_png(tmp_path / "a/shards/000000.tar#syn-000000.png").astype(float)
    pixels_b = read_png(tmp_path / "b/shards/000000.tar#syn-000000.png").astype(float)
    assert np.abs(pixels_a - pixels_b).mean() > 1


def test_no_patient_in_two_splits_and_proportions_close(tiny_corpus):
    df = read_manifest(tiny_corpus)
    assert (df.groupby("patient_id")["split"].nunique() == 1).all()
    assert df["patient_id"].nunique() < len(df)  # several images per patient exist
    share = df["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.8) < 0.1


def test_location_free_and_swapped_phrases():
    phrase = "a small nodule in the right upper zone"
    assert strip_location(phrase) == "a small nodule"
    assert strip_location("a subtle kidney cyst in the left kidney") == "a subtle kidney cyst"
    assert swap_laterality(phrase) == "a small nodule in the left upper zone"
    assert not has_laterality(strip_location(phrase))


def test_subtle_findings_are_small_and_faint(tmp_path):
    """Subtle findings must be the hard case: smaller boxes than large ones."""
    from helpers.params import default_params

    params = default_params({"corpus": {"synthetic": {"n_images": 150}}})
    build_corpus(params, tmp_path / "c", progress=False)
    df = read_manifest(tmp_path / "c")
    areas: dict[str, list[float]] = {"subtle": [], "large": []}
    for regions in df["regions"]:
        for r in regions:
            if r["kind"] == "finding" and r["size"] in areas and r["label"] != "cardiomegaly":
                areas[r["size"]].append((r["bbox"][2] - r["bbox"][0]) * (r["bbox"][3] - r["bbox"][1]))
    assert np.median(areas["subtle"]) * 3 < np.median(areas["large"])


def test_stats_and_preview(tiny_corpus, tmp_path):
    from regionmed.corpus.inspect import corpus_stats, preview_grid

    stats = corpus_stats(tiny_corpus)
    per_split = stats["images per split and modality"]
    assert per_split.loc["All", "All"] == 240
    out = preview_grid(tiny_corpus, tmp_path / "grid.png", n=8, cols=4, tile=128)
    img = Image.open(out)
    assert img.size[0] == 4 * 128 and np.asarray(img).std() > 10
    assert Path(out).stat().st_size > 10_000


def test_a_record_that_breaks_the_decoder_is_set_aside_and_the_rest_built(tmp_path, tiny_params):
    """Not a RecordError but a bug-like failure on one record: rejected with its reason, 239 kept."""
    from regionmed.corpus.build import make_source

    class Flaky:
        def __init__(self, inner):
            self.inner, self.name, self.root = inner, inner.name, None

        def tasks(self):
            return self.inner.tasks()

        def materialise(self, task):
            if task[0] == "syn-000005":
                raise ZeroDivisionError("a decoder bug")
            return self.inner.materialise(task)

    summary = build_corpus(
        tiny_params, tmp_path / "c", progress=False, source=Flaky(make_source(tiny_params))
    )
    assert summary.n_kept == 239 and summary.rejected_by_category == {"unexpected_error": 1}
    rejected = (tmp_path / "c" / "rejected.jsonl").read_text()
    assert "syn-000005" in rejected and "ZeroDivisionError" in rejected
