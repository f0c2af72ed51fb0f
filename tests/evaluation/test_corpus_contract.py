"""The evaluation helpers on rows made by the real phantom generator and report writer (no build)."""

from __future__ import annotations

import numpy as np
import pytest

from regionmed.corpus.phrases import has_laterality, swap_laterality
from regionmed.corpus.schema import NO_FINDING, QA_TYPES, SIZE_BUCKETS
from regionmed.evaluation.grounding import laterality_accuracy, text_prior_pointing, uniform_chance_pointing
from regionmed.evaluation.hardneg import swap_type
from regionmed.evaluation.vqa import closed_answer_sets, flatten_qa
from regionmed.evaluation.zeroshot import label_matrix, size_matrix


@pytest.fixture(scope="module")
def rows():
    from helpers.params import default_section

    from regionmed.corpus.reports import describe
    from regionmed.corpus.synthetic import generate_phantom

    p = default_section("corpus.synthetic")
    out = []
    for i in range(240):
        ph = generate_phantom(i, 0, 32, p)
        t = describe(
            ph, np.random.default_rng([0, i, 1]), p.negatives_per_report, p.absent_presence_questions
        )
        out.append(
            {
                "image_id": f"syn-{i}",
                "labels": t.labels,
                "regions": [r.to_dict() for r in t.regions],
                "qa": [q.to_dict() for q in t.qa],
            }
        )
    return out


def test_every_corpus_hard_negative_has_a_single_attribute_type(rows):
    for row in rows:
        for r in row["regions"]:
            kinds = [swap_type(r["phrase"], n) for n in r["hard_negatives"]]
            assert set(kinds) <= {"laterality", "size", "finding"}, (r["phrase"], r["hard_negatives"], kinds)


def test_label_and_size_matrices_agree(rows):
    from regionmed.corpus.atlas import ALL_FINDINGS

    classes = [*ALL_FINDINGS, NO_FINDING]
    y = label_matrix(rows, classes)
    sizes = size_matrix(rows, classes)
    has_size = np.vectorize(bool, otypes=[bool])(sizes)
    np.testing.assert_array_equal(has_size[:, :-1], y[:, :-1])
    assert not has_size[:, -1].any() and (y.sum(axis=1) >= 1).all()
    assert {b for s in sizes.ravel() for b in s} <= set(SIZE_BUCKETS)


def test_text_prior_beats_chance_and_laterality_oracle(rows):
    train, test = rows[:160], rows[160:]
    regions = [r for row in train for r in row["regions"]]
    items = [r for row in test for r in row["regions"]]
    boxes = np.array([r["bbox"] for r in items])
    grid = (8, 8)
    prior = text_prior_pointing(
        [r["phrase"] for r in items], boxes, regions, grid, labels=[r["label"] for r in items]
    )
    chance = uniform_chance_pointing(boxes, grid)
    assert prior["lenient"].mean() > chance["lenient"].mean()
    assert {"words", "organ", "label"} <= set(prior["source"].tolist())
    # a perfect model: the true phrase peaks on its box, the swapped one on the mirrored box
    sided = [r for r in items if has_laterality(r["phrase"]) and swap_laterality(r["phrase"]) != r["phrase"]]
    b = np.array([r["bbox"] for r in sided])

    def heat(bx):
        return np.stack(
            [
                np.pad(np.ones((1, 1)), ((int(y * 8), 7 - int(y * 8)), (int(x * 8), 7 - int(x * 8))))
                for x, y in zip(
                    np.minimum((bx[:, 0] + bx[:, 2]) / 2, 0.999),
                    np.minimum((bx[:, 1] + bx[:, 3]) / 2, 0.999),
                    strict=True,
                )
            ]
        )

    mirrored = b.copy()
    mirrored[:, [0, 2]] = 1 - b[:, [2, 0]]
    out = laterality_accuracy(heat(b), heat(mirrored), b)
    assert out["n_scored"] > 0 and out["accuracy"] == 1.0 and out["flip_rate"] == 1.0


def test_closed_answer_sets_on_corpus_qa(rows):
    sets = closed_answer_sets(flatten_qa(rows))
    assert set(sets) <= set(QA_TYPES) and sets["presence"] == ["no", "yes"]
    assert set(sets["location"]) <= {"left", "right"} and sets["count"][0] == "0"
