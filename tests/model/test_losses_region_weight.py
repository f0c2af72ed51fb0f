"""Per-region weights (annotated regions weigh ``train.annotated_region_weight``) in the region and
grounding losses: weights of 1 are the unweighted loss, a zero weight removes a region's term, and
the oracle is the per-region loss written out by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from regionmed.model.losses import phrase_grounding_loss, region_phrase_loss
from regionmed.model.roi import cell_boxes


def _region_inputs(n=6, k=2, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)

    def unit(*s):
        return F.normalize(torch.randn(*s, generator=g), dim=-1)

    return unit(n, d), unit(n, d), unit(n, k, d), torch.ones(n, k, dtype=torch.bool), torch.tensor(10.0)


def test_region_loss_with_unit_weights_is_the_unweighted_loss():
    region, phrase, hard, mask, scale = _region_inputs()
    plain = region_phrase_loss(region, phrase, hard, mask, scale)
    weighted = region_phrase_loss(region, phrase, hard, mask, scale, weight=torch.ones(6))
    torch.testing.assert_close(weighted, plain)


def test_region_loss_weights_scale_each_regions_term_against_a_hand_written_oracle():
    region, phrase, hard, mask, scale = _region_inputs()
    w = torch.tensor([1.0, 1.0, 0.5, 0.5, 0.0, 0.25])
    logits = torch.cat([scale * region @ phrase.T, scale * torch.einsum("nd,nkd->nk", region, hard)], dim=1)
    per_region = F.cross_entropy(logits, torch.arange(6), reduction="none")
    oracle = (w * per_region).sum() / 6
    torch.testing.assert_close(region_phrase_loss(region, phrase, hard, mask, scale, weight=w), oracle)


def test_grounding_loss_weights_follow_the_region_each_query_was_made_from():
    g = torch.Generator().manual_seed(1)
    cells = F.normalize(torch.randn(2, 16, 8, generator=g), dim=-1)
    phrase = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.25, 0.0, 0.75, 0.5]])
    batch, cb, scale = torch.tensor([0, 0, 1]), cell_boxes(4, 4), torch.tensor(5.0)
    plain = phrase_grounding_loss(phrase, cells, batch, boxes, cb, scale)
    torch.testing.assert_close(
        phrase_grounding_loss(phrase, cells, batch, boxes, cb, scale, weight=torch.ones(3)), plain
    )
    # a zero-weight region contributes nothing: the mean over three queries of the other two terms
    only_first_two = phrase_grounding_loss(phrase[:2], cells, batch[:2], boxes[:2], cb, scale) * 2 / 3
    torch.testing.assert_close(
        phrase_grounding_loss(phrase, cells, batch, boxes, cb, scale, weight=torch.tensor([1.0, 1.0, 0.0])),
        only_first_two,
    )
    # with queries (a location-free query made from region 2), the query takes region 2's weight
    query_region = torch.tensor([0, 1, 2, 2])
    queries = torch.cat([phrase, phrase[2:]])
    group = torch.eye(3, dtype=torch.bool)[query_region]
    weighted = phrase_grounding_loss(
        queries, cells, batch, boxes, cb, scale, group, query_region, weight=torch.tensor([1.0, 1.0, 0.0])
    )
    unweighted_first_two = phrase_grounding_loss(
        queries[:2], cells, batch, boxes, cb, scale, group[:2], query_region[:2]
    )
    torch.testing.assert_close(weighted, unweighted_first_two * 2 / 4)
