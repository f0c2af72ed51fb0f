"""Mentions on synthetic reports against the findings they were written from, and the scorer itself."""

from __future__ import annotations

import numpy as np
import pytest

from regionmed.annotation.mention_scoring import TrueFinding, score_mentions, synthetic_truth
from regionmed.annotation.mentions import Mention
from regionmed.corpus.reports import describe
from regionmed.corpus.synthetic import generate_phantom
from regionmed.corpus.synthetic_source import TEXT_STREAM


def test_synthetic_reports_are_read_back_to_their_findings(extractor, tiny_params):
    """300 synthetic reports (all modalities); the full 4,000 are in benchmarks/bench_mentions.py."""
    syn = tiny_params.corpus.synthetic
    reports, truths = [], []
    for index in range(300):
        phantom = generate_phantom(index, tiny_params.seed, 32, syn)
        text = describe(
            phantom,
            np.random.default_rng([tiny_params.seed, index, TEXT_STREAM]),
            syn.negatives_per_report,
            syn.absent_presence_questions,
        )
        reports.append(text.report)
        truths.append(synthetic_truth(phantom))
    score = score_mentions(truths, extractor.extract_many(reports))
    assert score["counts"]["true"] > 300 and score["counts"]["mentions"] > score["counts"]["true"]
    for name in ("recall", "precision", "side_accuracy", "zone_accuracy", "size_accuracy"):
        assert score[name]["value"] >= 0.95, (name, score[name])
    assert score["negation_error_rate"]["value"] <= 0.01


def _m(label, side=None, zone=None, size=None, negated=False):
    return Mention(label, label, "finding", side, zone, size, negated, False, 0)


def test_the_scorer_counts_misses_inventions_negation_errors_and_wrong_sides():
    truths = [
        [TrueFinding("nodule", "right", "upper", "small"), TrueFinding("mass", "left", "lower", "large")]
    ]
    mentions = [
        [
            _m("nodule", "left", "upper", "small"),  # matched, wrong side; unsupported side
            _m("mass", negated=True),  # the mass is only negated: a miss
            _m("pleural effusion"),  # an absent finding made positive: a negation error
        ]
    ]
    s = score_mentions(truths, mentions)
    assert (s["recall"]["k"], s["recall"]["n"]) == (1, 2)
    assert (s["precision"]["k"], s["precision"]["n"]) == (0, 2)
    assert (s["negation_error_rate"]["k"], s["negation_error_rate"]["n"]) == (1, 3)
    assert (s["side_accuracy"]["value"], s["zone_accuracy"]["value"], s["size_accuracy"]["value"]) == (
        0,
        1,
        1,
    )
    lo, hi = s["recall"]["ci95"]
    assert 0 < lo < 0.5 < hi < 1


def test_the_scorer_prefers_the_best_agreeing_mention_and_needs_equal_lengths():
    truths = [[TrueFinding("nodule", "right", "upper", "small")]]
    s = score_mentions(truths, [[_m("nodule", "right"), _m("nodule", "right", "upper", "small")]])
    assert s["zone_accuracy"]["value"] == 1.0 and s["precision"]["value"] == 1.0
    with pytest.raises(ValueError, match="1 truths but 0"):
        score_mentions(truths, [])
