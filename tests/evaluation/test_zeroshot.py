"""Prompts as data, prompt ensembling, AUROC against scikit-learn, accuracy modes, size buckets, negation."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regionmed.evaluation.zeroshot import (
    auroc,
    by_size_bucket,
    macro_auroc_of,
    multilabel_metrics,
    negation_similarity,
    presence_vs_absence,
    size_matrix,
    zero_shot_scores,
)
from regionmed.prompts.templates import (
    build_prompts,
    class_embeddings,
    label_axes,
    label_text,
    load_prompts,
    modality_prompts,
    presence_absence_embeddings,
)

DIM = 32


def word_vec(word: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(word.encode())).normal(size=DIM)


def bag_of_words(texts: list[str]) -> np.ndarray:
    """A fake text encoder: the sum of fixed random word vectors (so "no" changes the embedding)."""
    return np.stack([sum(word_vec(w) for w in t.lower().split()) for t in texts])


def test_prompt_file_is_complete_and_formats():
    p = load_prompts()
    for key in (
        "templates",
        "normal_templates",
        "modality_templates",
        "presence_templates",
        "absence_templates",
        "vqa_statement_templates",
    ):
        assert len(p[key]) >= 1, key
    assert len(p["templates"]) >= 3 and p["normal_class"] == "no finding"
    for key in (
        "templates",
        "normal_templates",
        "modality_templates",
        "presence_templates",
        "absence_templates",
    ):
        for t in p[key]:
            t.format(label="x", article="a", modality="m")  # no unknown placeholders
    load_prompts()["templates"].clear()
    assert load_prompts()["templates"], "load_prompts must hand out copies"


def test_build_prompts_articles_modality_and_normal_class():
    prompts = build_prompts(["nodule", "pleural effusion", "cardiomegaly", "no finding", "unknown thing"])
    assert "a nodule" in prompts["nodule"] and "there is a nodule" in prompts["nodule"]
    assert "chest x-ray showing a nodule" in prompts["nodule"]
    assert "cardiomegaly" in prompts["cardiomegaly"] and "there is cardiomegaly" in prompts["cardiomegaly"]
    assert "an unknown thing" in prompts["unknown thing"]
    # no modality known for these two: templates needing {modality} are dropped, not half-filled
    assert not any("showing" in t for t in prompts["unknown thing"])
    normal = load_prompts()["normal_templates"]
    assert prompts["no finding"] == [t for t in normal if "{modality}" not in t]
    fixed = build_prompts(["no finding", "nodule"], modality="brain mri")
    assert "normal brain mri" in fixed["no finding"] and "brain mri showing a nodule" in fixed["nodule"]
    own = build_prompts(["mass"], templates=["{label} here", "{label} here"])
    assert own == {"mass": ["mass here"]}


def test_class_embeddings_average_normalised_templates():
    classes = ["nodule", "mass", "no finding"]
    emb = class_embeddings(bag_of_words, classes)
    assert emb.shape == (3, DIM)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    for k, texts in enumerate(build_prompts(classes).values()):
        e = bag_of_words(texts)
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        m = e.mean(axis=0)
        np.testing.assert_allclose(emb[k], m / np.linalg.norm(m), rtol=1e-4, atol=1e-5)


def test_modality_prompts():
    p = modality_prompts(["chest_xray", "abdomen_ct"])
    assert "chest x-ray" in p["chest_xray"] and "an abdominal ct" in p["abdomen_ct"]


def test_zero_shot_scores_are_scaled_cosines():
    rng = np.random.default_rng(0)
    img, cls = rng.normal(size=(5, 8)), rng.normal(size=(3, 8))
    s = zero_shot_scores(img, cls, logit_scale=50.0)
    cos = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (
        cls / np.linalg.norm(cls, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(s, 50 * cos, rtol=1e-5)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=30))
def test_auroc_matches_sklearn_with_ties(pairs):
    from sklearn.metrics import roc_auc_score

    s = np.array([p[0] for p in pairs], float)
    y = np.array([p[1] for p in pairs])
    if y.all() or not y.any():
        assert np.isnan(auroc(s, y))
    else:
        assert auroc(s, y) == pytest.approx(roc_auc_score(y, s))


def test_multilabel_metrics_single_label_argmax_and_skips():
    classes = ["a", "b", "c"]
    scores = np.array([[3, 1, 0], [0, 2, 1], [2, 3, 0], [1, 0, 2]], float)
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]])  # "c" has no positives
    m = multilabel_metrics(scores, targets, classes)
    assert m["accuracy_mode"] == "argmax"
    assert m["accuracy"] == 0.5  # rows 0 and 1 right
    assert m["per_class_accuracy"]["a"] == pytest.approx(1 / 3) and m["per_class_accuracy"]["b"] == 1.0
    assert np.isnan(m["per_class_accuracy"]["c"])
    assert m["n_skipped"] == 1 and m["skipped"] == ["c"] and m["n_classes_scored"] == 2
    assert m["auroc"]["a"] == pytest.approx(auroc(scores[:, 0], targets[:, 0]))
    assert m["macro_auroc"] == pytest.approx((m["auroc"]["a"] + m["auroc"]["b"]) / 2)


def test_macro_auroc_gets_a_bootstrap_interval_over_images():
    """The macro AUROC as a statistic of per-image rows (scores, then targets): the same value as
    multilabel_metrics, an interval around it from resampled images, and a paired difference
    that is clearly positive for a model that separates the classes better."""
    from regionmed.evaluation.bootstrap import bootstrap_ci, paired_difference_ci

    rng = np.random.default_rng(0)
    targets = rng.random((300, 4)) < 0.3
    good = targets + rng.normal(0, 0.6, targets.shape)
    poor = targets + rng.normal(0, 2.0, targets.shape)
    rows_good, rows_poor = np.c_[good, targets], np.c_[poor, targets]
    assert macro_auroc_of(rows_good) == pytest.approx(
        multilabel_metrics(good, targets, list("abcd"))["macro_auroc"]
    )
    ci = bootstrap_ci(rows_good, np.arange(300), n_boot=300, statistic=macro_auroc_of)
    assert ci.low < ci.estimate < ci.high and ci.high - ci.low < 0.1
    diff = paired_difference_ci(rows_good, rows_poor, np.arange(300), n_boot=300, statistic=macro_auroc_of)
    assert diff.estimate == pytest.approx(macro_auroc_of(rows_good) - macro_auroc_of(rows_poor))
    assert diff.low > 0.1
    # a class with no positives in the rows is left out, as in multilabel_metrics
    assert macro_auroc_of(
        np.c_[good[:, :2], np.zeros((300, 1)), targets[:, :2], np.zeros((300, 1))]
    ) == pytest.approx(macro_auroc_of(np.c_[good[:, :2], targets[:, :2]]))


def test_multilabel_top_k_and_threshold_modes():
    classes = ["a", "b", "c"]
    scores = np.array([[0.9, 0.8, 0.1], [0.2, 0.9, 0.3], [0.1, 0.2, 0.7]])
    targets = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    m = multilabel_metrics(scores, targets, classes)
    assert m["accuracy_mode"] == "top_k"
    # row 0 predicts {a, b} (right), row 1 predicts {b, c} (right), row 2 predicts {c} (right)
    assert m["accuracy"] == 1.0 and m["per_class_accuracy"] == {"a": 1.0, "b": 1.0, "c": 1.0}
    t = multilabel_metrics(scores, targets, classes, threshold=0.75)
    assert t["accuracy_mode"] == "threshold"
    # predicted: {a, b}, {b}, {} → only row 0 matches; c is never predicted
    assert t["accuracy"] == pytest.approx(1 / 3) and t["per_class_accuracy"]["c"] == 0.0


def test_by_size_bucket_against_loop_oracle():
    rng = np.random.default_rng(4)
    n, classes = 60, ["nodule", "mass", "no finding"]
    rows = []
    for i in range(n):
        regions = []
        for label in ("nodule", "mass"):
            if rng.random() < 0.4:
                regions.append(
                    {
                        "label": label,
                        "kind": "finding",
                        "size": str(rng.choice(["subtle", "small", "large"])),
                        "bbox": [0, 0, 1, 1],
                        "phrase": label,
                    }
                )
        regions.append(
            {"label": "heart", "kind": "anatomy", "size": None, "bbox": [0, 0, 1, 1], "phrase": "the heart"}
        )
        rows.append({"image_id": str(i), "regions": regions})
    targets = np.array([[any(r["label"] == c for r in row["regions"]) for c in classes[:2]] for row in rows])
    targets = np.c_[targets, ~targets.any(axis=1)]
    scores = rng.normal(size=(n, 3)) + targets
    sizes = size_matrix(rows, classes)
    out = by_size_bucket(scores, targets, sizes, classes)
    for b in ("subtle", "small", "large"):
        for j, c in enumerate(classes):
            pos = [
                i
                for i, row in enumerate(rows)
                if any(r["label"] == c and r["size"] == b for r in row["regions"])
            ]
            neg = [i for i in range(n) if not targets[i, j]]
            want = auroc(np.r_[scores[pos, j], scores[neg, j]], np.r_[np.ones(len(pos)), np.zeros(len(neg))])
            got = out[b]["auroc"][c]
            assert (np.isnan(got) and np.isnan(want)) or got == pytest.approx(want)
            assert out[b]["n_positives"][c] == len(pos)
        assert np.isnan(out[b]["auroc"]["no finding"])  # never has a size: skipped
        assert out[b]["n_skipped"] >= 1


def test_presence_vs_absence_and_negation_similarity():
    classes = ["nodule", "mass"]
    pos, neg = presence_absence_embeddings(bag_of_words, classes)
    assert pos.shape == neg.shape == (2, DIM)
    rng = np.random.default_rng(5)
    img = rng.normal(size=(7, DIM))
    p = presence_vs_absence(img, pos, neg, logit_scale=10.0)
    sp, sa = zero_shot_scores(img, pos, 10.0), zero_shot_scores(img, neg, 10.0)
    np.testing.assert_allclose(p, np.exp(sp) / (np.exp(sp) + np.exp(sa)), rtol=1e-5)
    # an image equal to the "present" embedding prefers presence
    assert (presence_vs_absence(pos, pos, neg).diagonal() > 0.5).all()
    sim = negation_similarity(pos, neg)
    assert sim.shape == (2,) and (sim < 0.999).all()

    # an encoder that ignores negation words scores similarity 1
    def deaf(texts):
        return bag_of_words(
            [
                " ".join(
                    w
                    for w in t.split()
                    if w not in {"no", "there", "is", "evidence", "of", "a", "an", "present", "seen"}
                )
                for t in texts
            ]
        )

    np.testing.assert_allclose(
        negation_similarity(*presence_absence_embeddings(deaf, classes)), 1.0, rtol=1e-5
    )


def test_axis_labels_classify_along_each_axis_with_their_own_prompt_text():
    """MedPix-style ``axis:class`` labels: prompts from the label's text; per-axis accuracy over the
    images that carry the axis; no presence/absence test (nothing is a finding)."""
    import pandas as pd

    from regionmed.evaluation.suite import ModelEvaluation, score_zero_shot

    prompts = build_prompts(["plane:axial", "modality:ct"])
    assert prompts["plane:axial"][0] == "an axial image" and "this is a CT scan" in prompts["modality:ct"]
    assert label_axes(["plane:axial", "nodule", "modality:mri", "plane:coronal"]) == {
        "modality": ["modality:mri"],
        "plane": ["plane:axial", "plane:coronal"],
    }
    assert label_text("modality:ct") == "a CT scan"
    assert label_text("body_part:pelvis") == "an image, body part pelvis"  # outside the table: a plain text

    keys = {"axial": 0, "coronal": 1, "CT": 2, "MRI": 3}

    class Words:  # a text embeds as the key words it contains; an image as the words of its labels
        logit_scale = 10.0

        def texts(self, texts):
            out = np.full((len(texts), 8), 1e-3)
            for i, t in enumerate(texts):
                for w, k in keys.items():
                    out[i, k] += w in t.replace(".", " ").split()
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    test = pd.DataFrame(
        {
            "image_id": ["a", "b", "c"],
            "modality": ["ct", "mri", "ct"],
            "labels": [["modality:ct", "plane:axial"], ["modality:mri", "plane:coronal"], ["modality:ct"]],
            "regions": [[], [], []],
        }
    )
    images = np.zeros((3, 8))
    images[0, [0, 2]] = 1  # axial CT: right on both axes
    images[1, [0, 3]] = 1  # coronal MRI seen as axial: wrong plane
    images[2, [2]] = 1  # CT without a plane label
    ev = ModelEvaluation()
    score_zero_shot(
        ev, Words(), test, images / np.linalg.norm(images, axis=1, keepdims=True), test["image_id"].to_numpy()
    )
    np.testing.assert_array_equal(ev.items["zeroshot/axis_modality_accuracy"].values, [1, 1, 1])
    np.testing.assert_array_equal(ev.items["zeroshot/axis_plane_accuracy"].values, [1, 0, np.nan])
    assert ev.point["zeroshot/axis_plane_chance"] == 0.5
    assert "zeroshot/modality_accuracy" in ev.items  # the corpus's modality column, kept beside the axis
    assert not any(k.startswith("zeroshot/presence") for k in ev.items)
