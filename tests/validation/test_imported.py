"""The same validation on corpora built by the importers: JSONL, COCO and the MedPix sample.

The JSONL and COCO inputs are the small synthetic corpus exported to those formats (real files,
pixel boxes for COCO), so each importer's full path runs: read, decode, letterbox, split.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers.params import default_params
from helpers.validation_corpus import small_params

from regionmed.corpus.build import build_corpus
from regionmed.corpus.schema import read_manifest
from regionmed.corpus.shards import image_bytes
from regionmed.params import Params, deep_merge
from regionmed.validation import validate_corpus

MEDPIX = Path(__file__).resolve().parents[3] / "shared" / "data" / "medpix2-sample"


def _import(source: str, importer: dict, out: Path, **validation) -> tuple[Params, Path]:
    params = small_params(**validation)
    params = default_params(
        deep_merge(params.model_dump(), {"corpus": {"source": source, "importer": importer}})
    )
    build_corpus(params, out, progress=False)
    return params, out


@pytest.fixture
def exported(tmp_path, good_corpus):
    """The small synthetic corpus's images and manifest, as an importer's input folder."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    df = read_manifest(good_corpus)
    for i, row in df.iterrows():
        df.at[i, "image_path"] = f"images/{row['image_id']}.png"
        (data / df.at[i, "image_path"]).write_bytes(image_bytes(good_corpus / row["image_path"]))
    return data, df


def _jsonl(data: Path, df, with_regions: bool = True, with_qa: bool = True) -> Path:
    keys = (
        "patient_id",
        "split",
        "modality",
        "body_part",
        "report",
        "modality_text",
        "anatomy_text",
        "finding_text",
        "labels",
    )
    path = data / "records.jsonl"
    with open(path, "w") as f:
        for row in df.to_dict("records"):
            rec = {"id": row["image_id"], "image": row["image_path"], **{k: row[k] for k in keys}}
            if with_regions:
                rec["regions"] = [
                    {
                        "bbox": r["bbox"],
                        "label": r["label"],
                        "phrase": r["phrase"],
                        "hard_negatives": r["hard_negatives"],
                        "kind": r["kind"],
                        "size": r["size"],
                        "normalised": True,
                    }
                    for r in row["regions"]
                ]
            if with_qa:
                rec["qa"] = row["qa"]
            f.write(json.dumps(rec) + "\n")
    return path


def test_jsonl_import_with_regions_and_qa_passes(exported, tmp_path):
    data, df = exported
    params, corpus = _import("jsonl", {"path": str(_jsonl(data, df))}, tmp_path / "corpus")
    result = validate_corpus(corpus, params)
    assert result.success, result.summary()
    assert result.source == "jsonl" and not result.regions_required
    ran = {c.suite for c in result.checks}
    assert {"manifest_regions", "manifest_qa", "corpus_files"} <= ran  # present, so checked
    assert "region_fraction" in {s["check"] for s in result.skipped}  # but not required


def test_jsonl_import_without_regions_or_qa_passes_with_the_fitting_suites(exported, tmp_path):
    data, df = exported
    params, corpus = _import("jsonl", {"path": str(_jsonl(data, df, False, False))}, tmp_path / "corpus")
    result = validate_corpus(corpus, params)
    assert result.success, result.summary()
    assert result.stats["n_regions"] == 0 and result.stats["n_qa"] == 0
    assert "manifest_regions" not in {c.suite for c in result.checks}


def test_jsonl_import_with_a_configured_vocabulary_catches_an_unknown_modality(exported, tmp_path):
    data, df = exported
    df.loc[0, "modality"] = "pet_ct"
    params, corpus = _import(
        "jsonl",
        {"path": str(_jsonl(data, df))},
        tmp_path / "corpus",
        vocabulary={"modalities": ["chest_xray", "brain_mri", "abdomen_ct"]},
    )
    result = validate_corpus(corpus, params)
    assert result.failed_checks("critical") == {"modality_vocabulary"}


def test_coco_import_passes(exported, tmp_path):
    data, df = exported
    size = small_params().corpus.image_size  # COCO boxes are pixels of the source image
    categories = sorted({(r["label"], r["kind"]) for regions in df["regions"] for r in regions})
    cat_id = {name: i + 1 for i, (name, _) in enumerate(categories)}
    images, annotations = [], []
    for i, row in enumerate(df.to_dict("records"), start=1):
        images.append({"id": i, "file_name": row["image_path"], "width": size, "height": size})
        for r in row["regions"]:
            x0, y0, x1, y1 = (v * size for v in r["bbox"])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": cat_id[r["label"]],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                }
            )
    ann = data / "annotations.json"
    ann.write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [
                    {"id": cat_id[n], "name": n, "supercategory": "anatomy" if k == "anatomy" else "finding"}
                    for n, k in categories
                ],
            }
        )
    )
    captions = data / "captions.csv"
    with open(captions, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file_name", "report", "patient_id", "split", "modality", "body_part", "labels"])
        for row in df.to_dict("records"):
            w.writerow(
                [
                    row["image_path"],
                    row["report"],
                    row["patient_id"],
                    row["split"],
                    row["modality"],
                    row["body_part"],
                    ";".join(row["labels"]),
                ]
            )
    params, corpus = _import("coco", {"path": str(ann), "captions_csv": str(captions)}, tmp_path / "corpus")
    result = validate_corpus(corpus, params)
    assert result.success, result.summary()
    assert result.regions_required and "region_fraction" not in {s["check"] for s in result.skipped}


@pytest.mark.medpix
@pytest.mark.skipif(not MEDPIX.is_dir(), reason="needs ../shared/data/medpix2-sample")
def test_medpix_sample_passes_with_its_own_vocabulary(tmp_path):
    params = default_params({"corpus": {"source": "medpix", "importer": {"path": str(MEDPIX)}}})
    build_corpus(params, tmp_path / "corpus", progress=False)
    result = validate_corpus(tmp_path / "corpus", params)
    assert result.success, result.summary()
    assert not result.regions_required and result.qa_required and result.stats["n_regions"] == 0
    checked = {c.check for c in result.checks}
    assert {"modality_vocabulary", "label_vocabulary", "label_coverage", "patient_single_split"} <= checked
