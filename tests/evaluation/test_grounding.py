"""Pointing game, IoU, laterality and the no-image baselines on crafted cases."""

from __future__ import annotations

import numpy as np
import pytest

from regionmed.evaluation.grounding import (
    box_iou,
    iou_hit_rates,
    laterality_accuracy,
    pointing_game,
    text_prior_box,
    text_prior_pointing,
    train_box_means,
    uniform_chance_pointing,
)


def one_hot(grid, cells):
    h = np.zeros((len(cells), *grid))
    for k, (i, j) in enumerate(cells):
        h[k, i, j] = 1.0
    return h


def test_pointing_game_lenient_vs_strict():
    grid = (4, 4)  # cells of 0.25
    boxes = np.array(
        [
            [0.30, 0.30, 0.45, 0.45],  # centre (0.375, 0.375) in cell (1, 1); peak there: both hit
            [0.20, 0.20, 0.45, 0.45],  # centre in (1, 1); peak (0, 0) overlaps the box's corner: lenient only
            [0.30, 0.30, 0.45, 0.45],  # peak (0, 0) does not reach the box: neither
            [0.25, 0.25, 0.50, 0.50],  # peak (0, 0) only touches the box at a corner: no area, no hit
            [0.00, 0.00, 1.00, 1.00],  # centre (0.5, 0.5) belongs to cell (2, 2) (half-open cells)
            [0.00, 0.00, 1.00, 1.00],
        ]
    )
    heat = one_hot(grid, [(1, 1), (0, 0), (0, 0), (0, 0), (2, 2), (1, 1)])
    out = pointing_game(heat, boxes)
    assert out["lenient"].tolist() == [True, True, False, False, True, True]
    assert out["strict"].tolist() == [True, False, False, False, True, False]


def test_pointing_peak_ties_go_to_first_cell_and_accepts_torch():
    flat = np.zeros((1, 3, 3))
    out = pointing_game(flat, [[0.0, 0.0, 0.2, 0.2]])  # constant map: peak is the top-left cell
    assert out["lenient"].tolist() == [True] and out["strict"].tolist() == [True]
    torch = pytest.importorskip("torch")
    t = torch.zeros(1, 3, 3)
    t[0, 2, 2] = 1
    assert pointing_game(t, torch.tensor([[0.7, 0.7, 1.0, 1.0]]))["strict"].tolist() == [True]


def test_box_iou_hand_cases_and_rates():
    pred = np.array([[0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5], [0, 0, 1, 1], [0.2, 0.2, 0.2, 0.2], [0, 0, 0.5, 1]])
    true = np.array(
        [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0.25, 0.25, 0.75, 0.75], [0.2, 0.2, 0.2, 0.2], [0, 0, 1, 1]]
    )
    np.testing.assert_allclose(box_iou(pred, true), [1.0, 0.0, 0.25, 0.0, 0.5])
    r = iou_hit_rates(pred, true)
    assert r["iou>0.3"] == pytest.approx(2 / 5) and r["iou>0.5"] == pytest.approx(1 / 5)
    assert r["mean_iou"] == pytest.approx(1.75 / 5)


def test_laterality_definition():
    grid = (2, 4)  # cell centres x = 0.125, 0.375, 0.625, 0.875
    boxes = np.array(
        [
            [0.1, 0.1, 0.3, 0.3],  # patient right (image left); true peak left, swapped peak right: flipped
            [0.1, 0.1, 0.3, 0.3],  # swapped phrase still points left: fails
            [
                0.7,
                0.1,
                0.9,
                0.3,
            ],  # image right; true peak on the wrong side, swapped peak left: swapped ok, not flipped
            [0.45, 0.1, 0.55, 0.3],  # on the midline: not scored
        ]
    )
    true_heat = one_hot(grid, [(0, 0), (0, 1), (0, 0), (0, 0)])
    swap_heat = one_hot(grid, [(1, 3), (0, 1), (0, 1), (0, 3)])
    out = laterality_accuracy(true_heat, swap_heat, boxes)
    np.testing.assert_array_equal(out["swapped_opposite"], [1, 0, 1, np.nan])
    np.testing.assert_array_equal(out["true_same_side"], [1, 1, 0, np.nan])
    np.testing.assert_array_equal(out["flipped"], [1, 0, 0, np.nan])
    assert out["accuracy"] == pytest.approx(2 / 3) and out["flip_rate"] == pytest.approx(1 / 3)
    assert out["n_scored"] == 3
    # odd grid: the middle column is centred on 0.5, on neither side, so it fails
    mid = laterality_accuracy(one_hot((1, 3), [(0, 0)]), one_hot((1, 3), [(0, 1)]), boxes[:1])
    assert mid["accuracy"] == 0.0


def test_uniform_chance_matches_monte_carlo_and_enumeration():
    rng = np.random.default_rng(0)
    grid = (7, 5)
    xy = np.sort(rng.uniform(0, 1, size=(40, 2, 2)), axis=1)
    boxes = np.stack([xy[:, 0, 0], xy[:, 0, 1], xy[:, 1, 0], xy[:, 1, 1]], axis=1)
    boxes[0] = [0.2, 2 / 7, 0.4, 4 / 7]  # edges exactly on cell borders
    chance = uniform_chance_pointing(boxes, grid)
    # exact: a peak at every cell in turn
    cells = [(i, j) for i in range(grid[0]) for j in range(grid[1])]
    heat = one_hot(grid, cells)
    exact = np.array(
        [pointing_game(heat, np.repeat(b[None], len(cells), 0))["lenient"].mean() for b in boxes]
    )
    np.testing.assert_allclose(chance["lenient"], exact)
    assert chance["lenient"][0] == pytest.approx(1 * 2 / 35)
    # Monte Carlo: random cells, 4000 draws per box
    n = 4000
    picks = rng.integers(0, len(cells), size=(len(boxes), n))
    mc = np.array(
        [
            pointing_game(heat[picks[k]], np.repeat(boxes[k][None], n, 0))["lenient"].mean()
            for k in range(len(boxes))
        ]
    )
    assert np.abs(mc - chance["lenient"]).max() < 0.04
    strict_mc = np.array(
        [
            pointing_game(heat[picks[k]], np.repeat(boxes[k][None], n, 0))["strict"].mean()
            for k in range(len(boxes))
        ]
    )
    assert np.abs(strict_mc - chance["strict"]).max() < 0.02 and chance["strict"][0] == pytest.approx(1 / 35)


TRAIN = [
    {
        "bbox": [0.55, 0.50, 0.75, 0.74],
        "label": "left kidney",
        "kind": "anatomy",
        "phrase": "the left kidney",
    },
    {"bbox": [0.15, 0.20, 0.45, 0.60], "label": "liver", "kind": "anatomy", "phrase": "the liver"},
    {"bbox": [0.17, 0.24, 0.47, 0.64], "label": "liver", "kind": "anatomy", "phrase": "the liver"},
    {
        "bbox": [0.30, 0.50, 0.80, 0.80],
        "label": "cardiomegaly",
        "kind": "finding",
        "phrase": "mild cardiomegaly",
    },
    {
        "bbox": [0.40, 0.50, 0.70, 0.80],
        "label": "cardiomegaly",
        "kind": "finding",
        "phrase": "marked cardiomegaly",
    },
    {
        "bbox": [0.10, 0.10, 0.20, 0.20],
        "label": "nodule",
        "kind": "finding",
        "phrase": "a small nodule in the right upper zone",
    },
]


@pytest.mark.parametrize(
    "phrase, label, box, source",
    [
        ("a small nodule in the right upper zone", None, [0.0, 0.0, 0.5, 1 / 3], "words"),
        ("a large mass in the left lower zone", None, [0.5, 2 / 3, 1.0, 1.0], "words"),
        ("a small kidney cyst in the left kidney", None, [0.55, 0.50, 0.75, 0.74], "organ"),
        ("a subtle liver lesion in the right lobe of the liver", None, [0.16, 0.22, 0.31, 0.62], "organ"),
        ("the left kidney", None, [0.55, 0.50, 0.75, 0.74], "organ"),
        ("mild cardiomegaly", None, [0.35, 0.50, 0.75, 0.80], "label"),
        ("an enlarged heart", "cardiomegaly", [0.35, 0.50, 0.75, 0.80], "label"),
        ("something odd", None, [0.8 / 3, 1.1 / 3, 1.7 / 3, 1.8 / 3], "all"),
    ],
)
def test_text_prior_rules(phrase, label, box, source):
    got, src = text_prior_box(phrase, train_box_means(TRAIN), label)
    np.testing.assert_allclose(got, box, atol=1e-9)
    assert src == source


def test_text_prior_empirical_mode_and_pointing():
    means = train_box_means(TRAIN)
    got, src = text_prior_box("a large nodule in the right upper zone", means, mode="empirical")
    assert src == "location" and np.allclose(got, [0.1, 0.1, 0.2, 0.2])
    phrases = ["a small nodule in the right upper zone", "mild cardiomegaly", "the left kidney"]
    true = np.array([[0.05, 0.05, 0.2, 0.2], [0.1, 0.1, 0.2, 0.2], [0.6, 0.55, 0.7, 0.7]])
    out = text_prior_pointing(phrases, true, TRAIN, grid=(4, 4))
    # prior centres: (0.25, 1/6) → cell (0, 1); (0.55, 0.65) → (2, 2); (0.65, 0.62) → (2, 2)
    assert out["lenient"].tolist() == [False, False, True]
    assert out["strict"].tolist() == [False, False, True]
    assert out["source"].tolist() == ["words", "label", "organ"] and out["boxes"].shape == (3, 4)
    emp = text_prior_pointing(phrases, true, TRAIN, grid=(4, 4), mode="empirical")
    assert emp["lenient"].tolist() == [True, False, True] and emp["source"][0] == "location"


def test_a_phrase_naming_two_regions_is_hit_on_either_for_model_prior_and_chance():
    from regionmed.evaluation.grounding import same_phrase_alternatives

    image_index = [0, 0, 0, 1]
    phrases = ["a small nodule", "a small nodule", "a large mass", "a small nodule"]
    assert same_phrase_alternatives(image_index, phrases) == [[1], [0], [], []]
    alternatives = same_phrase_alternatives(image_index, phrases)
    boxes = np.array([[0.0, 0.0, 0.2, 0.2], [0.8, 0.8, 1.0, 1.0], [0.4, 0.4, 0.6, 0.6], [0.0, 0.0, 0.2, 0.2]])
    grid = (4, 4)
    heat = one_hot(grid, [(3, 3), (3, 3), (3, 3), (3, 3)])  # every peak on the bottom-right cell
    plain = pointing_game(heat, boxes)
    assert plain["lenient"].tolist() == [False, True, False, False]
    grouped = pointing_game(heat, boxes, alternatives)
    # phrase 0 points at the other small nodule of its image: a hit; the mass and image 1 are unchanged
    assert grouped["lenient"].tolist() == [True, True, False, False]
    assert grouped["strict"].tolist() == [True, True, False, False]
    chance = uniform_chance_pointing(boxes, grid, alternatives)
    single = uniform_chance_pointing(boxes, grid)
    np.testing.assert_allclose(
        chance["lenient"][[0, 1]], single["lenient"][0] + single["lenient"][1]
    )  # disjoint
    np.testing.assert_allclose(chance["strict"], [2 / 16, 2 / 16, 1 / 16, 1 / 16])
    np.testing.assert_allclose(chance["lenient"][2:], single["lenient"][2:])
