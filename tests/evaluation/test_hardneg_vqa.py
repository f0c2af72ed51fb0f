"""Hard-negative discrimination against a loop oracle, swap types on corpus phrases, VQA pieces."""

from __future__ import annotations

import numpy as np
import pytest

from regionmed.corpus.phrases import Location, hard_negatives, region_phrase
from regionmed.evaluation.hardneg import hard_negative_discrimination, pad_negatives, swap_type
from regionmed.evaluation.vqa import (
    answer_by_similarity,
    closed_answer_sets,
    flatten_qa,
    majority_answers,
    qa_features,
    qa_statements,
    train_answer_head,
    vqa_accuracy,
)


def test_hard_negative_discrimination_matches_loop_oracle():
    rng = np.random.default_rng(0)
    n, m, d = 25, 4, 6
    region, phrase, negs = rng.normal(size=(n, d)), rng.normal(size=(n, d)), rng.normal(size=(n, m, d))
    phrase += 1.5 * region  # mostly separable
    mask = rng.random((n, m)) < 0.7
    mask[0] = False  # a region without negatives
    types = rng.choice(["laterality", "size", "finding"], size=(n, m))
    out = hard_negative_discrimination(region, phrase, negs, mask, types)

    def cos(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    want, pairs = [], {}
    for i in range(n):
        t = cos(region[i], phrase[i])
        js = np.flatnonzero(mask[i])
        want.append(np.nan if js.size == 0 else float(all(t > cos(region[i], negs[i, j]) for j in js)))
        for j in js:
            pairs.setdefault(types[i, j], []).append(t > cos(region[i], negs[i, j]))
    np.testing.assert_array_equal(out["per_region"], want)
    assert out["n_regions"] == n - 1 and out["accuracy"] == pytest.approx(np.nanmean(want))
    assert np.isnan(out["margin"][0])
    for k, v in pairs.items():
        assert out["by_type"][k] == pytest.approx(np.mean(v)) and out["n_by_type"][k] == len(v)


def test_tie_fails_and_padding_helper():
    e = np.array([[1.0, 0.0]])
    out = hard_negative_discrimination(e, e, e[:, None, :])  # negative identical to the true phrase
    assert out["per_region"].tolist() == [0.0] and out["margin"].tolist() == [0.0]
    padded, mask = pad_negatives([["a", "b"], [], ["c"]])
    assert padded == [["a", "b"], ["", ""], ["c", ""]] and mask.tolist() == [[1, 1], [0, 0], [1, 0]]


def test_swap_type_on_corpus_hard_negatives():
    """Every negative the corpus rules make is classified as the attribute that was changed."""
    cases = [
        ("nodule", "small", Location("the {side} {zone} zone", "right", "upper", "chest"), ["mass"]),
        ("cardiomegaly", "subtle", None, ["nodule"]),
        ("kidney cyst", "large", Location("the {side} kidney", "left", None, "abdomen"), ["liver lesion"]),
        (
            "liver lesion",
            "subtle",
            Location("the {side} lobe of the liver", "right", None, "abdomen"),
            ["kidney cyst"],
        ),
        (
            "hemorrhage",
            "small",
            Location("the {side} {zone} lobe", "left", "occipital", "head"),
            ["brain lesion"],
        ),
    ]
    for finding, size, loc, others in cases:
        true = region_phrase(finding, size, loc)
        negs = hard_negatives(finding, size, loc, others)
        kinds = [swap_type(true, n) for n in negs]
        expected = (["laterality"] if loc is not None else []) + ["size", "finding"]
        assert kinds == expected, (true, negs, kinds)
    assert swap_type("the right lung", "the left lung") == "laterality"
    assert swap_type("the right lung", "the heart") == "finding"
    assert (
        swap_type("a small nodule in the right upper zone", "a small nodule in the right lower zone")
        == "location"
    )
    assert (
        swap_type("a small nodule in the right upper zone", "a large mass in the right upper zone") == "other"
    )
    assert swap_type("a nodule", "a nodule") == "other"


QA = [
    {
        "image_id": "1",
        "qa": [
            {"question": "What imaging modality is this?", "answer": "x-ray", "type": "modality"},
            {"question": "How many findings are there?", "answer": "10", "type": "count"},
            {"question": "Is there a mass?", "answer": "no", "type": "presence"},
        ],
    },
    {
        "image_id": "2",
        "qa": [
            {"question": "What imaging modality is this?", "answer": "ct", "type": "modality"},
            {"question": "How many findings are there?", "answer": "2", "type": "count"},
            {"question": "Is there a mass?", "answer": "no", "type": "presence"},
            {"question": "On which side is the mass?", "answer": "left", "type": "location"},
        ],
    },
]


def test_answer_sets_flatten_majority_statements():
    flat = flatten_qa(QA)
    assert len(flat) == 7 and flat[0]["image_id"] == "1"
    sets = closed_answer_sets(flat)
    assert sets == {
        "count": ["2", "10"],
        "location": ["left"],
        "modality": ["ct", "x-ray"],
        "presence": ["no"],
    }
    assert majority_answers(flat)["presence"] == "no" and majority_answers(flat)["modality"] == "ct"
    assert qa_statements("Is there a mass?", ["yes", "no"]) == ["Is there a mass? yes", "Is there a mass? no"]


def test_answer_by_similarity_shared_and_per_question_with_mask():
    st = np.array([[1.0, 0.0], [0.0, 1.0]])
    img = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert answer_by_similarity(img, st).tolist() == [0, 1]
    per_q = np.stack([st, st[::-1]])
    assert answer_by_similarity(img, per_q).tolist() == [0, 0]
    assert answer_by_similarity(img, per_q, mask=np.array([[True, True], [False, True]])).tolist() == [0, 1]


def test_answer_head_learns_a_separable_rule_and_accuracy_per_type():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    y = np.where(x[:, 0] > 0, "yes", "no")
    head = train_answer_head(x[:150], y[:150], C=10.0)
    pred = head.predict(x[150:])
    assert (pred == y[150:]).mean() > 0.9
    const = train_answer_head(x[:3], ["x-ray"] * 3)
    assert const.predict(x[:2]).tolist() == ["x-ray", "x-ray"]
    acc = vqa_accuracy(["yes", "no", "2"], ["yes", "yes", "2"], ["presence", "presence", "count"])
    assert acc == {
        "accuracy": pytest.approx(2 / 3),
        "n": 3,
        "accuracy/count": 1.0,
        "n/count": 1,
        "accuracy/presence": 0.5,
        "n/presence": 2,
    }
    f = qa_features(x[:4], x[4:8], "concat")
    assert f.shape == (4, 10) and qa_features(x[:4], None).shape == (4, 5)
    assert qa_features(x[:4], x[4:8], "product").shape == (4, 10)
