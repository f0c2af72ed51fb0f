"""Anatomy phrases with given boxes are scored for grounding apart from findings, on hand-made boxes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from regionmed.evaluation.anatomy_grounding import anatomy_grounding, given_anatomy_regions
from regionmed.evaluation.gate_relative import unmeasured_metrics
from regionmed.evaluation.suite import evaluate_model
from regionmed.evaluation.summary import summarise

GRID = 4
RIGHT_LUNG = [0.05, 0.1, 0.45, 0.9]  # the patient's right is on the image's left
LEFT_LUNG = [0.55, 0.1, 0.95, 0.9]
NODULE = [0.6, 0.6, 0.7, 0.7]


def region(bbox, label, kind, origin="given"):
    return {
        "bbox": bbox,
        "label": label,
        "phrase": f"the {label}" if kind == "anatomy" else f"a {label} in the left lung",
        "kind": kind,
        "hard_negatives": [],
        "size": None if kind == "anatomy" else "small",
        "origin": origin,
    }


class PointAt:
    """An encoder whose heatmap peaks at the cell holding the centre of ``where[phrase]`` and whose box
    is that box: a model that grounds exactly as told. Embeddings are fixed random unit vectors."""

    logit_scale = 10.0

    def __init__(self, where: dict[str, list[float]]):
        self.where = where

    def ground(self, pixels, index, phrases):
        heat = np.zeros((len(phrases), GRID, GRID))
        boxes = np.asarray([self.where[p] for p in phrases], float).reshape(-1, 4)
        rows = np.minimum(((boxes[:, 1] + boxes[:, 3]) / 2 * GRID).astype(int), GRID - 1)
        cols = np.minimum(((boxes[:, 0] + boxes[:, 2]) / 2 * GRID).astype(int), GRID - 1)
        heat[np.arange(len(phrases)), rows, cols] = 1.0
        return heat, boxes

    def _unit(self, n: int, seed: int) -> np.ndarray:
        x = np.random.default_rng(seed).normal(size=(n, 8))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    def images(self, pixels):
        return self._unit(len(pixels), 1)

    def texts(self, texts):
        return self._unit(len(texts), len(texts))

    def regions(self, pixels, index, boxes):
        return self._unit(len(boxes), 2)


def frame(regions_per_image: list[list[dict]], split: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_id": [f"{split}-{i}" for i in range(len(regions_per_image))],
            "report": [f"report {i}" for i in range(len(regions_per_image))],
            "modality": ["chest_xray"] * len(regions_per_image),
            "labels": [["pneumonia"] if i % 2 else ["no finding"] for i in range(len(regions_per_image))],
            "regions": regions_per_image,
            "qa": [[] for _ in regions_per_image],
        }
    )


def lungs() -> list[dict]:
    return [region(RIGHT_LUNG, "right lung", "anatomy"), region(LEFT_LUNG, "left lung", "anatomy")]


def test_only_given_anatomy_boxes_are_measured():
    test = frame(
        [
            [*lungs(), region(NODULE, "nodule", "finding")],
            [region(RIGHT_LUNG, "right lung", "anatomy", origin="annotated")],
        ],
        "test",
    )
    rows = given_anatomy_regions(test)
    assert list(rows["phrase"]) == ["the right lung", "the left lung"]
    assert list(rows["image_index"]) == [0, 0]


def test_a_model_that_finds_the_lungs_scores_and_one_that_swaps_them_does_not():
    test, train = frame([lungs(), lungs()], "test"), frame([lungs()], "train")
    rows = given_anatomy_regions(test)
    right = anatomy_grounding(
        PointAt({"the right lung": RIGHT_LUNG, "the left lung": LEFT_LUNG}), rows, None, train
    )
    for name in ("lenient", "strict", "iou>0.3", "iou>0.5", "laterality"):
        assert right[f"grounding/anatomy/{name}"][0].tolist() == [1.0] * 4, name
    # the text prior of "the right lung" is the mean train right lung: it finds these lungs too
    assert right["prior/anatomy/strict"][0].tolist() == [1.0] * 4
    assert 0 < right["chance/anatomy/lenient"][0][0] < 1
    assert list(right["grounding/anatomy/lenient"][1]) == ["test-0", "test-0", "test-1", "test-1"]

    swapped = anatomy_grounding(
        PointAt({"the right lung": LEFT_LUNG, "the left lung": RIGHT_LUNG}), rows, None, train
    )
    for name in ("lenient", "strict", "iou>0.3", "laterality"):
        assert swapped[f"grounding/anatomy/{name}"][0].tolist() == [0.0] * 4, name


def test_a_corpus_whose_only_boxes_are_lungs_gets_anatomy_keys_and_no_finding_keys():
    test, train = frame([lungs(), lungs(), lungs()], "test"), frame([lungs(), []], "train")
    enc = PointAt({"the right lung": RIGHT_LUNG, "the left lung": LEFT_LUNG})
    results = {
        name: evaluate_model(enc, test, np.zeros((3, 1, 8, 8)), train, np.zeros((2, 1, 8, 8)))
        for name in ("regionmed", "baseline")
    }
    keys = set(results["regionmed"].items)
    assert {"grounding/anatomy/lenient", "grounding/anatomy/laterality", "prior/anatomy/strict"} <= keys
    assert not {k for k in keys if k.startswith(("grounding/full", "grounding/locfree", "hardneg/"))}
    assert "grounding/laterality" not in keys and "prior/full/lenient" not in keys

    summary = summarise(results, n_boot=50, alpha=0.05, seed=0)
    assert summary["regionmed"]["grounding/anatomy/strict"]["value"] == pytest.approx(1.0)
    assert summary["vs_prior"]["regionmed/grounding/anatomy/lenient"]["value"] == pytest.approx(0.0)
    # the gate skips finding grounding (not measurable here) and still reads anatomy grounding
    assert unmeasured_metrics(summary, ["grounding/full/lenient", "grounding/anatomy/lenient"]) == {
        "grounding/full/lenient"
    }


def test_finding_keys_are_unchanged_by_anatomy_boxes_beside_them():
    with_lungs = frame([[*lungs(), region(NODULE, "nodule", "finding")]] * 2, "test")
    without = frame([[region(NODULE, "nodule", "finding")]] * 2, "test")
    train = frame([[*lungs(), region(NODULE, "nodule", "finding")]], "train")
    where = {"the right lung": RIGHT_LUNG, "the left lung": LEFT_LUNG}
    where |= dict.fromkeys(("a nodule in the left lung", "a nodule", "a nodule in the right lung"), NODULE)
    pixels = np.zeros((2, 1, 8, 8))
    a = evaluate_model(PointAt(where), with_lungs, pixels, train, pixels[:1])
    b = evaluate_model(PointAt(where), without, pixels, train, pixels[:1])
    assert set(b.items) < set(a.items)
    assert {k for k in a.items if "anatomy" in k} == set(a.items) - set(b.items)
    for k in b.items:
        np.testing.assert_array_equal(a.items[k].values, b.items[k].values, err_msg=k)
    # a finding corpus without anatomy boxes: the gate counts anatomy grounding as unmeasured
    summary = summarise({"regionmed": b, "baseline": b}, n_boot=20, alpha=0.05, seed=0)
    assert unmeasured_metrics(summary, ["grounding/anatomy/lenient", "grounding/full/typo"]) == {
        "grounding/anatomy/lenient"
    }
