"""Each test breaks its own copy of a valid corpus in one way; validation must name exactly that check."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from helpers.validation_corpus import edit_build_summary, store_image
from PIL import Image

from regionmed.corpus.images import sha256_bytes
from regionmed.corpus.shards import image_bytes, split_member
from regionmed.validation import validate_corpus


def failed(result, severity="critical") -> set[str]:
    return result.failed_checks(severity)


def examples_of(result, check: str) -> str:
    return json.dumps([c.examples for c in result.checks if c.check == check and not c.success])


def test_the_small_valid_corpus_passes_every_expectation(good_corpus, val_params):
    result = validate_corpus(good_corpus, val_params)
    assert result.success, result.summary()
    assert failed(result, None) == set() and result.skipped == []
    assert len(result.checks) >= 45
    assert {
        "manifest_images",
        "manifest_regions",
        "manifest_labels",
        "manifest_qa",
        "corpus_splits",
        "corpus_patients",
        "corpus_label_coverage",
        "corpus_summary",
        "corpus_files",
    } <= {c.suite for c in result.checks}


def test_box_outside_the_image(broken_copy, val_params):
    def edit(df, _):
        row = df.at[3, "regions"]
        row[0]["bbox"] = [row[0]["bbox"][0], row[0]["bbox"][1], 1.3, row[0]["bbox"][3]]
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert not result.success
    assert failed(result) == {"box_inside_image"}
    assert "syn-000003" in examples_of(result, "box_inside_image")


def test_inverted_and_tiny_boxes(broken_copy, val_params):
    def edit(df, _):
        x0, y0, x1, y1 = df.at[0, "regions"][0]["bbox"]
        df.at[0, "regions"][0]["bbox"] = [x1, y0, x0, y1]
        df.at[1, "regions"][0]["bbox"] = [0.5, 0.5, 0.5001, 0.5001]
        return df

    assert failed(validate_corpus(broken_copy(edit), val_params)) == {"box_ordered", "box_min_area"}


def test_duplicated_image(broken_copy, val_params):
    def edit(df, corpus):
        store_image(corpus, df.at[7, "image_path"], image_bytes(corpus / df.at[2, "image_path"]))
        df.at[7, "sha256"] = df.at[2, "sha256"]
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert failed(result) == {"sha256_unique"}
    assert "syn-000007" in examples_of(result, "sha256_unique")


def test_patient_leaked_into_two_splits(broken_copy, val_params):
    def edit(df, _):
        train_patient = df.loc[df["split"] == "train", "patient_id"].iloc[0]
        df.loc[df.index[df["split"] == "test"][0], "patient_id"] = train_patient
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert failed(result) == {"patient_single_split"}
    assert "test" in examples_of(result, "patient_single_split")


def test_label_missing_in_test(broken_copy, val_params):
    def edit(df, _):
        test = df["split"] == "test"
        df.loc[test, "labels"] = df.loc[test, "labels"].map(
            lambda labels: [x for x in labels if x != "nodule"] or ["no finding"]
        )
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert failed(result) == {"label_coverage"}
    assert '"label": "nodule", "split": "test"' in examples_of(result, "label_coverage")


@pytest.mark.parametrize("report", ["", "   \n "])
def test_empty_report(broken_copy, val_params, report):
    def edit(df, _):
        df.at[5, "report"] = report
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert failed(result) == {"text_length"}
    assert "syn-000005" in examples_of(result, "text_length")


def test_stored_image_of_the_wrong_size(broken_copy, val_params):
    def edit(df, corpus):
        buf = io.BytesIO()
        Image.fromarray(np.zeros((48, 48), np.uint8)).save(buf, format="PNG")
        store_image(corpus, df.at[4, "image_path"], buf.getvalue())
        df.at[4, "sha256"] = sha256_bytes(buf.getvalue())
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert failed(result) == {"image_size"}
    assert "syn-000004" in examples_of(result, "image_size")


def test_manifest_width_differs_from_the_configured_size(broken_copy, val_params):
    def edit(df, _):
        df.at[6, "width"] = 96
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert failed(result) == {"image_size"}
    assert "syn-000006" in examples_of(result, "image_size")


def test_corpus_built_at_another_size_than_params_say(good_corpus, val_params):
    # model_copy skips validation: other sections (the model's input size) need not follow here
    params = val_params.model_copy(update={"corpus": val_params.corpus.model_copy(update={"image_size": 96})})
    assert failed(validate_corpus(good_corpus, params)) == {"image_size"}


def test_file_changed_or_missing_after_the_build(broken_copy, val_params):
    def edit(df, corpus):
        store_image(corpus, df.at[1, "image_path"], b"not the image")
        store_image(corpus, df.at[2, "image_path"], None)

    result = validate_corpus(broken_copy(edit), val_params)
    assert failed(result) == {"sha256_matches_file", "image_size"}
    text = examples_of(result, "sha256_matches_file")
    assert "sha256_mismatch" in text and "missing" in text


def test_unknown_modality_and_label(broken_copy, val_params):
    def edit(df, _):
        df.at[0, "modality"] = "ultrasound"
        df.at[1, "labels"] = ["unicorn"]
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    # an observed label joins the coverage table too, so the unknown one is also missing from test
    assert failed(result) == {"modality_vocabulary", "label_vocabulary", "label_coverage"}
    assert "ultrasound" in examples_of(result, "modality_vocabulary")
    assert "unicorn" in examples_of(result, "label_vocabulary")


def test_rejected_fraction_above_the_ceiling(broken_copy, val_params):
    corpus = broken_copy(lambda df, c: None)
    edit_build_summary(corpus, reject_fraction=0.2)
    assert failed(validate_corpus(corpus, val_params)) == {"reject_fraction"}


def test_too_few_images_with_regions(broken_copy, val_params):
    def edit(df, _):
        df["regions"] = [[] if i < 100 else r for i, r in enumerate(df["regions"])]
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert failed(result) == {"region_fraction"}


def test_missing_column_is_reported_not_raised(broken_copy, val_params):
    import pyarrow.parquet as pq

    corpus = broken_copy(lambda df, c: None)
    table = pq.read_table(corpus / "manifest.parquet")
    pq.write_table(table.drop_columns(["finding_text"]), corpus / "manifest.parquet")
    result = validate_corpus(corpus, val_params)
    assert "schema_types" in failed(result) and "text_length" in failed(result)
    assert "finding_text" in examples_of(result, "schema_types")


def test_a_failed_summary_bound_shows_the_observed_value_against_the_bound(good_corpus, val_params):
    n = json.loads((good_corpus / "build.json").read_text())["n_kept"]
    from helpers.params import default_params

    from regionmed.params import deep_merge

    params = default_params(
        deep_merge(val_params.model_dump(), {"validation": {"thresholds": {"min_images": 100_000}}})
    )
    result = validate_corpus(good_corpus, params)
    assert failed(result) == {"min_images"}
    line = next(c.one_line() for c in result.critical_failures)
    assert line.startswith(
        "corpus_summary.min_images[n_images] (critical): "
    )  # the id docs/monitoring.md shows
    assert f"observed {n} vs need >= 100000" in line, line


def test_a_shard_that_no_longer_reads_names_its_images_and_only_them(broken_copy, val_params):
    def edit(df, corpus):
        shard = split_member(df.at[0, "image_path"])[0]
        with open(corpus / shard, "r+b") as f:  # the first member's header: garbage
            f.write(b"\xff" * 512)
        return None

    result = validate_corpus(broken_copy(edit), val_params)
    assert "sha256_matches_file" in failed(result)
    text = examples_of(result, "sha256_matches_file")
    assert "unreadable" in text and "syn-000000" in text
