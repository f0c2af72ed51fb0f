"""The annotate_regions stage on a small synthetic corpus: the annotated corpus's contract, nothing
added where regions exist, hidden boxes scored, bad reports counted and never turned into regions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.params import default_params

from regionmed.annotation import stage
from regionmed.annotation.annotate import HIDDEN_FILE
from regionmed.corpus.schema import MANIFEST_FILE, MANIFEST_SCHEMA, REGION_ORIGINS, read_manifest
from regionmed.corpus.shards import image_bytes
from regionmed.params import Params


def _params(tmp: Path, corpus: Path, **annotate) -> Params:
    return default_params(
        {
            "corpus": {"image_size": 64, "out_dir": str(corpus)},
            "annotate": {
                "out_dir": str(tmp / "annotated"),
                "summary_file": str(tmp / "annotation.json"),
                "preview_file": str(tmp / "preview.png"),
                **annotate,
            },
        }
    )


@pytest.fixture(scope="module")
def hidden_prior(tiny_corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hidden_prior")
    params = _params(tmp, tiny_corpus, localizer="prior", hide_given_fraction=0.9)
    summary = stage.run(params, log=lambda *_: None).summary
    return params, summary, read_manifest(tiny_corpus), read_manifest(params.annotate.out_dir)


def test_annotated_corpus_keeps_the_contract_and_adds_only_to_hidden_train_images(hidden_prior):
    params, _, before, after = hidden_prior
    out = Path(params.annotate.out_dir)
    assert pq.read_schema(out / MANIFEST_FILE).equals(MANIFEST_SCHEMA, check_metadata=False)
    assert list(after["image_id"]) == list(before["image_id"])
    for col in ("report", "split", "labels", "qa", "sha256", "image_path"):
        assert after[col].tolist() == before[col].tolist(), col
    stored = [hashlib.sha256(image_bytes(out / p)).hexdigest() for p in after["image_path"]]
    assert stored == after["sha256"].tolist()  # the images came along, in the annotated corpus's folder
    hidden = {json.loads(line)["image_id"] for line in (out / HIDDEN_FILE).read_text().splitlines()}
    train_boxed = before[(before["split"] == "train") & (before["regions"].map(len) > 0)]
    assert len(hidden) == round(0.9 * len(train_boxed))
    regions = [r for rs in after["regions"] for r in rs]
    assert {r["origin"] for r in regions} <= set(REGION_ORIGINS)
    annotated_ids = {
        i
        for i, rs in zip(after["image_id"], after["regions"], strict=True)
        if any(r["origin"] == "annotated" for r in rs)
    }
    assert annotated_ids and annotated_ids <= hidden  # only images whose boxes were hidden, never test/val
    for image_id, rs in zip(after["image_id"], after["regions"], strict=True):
        if image_id not in hidden:  # untouched images keep their given regions exactly
            assert rs == before.loc[before["image_id"] == image_id, "regions"].iloc[0]
    for r in regions:
        x0, y0, x1, y1 = r["bbox"]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and 0 <= r["confidence"] <= 1
        if r["origin"] == "annotated":
            # the prior's confidence is its frame's: hidden images have no anatomy, the corpus mean frames
            assert r["placed_by"] == "corpus_anatomy"
            assert r["confidence"] == params.annotate.prior_confidence.corpus_anatomy
            assert r["phrase"] not in r["hard_negatives"]
        else:
            assert r["placed_by"] is None
    assert any(r["hard_negatives"] for r in regions if r["origin"] == "annotated" and r["kind"] == "finding")


def test_summary_counts_and_box_quality_against_the_hidden_truth(hidden_prior):
    params, summary, _, after = hidden_prior
    written = json.loads(Path(params.annotate.summary_file).read_text())
    assert written["localizer"] == "prior" and written["images_hidden"] == summary["images_hidden"] > 0
    kept = written["regions_kept"]["prior"]["total"]
    assert kept == sum(r["origin"] == "annotated" for rs in after["regions"] for r in rs) > 0
    assert sum(written["confidence_histogram"]["counts"]) == kept + written["cases"]["below_threshold"]
    assert 0 < written["negated_share"] < 1  # the synthetic reports carry pertinent negatives
    quality = written["box_quality"]
    for bucket in ("all", "subtle", "small", "large"):
        for metric in ("pointing", "cell_pointing", "iou>0.3", "iou>0.5"):
            q = quality[bucket][metric]
            assert 0 <= q["low"] <= q["value"] <= q["high"] <= 1, (bucket, metric)
    assert quality["all"]["iou>0.5"]["value"] <= quality["all"]["iou>0.3"]["value"]
    assert quality["grid"] == params.model.vision.image_size // params.model.vision.patch_size
    assert Path(params.annotate.preview_file).stat().st_size > 1000


def test_negated_findings_never_become_regions(hidden_prior):
    _, _, _, after = hidden_prior
    for report, rs in zip(after["report"], after["regions"], strict=True):
        for r in rs:
            if r["origin"] == "annotated" and r["kind"] == "finding":
                assert f"no {r['label']}" not in report.lower(), (r["label"], "was negated in the report")


@pytest.mark.parametrize("localizer", ["prior", "auto"])
def test_a_fully_boxed_corpus_gets_nothing_added(tiny_corpus, tmp_path, localizer):
    params = _params(tmp_path, tiny_corpus, localizer=localizer, annotator_dir=str(tmp_path / "annotator"))
    summary = stage.run(params, log=lambda *_: None).summary
    # the images without a finding box (no finding) have anatomy boxes and reports that name no finding
    considered = read_manifest(tiny_corpus, "train")["regions"].map(
        lambda rs: not any(r["kind"] == "finding" for r in rs)
    )
    assert summary["images_considered"] == summary["images_with_given_anatomy"] == considered.sum() > 0
    assert summary["images_to_place"] == 0 and summary["cases"]["nothing_to_place"] == considered.sum()
    resolved = "none" if localizer == "auto" else "prior"
    assert summary["resolved"] == resolved and summary["regions_kept"][resolved]["total"] == 0
    before, after = read_manifest(tiny_corpus), read_manifest(params.annotate.out_dir)
    assert after["regions"].tolist() == before["regions"].tolist()
    assert all(r["origin"] == "given" and r["confidence"] == 1.0 for rs in after["regions"] for r in rs)


def test_min_confidence_drops_weak_boxes_and_counts_them(tiny_corpus, tmp_path):
    params = _params(
        tmp_path,
        tiny_corpus,
        localizer="prior",
        hide_given_fraction=0.5,
        min_confidence=0.5,
        prior_confidence={"image_anatomy": 0.6, "corpus_anatomy": 0.2, "words": 0.1},
    )
    summary = stage.run(params, log=lambda *_: None).summary
    assert summary["regions_kept"]["prior"]["total"] == 0 and summary["cases"]["below_threshold"] > 0
    assert not any(
        r["origin"] == "annotated" for rs in read_manifest(params.annotate.out_dir)["regions"] for r in rs
    )


def _corpus_with_reports(src: Path, dest: Path, reports: list[str]) -> Path:
    """A copy of ``src`` whose first train images lose their regions and get these reports."""
    import shutil

    shutil.copytree(src, dest)
    df = pq.read_table(dest / MANIFEST_FILE).to_pandas()
    rows = df.index[df["split"] == "train"][: len(reports)]
    for i, text in zip(rows, reports, strict=True):
        df.at[i, "report"] = text
        df.at[i, "regions"] = []
    pq.write_table(
        pd.DataFrame(df).pipe(
            lambda d: __import__("pyarrow").Table.from_pandas(d, schema=MANIFEST_SCHEMA, preserve_index=False)
        ),
        dest / MANIFEST_FILE,
    )
    return dest


BAD_REPORTS = [
    "",
    "   \n\t  ",
    "Normal examination. Nothing to report.",  # no finding words
    "Der Befund zeigt keine Auffälligkeiten. 肺野清晰。",  # not English
    "No nodule. No pleural effusion. There is no consolidation.",  # only negated findings
    "a " * 500_000 + "There is a small nodule in the right upper zone.",  # ~1 MB, the finding past the cut
]


def test_bad_reports_do_not_crash_invent_nothing_and_are_counted(tiny_corpus, tmp_path):
    corpus = _corpus_with_reports(tiny_corpus, tmp_path / "corpus", BAD_REPORTS)
    params = _params(tmp_path, corpus, localizer="prior", max_report_chars=100_000)
    summary = stage.run(params, log=lambda *_: None).summary
    # the bad reports' images, and the no-finding images with anatomy boxes (reports naming no finding)
    assert summary["images_considered"] - summary["images_with_given_anatomy"] == len(BAD_REPORTS)
    cases = summary["cases"]
    assert cases["empty_report"] == 2 and cases["truncated_report"] == 1
    assert cases["no_mentions"] >= 4  # empty, whitespace, normal, non-English (and the cut 1 MB one)
    assert cases["nothing_to_place"] >= 1  # only negated findings
    after = read_manifest(params.annotate.out_dir)
    assert not any(r["origin"] == "annotated" for rs in after["regions"] for r in rs)


def test_a_corpus_written_before_origin_and_confidence_still_loads(tiny_corpus, tmp_path):
    import pyarrow as pa

    table = pq.read_table(tiny_corpus / MANIFEST_FILE)
    old_region = pa.struct(
        [
            f
            for f in MANIFEST_SCHEMA.field("regions").type.value_type
            if f.name not in ("origin", "confidence")
        ]
    )
    old = table.set_column(
        table.schema.get_field_index("regions"),
        "regions",
        pa.array(table.column("regions").to_pylist(), type=pa.list_(old_region)),
    )
    (tmp_path / "old").mkdir()
    pq.write_table(old, tmp_path / "old" / MANIFEST_FILE)
    df = read_manifest(tmp_path / "old")
    regions = [r for rs in df["regions"] for r in rs]
    assert regions and all(r["origin"] == "given" and r["confidence"] == 1.0 for r in regions)


def test_training_batches_weigh_annotated_regions_by_the_setting(hidden_prior):
    from regionmed.training.data import Collator, CorpusDataset, RegionWeighting

    params, _, _, _ = hidden_prior
    ds = CorpusDataset(
        params.annotate.out_dir, "train", 1, 6, weighting=RegionWeighting(0.3, confidence_weighted=True)
    )
    items = [ds[i] for i in range(len(ds))]
    origins = [
        r["origin"]
        for i in range(len(ds))
        for r in sorted(ds.df.iloc[i]["regions"], key=lambda r: r["kind"] != "finding")[:6]
    ]
    weights = [w for it in items for w in it["region_weight"]]
    assert len(weights) == len(origins) and "annotated" in origins and "given" in origins
    for origin, w in zip(origins, weights, strict=True):
        assert w == (1.0 if origin == "given" else 0.3 * params.annotate.prior_confidence.corpus_anatomy)

    class _Tok:  # the collator only needs a tokenizer's call shape here
        def __call__(self, texts, **_):
            import torch

            return {
                "input_ids": torch.zeros(len(texts), 2, dtype=torch.long),
                "attention_mask": torch.ones(len(texts), 2, dtype=torch.long),
            }

    batch = Collator(_Tok(), 8)(items[:8])
    assert batch["region_weight"].shape[0] == batch["phrase_index"].shape[0]
