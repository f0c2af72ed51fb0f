"""Losses against naive per-sample oracles (single process; the 2-process test is separate)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from regionmed.model.losses import (
    ClipLoss,
    cell_overlap_targets,
    hierarchical_loss,
    phrase_grounding_loss,
    region_phrase_loss,
)
from regionmed.model.outputs import RegionCLIPOutput
from regionmed.model.roi import cell_boxes


def clip_oracle(image, text, scale, ids=None) -> torch.Tensor:
    """Loop over samples: -log softmax of the positive among candidates that are not duplicates."""
    n = image.shape[0]
    total = image.new_zeros(())
    for a, b in ((image, text), (text, image)):
        for i in range(n):
            cands = [j for j in range(n) if j == i or ids is None or ids[j] != ids[i]]
            logits = torch.stack([scale * a[i] @ b[j] for j in cands])
            total = total - torch.log_softmax(logits, 0)[cands.index(i)]
    return total / (2 * n)


def region_oracle(region, phrase, hard, hard_mask, scale, ids) -> torch.Tensor:
    n = region.shape[0]
    total = region.new_zeros(())
    for i in range(n):
        logits = []
        for j in range(n):
            first = all(ids[k] != ids[j] for k in range(j))
            if j == i or (ids[j] != ids[i] and first):
                logits.append((j == i, scale * region[i] @ phrase[j]))
        for k in range(hard.shape[1]):
            if hard_mask[i, k]:
                logits.append((False, scale * region[i] @ hard[i, k]))
        values = torch.stack([v for _, v in logits])
        pos = [p for p, _ in logits].index(True)
        total = total - torch.log_softmax(values, 0)[pos]
    return total / n


def _unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("with_ids", [False, True])
def test_clip_loss_matches_oracle(with_ids):
    img, txt = _unit(6, 8, seed=1), _unit(6, 8, seed=2)
    ids = torch.tensor([3, 7, 3, 1, 7, 9]) if with_ids else None
    scale = torch.tensor(1 / 0.07, dtype=torch.float64)
    got = ClipLoss()(img, txt, scale, ids)
    torch.testing.assert_close(got, clip_oracle(img, txt, scale, ids))


def test_clip_loss_duplicate_texts_are_not_negatives():
    # Two images with the same text: masking makes the loss blind to how their texts compare.
    img, txt = _unit(4, 8, seed=3), _unit(4, 8, seed=4)
    txt[1] = txt[0]
    ids = torch.tensor([5, 5, 6, 7])
    scale = torch.tensor(10.0, dtype=torch.float64)
    masked = ClipLoss()(img, txt, scale, ids)
    unmasked = ClipLoss()(img, txt, scale)
    assert masked < unmasked


def test_region_phrase_loss_matches_oracle_with_duplicates_and_padding():
    n, k, d = 7, 3, 8
    region, phrase, hard = _unit(n, d, seed=5), _unit(n, d, seed=6), _unit(n, k, d, seed=7)
    ids = torch.tensor([10, 11, 10, 12, 11, 10, 13])
    for i in range(n):  # identical phrase ids carry identical embeddings, as from the text tower
        phrase[i] = phrase[int((ids == ids[i]).nonzero()[0])]
    hard_mask = torch.tensor(
        [[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]]
    ).bool()
    scale = torch.tensor(12.0, dtype=torch.float64)
    got = region_phrase_loss(region, phrase, hard, hard_mask, scale, ids)
    torch.testing.assert_close(got, region_oracle(region, phrase, hard, hard_mask, scale, ids))


def test_region_phrase_loss_gradient_matches_oracle():
    n, k, d = 5, 2, 6
    region = _unit(n, d, seed=8).requires_grad_()
    phrase, hard = _unit(n, d, seed=9), _unit(n, k, d, seed=10)
    ids, mask = torch.arange(n), torch.ones(n, k, dtype=torch.bool)
    scale = torch.tensor(5.0, dtype=torch.float64)
    g1 = torch.autograd.grad(region_phrase_loss(region, phrase, hard, mask, scale, ids), region)[0]
    g2 = torch.autograd.grad(region_oracle(region, phrase, hard, mask, scale, ids), region)[0]
    torch.testing.assert_close(g1, g2)


def test_region_phrase_loss_perfect_alignment_is_near_zero_and_empty_is_zero():
    phrase = torch.eye(4, dtype=torch.float64)
    hard = -phrase[:, None, :]
    loss = region_phrase_loss(
        phrase.clone(),
        phrase,
        hard,
        torch.ones(4, 1, dtype=torch.bool),
        torch.tensor(100.0, dtype=torch.float64),
        torch.arange(4),
    )
    assert loss < 1e-6
    empty = torch.zeros(0, 4)
    assert (
        region_phrase_loss(
            empty, empty, torch.zeros(0, 1, 4), torch.zeros(0, 1, dtype=torch.bool), torch.tensor(1.0)
        )
        == 0
    )


def test_hierarchical_loss_pairs_levels_with_the_right_image_embedding():
    b, n, d = 4, 5, 8
    outputs = RegionCLIPOutput(
        image_global=_unit(b, d, seed=11),
        image=_unit(b, d, seed=12),
        text={
            lv: _unit(b, d, seed=20 + i)
            for i, lv in enumerate(("report", "modality_text", "anatomy_text", "finding_text"))
        },
        text_ids={lv: torch.arange(b) for lv in ("report", "modality_text", "anatomy_text", "finding_text")},
        region=_unit(n, d, seed=13),
        phrase=_unit(n, d, seed=14),
        phrase_ids=torch.arange(n),
        hard_negative=_unit(n, 2, d, seed=15),
        hard_negative_mask=torch.ones(n, 2, dtype=torch.bool),
        logit_scale=torch.tensor(1 / 0.07, dtype=torch.float64),
    )
    weights = {"global": 1.0, "modality": 0.25, "anatomy": 0.5, "finding": 0.75, "region": 2.0}
    clip = ClipLoss()
    total, parts = hierarchical_loss(outputs, weights, clip)
    s, t = outputs.logit_scale, outputs.text
    expected = {
        "global": clip_oracle(outputs.image, t["report"], s),
        "modality": clip_oracle(outputs.image_global, t["modality_text"], s),
        "anatomy": clip_oracle(outputs.image_global, t["anatomy_text"], s),
        "finding": clip_oracle(outputs.image, t["finding_text"], s),
    }
    for name, value in expected.items():
        torch.testing.assert_close(parts[name], value)
    assert math.isclose(float(total), sum(weights[k] * float(v) for k, v in parts.items()), rel_tol=1e-12)
    _, only = hierarchical_loss(outputs, {"global": 1.0, "region": 0.0}, clip)
    assert set(only) == {"global"}
    with pytest.raises(KeyError):
        hierarchical_loss(dataclasses.replace(outputs, region=None), {"region": 1.0}, clip)


def test_cell_overlap_targets_draw_the_box_on_the_grid():
    cells = cell_boxes(4, 4)  # quarter cells, row-major
    boxes = torch.tensor(
        [
            [0.25, 0.0, 0.5, 0.25],  # exactly cell (0, 1)
            [0.0, 0.5, 0.5, 0.75],  # cells (2, 0) and (2, 1), equal shares
            [0.55, 0.70, 0.70, 0.90],  # column 2: rows 2 and 3 hold 0.05 and 0.15 of its height
            [0.6, 0.6, 0.6, 0.6],
        ]
    )  # degenerate: all on the centre cell (2, 2)
    t = cell_overlap_targets(boxes, cells)
    torch.testing.assert_close(t.sum(1), torch.ones(4))
    assert t[0, 1] == 1
    torch.testing.assert_close(t[1, [8, 9]], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(t[2, [10, 14]], torch.tensor([0.25, 0.75]))
    assert t[3, 10] == 1


def grounding_oracle(phrase, cells, region_batch, boxes, grid, scale):
    """Per phrase: the box's share of each cell as a loop, then cross-entropy over its image's cells."""
    gh, gw = grid
    total = phrase.new_zeros(())
    for i in range(len(phrase)):
        x0, y0, x1, y1 = boxes[i].tolist()
        share = []
        for r in range(gh):
            for c in range(gw):
                w = max(0.0, min(x1, (c + 1) / gw) - max(x0, c / gw))
                h = max(0.0, min(y1, (r + 1) / gh) - max(y0, r / gh))
                share.append(w * h)
        share = torch.tensor(share, dtype=phrase.dtype) / sum(share)
        logits = scale * cells[region_batch[i]] @ phrase[i]
        total = total - (share * torch.log_softmax(logits, 0)).sum()
    return total / len(phrase)


def test_phrase_grounding_loss_matches_oracle_and_learns_the_right_cell():
    b, g, n, d = 3, 9, 5, 8
    cells = _unit(b, g, d, seed=31).requires_grad_(True)
    phrase = _unit(n, d, seed=32)
    region_batch = torch.tensor([0, 0, 1, 2, 2])
    boxes = torch.tensor(
        [
            [0.0, 0.0, 0.2, 0.2],
            [0.1, 0.5, 0.9, 0.9],
            [0.4, 0.4, 0.6, 0.6],
            [0.0, 0.0, 1.0, 1.0],
            [0.7, 0.1, 0.95, 0.3],
        ],
        dtype=torch.float64,
    )
    scale = torch.tensor(5.0, dtype=torch.float64)
    loss = phrase_grounding_loss(phrase, cells, region_batch, boxes, cell_boxes(3, 3).double(), scale)
    oracle = grounding_oracle(phrase, cells, region_batch, boxes, (3, 3), scale)
    torch.testing.assert_close(loss, oracle)
    (grad,) = torch.autograd.grad(loss, cells)
    (oracle_grad,) = torch.autograd.grad(
        grounding_oracle(phrase, cells, region_batch, boxes, (3, 3), scale), cells
    )
    torch.testing.assert_close(grad, oracle_grad)
    # a phrase whose embedding is its cell's and no other's: near-zero loss; the wrong cell: large
    onehot = torch.eye(9, dtype=torch.float64)[None]
    right = phrase_grounding_loss(
        onehot[0, [4]],
        onehot,
        torch.tensor([0]),
        boxes[[2]],
        cell_boxes(3, 3).double(),
        torch.tensor(50.0, dtype=torch.float64),
    )
    wrong = phrase_grounding_loss(
        onehot[0, [0]],
        onehot,
        torch.tensor([0]),
        boxes[[2]],
        cell_boxes(3, 3).double(),
        torch.tensor(50.0, dtype=torch.float64),
    )
    assert right < 1e-6 and wrong > 40


def test_hierarchical_loss_grounding_needs_cell_embeddings():
    n, d = 2, 4
    outputs = RegionCLIPOutput(
        image_global=_unit(2, d, seed=3),
        image=_unit(2, d, seed=4),
        text={},
        text_ids={},
        phrase=_unit(n, d, seed=1),
        region_batch=torch.tensor([0, 1]),
        logit_scale=torch.tensor(2.0),
        region_boxes=torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]]),
    )
    with pytest.raises(KeyError, match="cell embeddings"):
        hierarchical_loss(outputs, {"grounding": 1.0}, ClipLoss())
    outputs = dataclasses.replace(outputs, cell_region=_unit(2, 4, d, seed=2), cell_boxes=cell_boxes(2, 2))
    total, parts = hierarchical_loss(outputs, {"grounding": 0.5}, ClipLoss())
    torch.testing.assert_close(total, 0.5 * parts["grounding"])
    torch.testing.assert_close(
        parts["grounding"],
        grounding_oracle(
            outputs.phrase,
            outputs.cell_region,
            outputs.region_batch,
            outputs.region_boxes,
            (2, 2),
            2.0,
        ),
    )


def test_negation_loss_matches_oracle_and_ignores_images_without_a_contradiction():
    from regionmed.model.losses import negation_loss

    b, d = 4, 6
    image, text, neg = _unit(b, d, seed=41), _unit(b, d, seed=42), _unit(b, d, seed=43)
    mask = torch.tensor([True, False, True, True])
    ids = torch.tensor([0, 1, 0, 2])  # texts 0 and 2 are the same report: not each other's negatives
    scale = torch.tensor(3.0, dtype=torch.float64)
    loss = negation_loss(image, text, neg, mask, scale, ids)
    expected = image.new_zeros(())
    for i in range(b):
        cands = [scale * image[i] @ text[j] for j in range(b) if j == i or ids[j] != ids[i]]
        pos = [j for j in range(b) if j == i or ids[j] != ids[i]].index(i)
        if mask[i]:
            cands.append(scale * image[i] @ neg[i])
        expected = expected - torch.log_softmax(torch.stack(cands), 0)[pos]
    torch.testing.assert_close(loss, expected / b)
    # aligned pairs: a contradiction that reads like the image's own text costs more than its opposite
    every = torch.ones(b, dtype=torch.bool)
    assert (
        negation_loss(text, text, text, every, scale) > negation_loss(text, text, -text, every, scale) + 0.5
    )


def test_phrase_grounding_loss_with_extra_queries_targets_the_mean_of_the_named_boxes():
    # regions 0, 1 (image 0) and 2 (image 1) ground their phrases; query 3 ("a small nodule",
    # location-free, made from region 0) names regions 0 and 1 of image 0
    cells = _unit(2, 9, 6, seed=41).requires_grad_(True)
    phrase = _unit(4, 6, seed=42)
    region_batch = torch.tensor([0, 0, 1])
    boxes = torch.tensor(
        [[0.0, 0.0, 0.3, 0.3], [0.7, 0.7, 1.0, 1.0], [0.4, 0.4, 0.6, 0.6]], dtype=torch.float64
    )
    query_region = torch.tensor([0, 1, 2, 0])
    group = torch.tensor(
        [[True, False, False], [False, True, False], [False, False, True], [True, True, False]]
    )
    scale = torch.tensor(4.0, dtype=torch.float64)
    loss = phrase_grounding_loss(
        phrase, cells, region_batch, boxes, cell_boxes(3, 3).double(), scale, group, query_region
    )
    # oracle: the target of query 3 is half cell 0 (top left) and half cell 8 (bottom right) of image 0
    logp = [torch.log_softmax(scale * cells[region_batch[query_region[i]]] @ phrase[i], 0) for i in range(4)]
    oracle = -(logp[0][0] + logp[1][8] + logp[2][4] + 0.5 * logp[3][0] + 0.5 * logp[3][8]) / 4
    torch.testing.assert_close(loss, oracle)
    (grad,) = torch.autograd.grad(loss, cells)
    (oracle_grad,) = torch.autograd.grad(oracle, cells)
    torch.testing.assert_close(grad, oracle_grad)
    plain = phrase_grounding_loss(
        phrase[:3], cells, region_batch, boxes, cell_boxes(3, 3).double(), scale, group[:3], query_region[:3]
    )
    torch.testing.assert_close(plain, grounding_oracle(phrase[:3], cells, region_batch, boxes, (3, 3), scale))
