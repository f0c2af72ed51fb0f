"""Losses against naive per-sample oracles (single process; the 2-process test is separate)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from regionmed.model.losses import ClipLoss, hierarchical_loss, region_phrase_loss


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
    hard_mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0], [0, 0, 0]]).bool()
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
    loss = region_phrase_loss(phrase.clone(), phrase, hard, torch.ones(4, 1, dtype=torch.bool),
                              torch.tensor(100.0, dtype=torch.float64), torch.arange(4))
    assert loss < 1e-6
    empty = torch.zeros(0, 4)
    assert region_phrase_loss(empty, empty, torch.zeros(0, 1, 4), torch.zeros(0, 1, dtype=torch.bool),
                              torch.tensor(1.0)) == 0


def test_hierarchical_loss_pairs_levels_with_the_right_image_embedding():
    b, n, d = 4, 5, 8
    outputs = {
        "image_global": _unit(b, d, seed=11), "image": _unit(b, d, seed=12),
        "text": {lv: _unit(b, d, seed=20 + i) for i, lv in
                 enumerate(("report", "modality_text", "anatomy_text", "finding_text"))},
        "text_ids": {lv: torch.arange(b) for lv in ("report", "modality_text", "anatomy_text", "finding_text")},
        "region": _unit(n, d, seed=13), "phrase": _unit(n, d, seed=14), "phrase_ids": torch.arange(n),
        "hard_negative": _unit(n, 2, d, seed=15), "hard_negative_mask": torch.ones(n, 2, dtype=torch.bool),
        "logit_scale": torch.tensor(1 / 0.07, dtype=torch.float64),
    }
    weights = {"global": 1.0, "modality": 0.25, "anatomy": 0.5, "finding": 0.75, "region": 2.0}
    clip = ClipLoss()
    total, parts = hierarchical_loss(outputs, weights, clip)
    s, t = outputs["logit_scale"], outputs["text"]
    expected = {
        "global": clip_oracle(outputs["image"], t["report"], s),
        "modality": clip_oracle(outputs["image_global"], t["modality_text"], s),
        "anatomy": clip_oracle(outputs["image_global"], t["anatomy_text"], s),
        "finding": clip_oracle(outputs["image"], t["finding_text"], s),
    }
    for name, value in expected.items():
        torch.testing.assert_close(parts[name], value)
    assert math.isclose(float(total), sum(weights[k] * float(v) for k, v in parts.items()), rel_tol=1e-12)
    _, only = hierarchical_loss(outputs, {"global": 1.0, "region": 0.0}, clip)
    assert set(only) == {"global"}
    with pytest.raises(KeyError):
        hierarchical_loss({k: v for k, v in outputs.items() if k != "region"}, {"region": 1.0}, clip)
