"""The validation of regions the annotate_regions stage drew: origin values, confidence in 0..1, what
placed the box, and the share of annotated images as a warning."""

from __future__ import annotations

from helpers.validation_corpus import small_params

from regionmed.validation import validate_corpus


def test_unknown_origin_and_confidence_outside_0_1_fail_by_name(broken_copy, val_params):
    def edit(df, _):
        df.at[2, "regions"][0]["origin"] = "guessed"
        df.at[4, "regions"][0]["confidence"] = 1.5
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert not result.success
    assert result.failed_checks("critical") == {"region_origin", "region_confidence"}


def test_an_unknown_placement_fails_by_name(broken_copy, val_params):
    def edit(df, _):
        df.at[1, "regions"][0].update(origin="annotated", confidence=0.3, placed_by="guess")
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert result.failed_checks("critical") == {"region_placed_by"}


def test_a_corpus_mostly_annotated_by_the_engine_is_a_warning_not_a_stop(broken_copy):
    def edit(df, _):
        for i in df.index:
            for r in df.at[i, "regions"]:
                r["origin"], r["confidence"] = "annotated", 0.4
        return df

    params = small_params(severity={"annotated_share": "warning"})  # as params.yaml sets it
    result = validate_corpus(broken_copy(edit), params)
    assert result.success, result.summary()
    assert result.failed_checks("warning") == {"annotated_share"}


def test_annotated_regions_within_bounds_pass(broken_copy, val_params):
    def edit(df, _):
        df.at[1, "regions"][0].update(origin="annotated", confidence=0.25, placed_by="corpus_anatomy")
        return df

    result = validate_corpus(broken_copy(edit), val_params)
    assert result.success and not result.failed_checks(None), result.summary()
