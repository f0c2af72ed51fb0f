"""The suite files, severity from params, and suites that fit corpora without regions or QA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.validation_corpus import small_params

from regionmed.params import load_params
from regionmed.validation import validate_corpus
from regionmed.validation.suites import known_checks, load_suites, resolve_profile, suite_files

REPO = Path(__file__).resolve().parents[2]
SUITES = REPO / "expectations"
FRAMES = {
    "schema",
    "images",
    "regions",
    "labels",
    "qa",
    "summary",
    "splits",
    "patients",
    "label_coverage",
    "files",
}


def test_every_suite_file_is_gx_suite_json_with_named_checks():
    import great_expectations as gx

    for path in suite_files(SUITES):
        raw = json.loads(path.read_text())
        suite = gx.ExpectationSuite(**raw)  # the exact round trip the stage does
        assert suite.name == path.stem
        assert raw["meta"]["frame"] in FRAMES
        for exp in raw["expectations"]:
            assert exp["meta"]["check"] and exp.get("description"), exp
            assert "severity" not in exp, "severity comes from params.yaml, not from the suite file"


def test_every_suite_parameter_has_a_value_in_params_yaml():
    params = load_params(REPO / "params.yaml")
    suites = load_suites(SUITES, params, resolve_profile(params, "synthetic"))
    assert all(not s.skipped for s in suites)  # synthetic: nothing skipped, every $PARAMETER filled
    assert set(params.validation.severity) <= known_checks(SUITES)


def test_severity_comes_from_params(broken_copy):
    def edit(df, _):
        df.at[0, "regions"][0]["bbox"] = [0.1, 0.1, 1.5, 0.2]
        return df

    corpus = broken_copy(edit)
    result = validate_corpus(corpus, small_params(severity={"box_inside_image": "warning"}))
    assert result.success and [c.check for c in result.warnings] == ["box_inside_image"]
    assert not validate_corpus(corpus, small_params()).success


def test_a_severity_for_an_unknown_check_is_an_error(good_corpus):
    with pytest.raises(ValueError, match="box_inside_imag"):
        validate_corpus(good_corpus, small_params(severity={"box_inside_imag": "warning"}))


def test_thresholds_come_from_params(good_corpus):
    result = validate_corpus(good_corpus, small_params(thresholds={"min_label_count": 10_000}))
    assert result.failed_checks("critical") == {"label_coverage"}


def _strip(df, _, source="jsonl"):
    df["regions"] = [[] for _ in range(len(df))]
    df["qa"] = [[] for _ in range(len(df))]
    df["source"] = source
    return df


def test_a_corpus_without_regions_or_qa_passes_with_the_fitting_suites(broken_copy):
    result = validate_corpus(broken_copy(_strip), small_params())
    assert result.success, result.summary()
    assert not result.regions_required and not result.qa_required
    skipped = {(s["suite"], s["check"]) for s in result.skipped}
    assert ("corpus_summary", "region_fraction") in skipped and ("corpus_summary", "qa_fraction") in skipped
    assert ("manifest_regions", "box_inside_image") in skipped and ("manifest_qa", "qa_text") in skipped
    # an imported source has no built-in vocabulary: the in-set checks are skipped, and say why
    assert ("manifest_images", "modality_vocabulary") in skipped
    assert {c.suite for c in result.checks} >= {"manifest_images", "corpus_patients", "corpus_files"}


def test_a_synthetic_corpus_stripped_of_regions_fails(broken_copy):
    result = validate_corpus(broken_copy(lambda df, c: _strip(df, c, "synthetic")), small_params())
    assert result.failed_checks("critical") == {"region_fraction", "qa_fraction"}


def test_regions_can_be_required_and_vocabularies_configured_for_imported_data(broken_copy):
    params = small_params(regions="required", vocabulary={"modalities": ["chest_xray", "brain_mri"]})
    result = validate_corpus(broken_copy(_strip), params)
    assert result.failed_checks("critical") == {"region_fraction", "modality_vocabulary"}


@pytest.mark.slow  # a 4000-image build (~15 s); benchmarks/bench_validation.py times the same run
def test_the_default_synthetic_corpus_passes(tmp_path):
    """The corpus `dvc repro` builds with the repository's params.yaml (4000 images)."""
    from regionmed.corpus.build import build_corpus

    params = load_params(REPO / "params.yaml")
    build_corpus(params, tmp_path / "corpus", progress=False)
    result = validate_corpus(tmp_path / "corpus", params)
    assert result.success and not result.warnings and not result.skipped, result.summary()
    assert result.stats["n_images"] == params.corpus.synthetic.n_images
