"""RegionCLIP's contract: shapes, normalisation, text dedup, grounding, and the global_only mode."""

from __future__ import annotations

import pytest
import torch
from helpers.model_batches import TINY_BOX_HEAD, all_texts, collate, phantom_samples, tiny_config
from hypothesis import given, settings
from hypothesis import strategies as st

from regionmed.model import ClipLoss, RegionCLIP, hierarchical_loss, train_wordpiece_tokenizer
from regionmed.model.text import encode_text_list, encode_unique, length_buckets, token_ids_hash

SAMPLES = phantom_samples(6)
TOKENIZER = train_wordpiece_tokenizer(all_texts(phantom_samples(40)), 400)
REGION_NAMES = ("roi.", "region_proj.", "box_head.")


def _model(global_only=False, seed=0, **roi):
    torch.manual_seed(seed)
    return RegionCLIP(tiny_config(**roi), vocab_size=len(TOKENIZER), global_only=global_only).eval()


@pytest.fixture(scope="module")
def batch():
    return collate(SAMPLES, TOKENIZER)


def _unit_rows(x):
    return torch.allclose(x.norm(dim=-1), torch.ones(len(x)), atol=1e-5)


def test_forward_gives_every_feature_the_losses_need(batch):
    out = _model()(batch)
    b, n = len(SAMPLES), len(batch["region_boxes"])
    assert out.image.shape == out.image_global.shape == (b, 32)
    assert set(out.text) == {"report", "modality_text", "anatomy_text", "finding_text"}
    assert out.region.shape == out.phrase.shape == (n, 32)
    assert out.hard_negative.shape[:2] == out.hard_negative_mask.shape == batch["hard_negative_index"].shape
    for emb in (out.image, out.image_global, out.region, out.phrase):
        assert _unit_rows(emb)
    assert not torch.allclose(out.image, out.image_global)  # the region path changes it
    # phrase ids: equal exactly for equal phrase texts
    phrases = [p for s in SAMPLES for p in s["phrases"]]
    ids = out.phrase_ids.tolist()
    for i in range(n):
        for j in range(n):
            assert (ids[i] == ids[j]) == (phrases[i] == phrases[j])
    assert torch.isclose(out.logit_scale, torch.tensor(1 / 0.07))


@pytest.mark.parametrize("cell_path", ["fusion", "direct"])
@pytest.mark.parametrize("cells_as_proposals", [False, True])
def test_forward_embeds_every_cell_for_the_grounding_loss(batch, cells_as_proposals, cell_path):
    """Cell embeddings are the cells scored through the cell path, exactly what ``ground`` ranks;
    with ``grid_sizes`` equal to the patch grid the proposals are the cells and are embedded once."""
    model = _model(cell_path=cell_path, **({"grid_sizes": [8]} if cells_as_proposals else {}))
    gh = model.config.vision.image_size // model.config.vision.patch_size
    assert gh == 8
    out = model(batch, ground_cells=True)
    b, n = len(SAMPLES), len(batch["region_boxes"])
    assert out.cell_region.shape == (b, gh * gh, 32) and out.cell_boxes.shape == (gh * gh, 4)
    assert out.region_boxes.shape == (n, 4) and _unit_rows(out.cell_region.reshape(-1, 32))
    phrase = out.phrase[:2]
    for k in range(2):
        image = int(out.region_batch[k])
        heat, _ = model.ground(batch["pixels"][image : image + 1], phrase[k : k + 1])
        torch.testing.assert_close(heat.flatten(), out.cell_region[image] @ phrase[k], atol=1e-5, rtol=0)
    plain = model(batch)
    assert plain.cell_region is None and plain.cell_boxes is None
    torch.testing.assert_close(plain.region, out.region, atol=1e-5, rtol=0)
    torch.testing.assert_close(plain.image, out.image, atol=1e-5, rtol=0)


@pytest.mark.parametrize("roi", [{}, {"cell_path": "direct", "grid_sizes": [8]}])
def test_encode_methods_agree_with_forward(batch, roi):
    model = _model(**roi)
    out = model(batch)
    torch.testing.assert_close(model.encode_image(batch["pixels"]), out.image, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        model.encode_image_global(batch["pixels"]), out.image_global, atol=1e-5, rtol=0
    )
    torch.testing.assert_close(model.encode_text(**batch["report"]), out.text["report"], atol=1e-5, rtol=0)
    regions = model.encode_regions(batch["pixels"], [s["boxes"] for s in SAMPLES])
    torch.testing.assert_close(regions, out.region, atol=1e-5, rtol=0)


def test_text_dedup_does_not_change_embeddings():
    model = _model()
    texts = ["the left lung", "no effusion", "the left lung", "effusion", "no effusion"]
    enc = TOKENIZER(texts, padding=True, return_tensors="pt")
    alone = torch.cat([model._encode_text_raw(**TOKENIZER([t], return_tensors="pt")) for t in texts])
    torch.testing.assert_close(
        model.encode_text(enc["input_ids"], enc["attention_mask"]), alone, atol=1e-5, rtol=0
    )
    torch.testing.assert_close(encode_text_list(model, TOKENIZER, texts), alone, atol=1e-5, rtol=0)
    calls = []
    encode_unique(
        lambda i, m: calls.append(len(i)) or torch.zeros(len(i), 1),
        [(enc["input_ids"], enc["attention_mask"])] * 2,
    )
    assert sum(calls) == 3  # three distinct texts
    assert model.encode_text(enc["input_ids"][:0], enc["attention_mask"][:0]).shape == (0, 32)
    assert not torch.allclose(alone[1], alone[3])  # "no effusion" is not "effusion"


def _loop_hash(ids, mask):
    """The hash written as its definition, one token at a time (the oracle)."""
    out = []
    for row, keep in zip((ids.long() + 1).tolist(), mask.bool().tolist(), strict=True):
        parts = []
        for prime, base in ((2_147_483_647, 1_000_003), (2_147_483_629, 999_983)):
            h = 0
            for token, k in zip(row, keep, strict=True):
                h = (h * base + token) % prime if k else h
            parts.append(h)
        out.append(parts[0] * 2_147_483_629 + parts[1])
    return torch.tensor(out)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 70), st.data())
def test_text_ids_match_the_token_by_token_hash(rows, length, data):
    ids = torch.tensor(
        data.draw(
            st.lists(
                st.lists(st.integers(0, 2**20), min_size=length, max_size=length),
                min_size=rows,
                max_size=rows,
            )
        )
    )
    mask = torch.tensor(
        data.draw(
            st.lists(st.lists(st.booleans(), min_size=length, max_size=length), min_size=rows, max_size=rows)
        )
    ).long()
    assert torch.equal(token_ids_hash(ids, mask), _loop_hash(ids, mask))


def test_length_buckets_merge_neighbours_when_a_call_costs_more_than_the_padding():
    lengths = torch.tensor([3, 4, 5, 6, 7, 12, 13] + [30] * 30 + [64] * 2)
    assert length_buckets(lengths, call_cost_tokens=0).tolist() == [0, 0, 1, 1, 1, 2, 2] + [3] * 30 + [4] * 2
    # 2 rows of 3-4 tokens padded to 7 (6 tokens) and then 5 rows to 13 (30) cost less than a call;
    # 7 rows padded to 30 (119 tokens) would not; 30 rows of 30 padded to 64 (1020) neither
    assert length_buckets(lengths, call_cost_tokens=100).tolist() == [0] * 7 + [1] * 30 + [2] * 2
    assert length_buckets(lengths, call_cost_tokens=10_000).tolist() == [0] * 39
    assert length_buckets(torch.tensor([5]), call_cost_tokens=10).tolist() == [0]


def test_text_ids_ignore_padding():
    short = TOKENIZER(["the liver"], return_tensors="pt")
    long = TOKENIZER(["the liver", "a much longer phrase than that"], padding=True, return_tensors="pt")
    a = token_ids_hash(short["input_ids"], short["attention_mask"])
    b = token_ids_hash(long["input_ids"], long["attention_mask"])
    assert a[0] == b[0] and b[0] != b[1]


@pytest.mark.parametrize("proposals", ["grid", "similarity"])
def test_ground_scores_cells_and_picks_a_box(batch, proposals):
    model = _model(proposals=proposals, cell_path="fusion")  # the heatmap through the whole region head
    phrase = model.encode_text(**{k: v[:2] for k, v in batch["finding_text"].items()})
    heat, box = model.ground(batch["pixels"][:2], phrase)
    assert heat.shape == (2, 8, 8) and box.shape == (2, 4)
    assert (box[:, 2:] > box[:, :2]).all() and (box >= 0).all() and (box <= 1).all()
    # the heatmap is the fusion-head score of each cell's box: check one cell by hand
    cell = torch.tensor([[3 / 8, 2 / 8, 4 / 8, 3 / 8]])
    by_hand = model.encode_regions(batch["pixels"][:1], [cell])[0] @ phrase[0]
    assert torch.isclose(heat[0, 2, 3], by_hand, atol=1e-5)


def test_a_narrower_fusion_keeps_the_contract_with_fewer_parameters(batch):
    wide, narrow = _model(cell_path="fusion"), _model(cell_path="fusion", fusion_dim=32)
    assert narrow.roi.width == 32 and wide.roi.width == 64  # tiny_config's vision width

    def count(m):
        return sum(p.numel() for n, p in m.named_parameters() if n.startswith(("roi.", "region_proj.")))

    assert count(narrow) < count(wide) / 2
    out = narrow(batch, ground_cells=True)
    n = len(batch["region_boxes"])
    assert out.region.shape == (n, 32) and out.cell_region.shape == (len(SAMPLES), 64, 32)
    assert _unit_rows(out.region) and _unit_rows(out.image)
    loss, _ = hierarchical_loss(out, {"global": 1.0, "region": 1.0, "grounding": 1.0}, ClipLoss())
    loss.backward()
    assert narrow.roi.feature_in.weight.grad.abs().sum() > 0  # the fusion's input projection learns
    phrase = narrow.encode_text(**{k: v[:1] for k, v in batch["finding_text"].items()})
    heat, _ = narrow.ground(batch["pixels"][:1], phrase)
    cell = torch.tensor([[3 / 8, 2 / 8, 4 / 8, 3 / 8]])
    assert torch.isclose(
        heat[0, 2, 3], narrow.encode_regions(batch["pixels"][:1], [cell])[0] @ phrase[0], atol=1e-5
    )


def test_direct_cells_skip_the_cross_attention_and_annotated_boxes_do_not(batch):
    """``cell_path: direct``: a cell's feature is its region token before the cross-attention, so
    changing the attention moves annotated regions but not cells; ``ground`` ranks box candidates
    by the whole region path (without a box head), and its heatmap is the direct cells the grounding
    loss trains."""
    model = _model(cell_path="direct", grid_sizes=[8], box_head=None)
    before = model(batch, ground_cells=True)
    with torch.no_grad():
        model.roi.cross_attn.out_proj.weight.mul_(3.0)
    after = model(batch, ground_cells=True)
    torch.testing.assert_close(after.cell_region, before.cell_region, atol=1e-6, rtol=0)
    torch.testing.assert_close(after.image, before.image, atol=1e-6, rtol=0)  # pooled from the cells
    assert not torch.allclose(after.region, before.region, atol=1e-3)
    phrase = after.phrase[:1]
    image = int(after.region_batch[0])
    heat, box = model.ground(batch["pixels"][image : image + 1], phrase)
    torch.testing.assert_close(heat.flatten(), after.cell_region[image] @ phrase[0], atol=1e-5, rtol=0)
    # the box is a candidate scored by the whole path: no candidate outscores it there
    picked = model.encode_regions(batch["pixels"][image : image + 1], [box])
    whole = model.encode_regions(
        batch["pixels"][image : image + 1],
        [
            torch.cat(
                [
                    box,
                    torch.tensor(
                        [[c / 8, r / 8, (c + 1) / 8, (r + 1) / 8] for r in range(8) for c in range(8)]
                    ),
                ]
            )
        ],
    )
    scores = whole @ phrase[0]
    assert torch.isclose(picked[0] @ phrase[0], scores[0], atol=1e-5) and scores[0] >= scores[1:].max() - 1e-5
    backward = model(batch, ground_cells=True)
    loss, _ = hierarchical_loss(backward, {"grounding": 1.0}, ClipLoss())
    loss.backward()
    assert model.roi.cell_proj.weight.grad.abs().sum() > 0
    assert model.roi.cross_attn.in_proj_weight.grad is None  # the grounding loss never reaches it


def test_fusion_heads_must_divide_the_fusion_width():
    with pytest.raises(ValueError, match="fusion_dim 31"):
        tiny_config(fusion_dim=31)  # tiny_config has 2 fusion heads


def test_crop_branch_trains_the_image_encoder_through_crops(batch):
    model = _model(crop_branch=True, crop_size=32).train()
    out = model(batch)
    loss, _ = hierarchical_loss(out, {"region": 1.0}, ClipLoss())
    loss.backward()
    assert model.roi.crop_proj.weight.grad.abs().sum() > 0
    assert model.image_encoder.backbone.embeddings.patch_embeddings.projection.weight.grad.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_gradients(batch):
    grads = []
    for checkpointing in (False, True):
        model = _model().train()
        model.set_gradient_checkpointing(checkpointing)
        loss, _ = hierarchical_loss(model(batch), {"global": 1.0, "region": 1.0}, ClipLoss())
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-5, rtol=1e-4)


def test_global_only_has_no_region_path(batch):
    full, base = _model(box_head=TINY_BOX_HEAD), _model(global_only=True, box_head=TINY_BOX_HEAD)
    names = {n for n, _ in base.named_parameters()}
    assert not any(n.startswith(REGION_NAMES) for n in names)
    full_names = {n for n, _ in full.named_parameters()}
    assert names == {n for n in full_names if not n.startswith(REGION_NAMES)}  # same code, path off
    missing, unexpected = base.load_state_dict(full.state_dict(), strict=False)
    assert not missing and all(n.startswith(REGION_NAMES) for n in unexpected)
    torch.testing.assert_close(base.encode_image(batch["pixels"]), full.encode_image_global(batch["pixels"]))
    # every parameter of the baseline learns from the global loss alone: no dead weights
    base.train()
    out = base(batch, text_levels=("report",))
    assert out.region is None and out.image is out.image_global
    loss, _ = hierarchical_loss(out, {"global": 1.0}, ClipLoss())
    loss.backward()
    dead = [n for n, p in base.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead
    heat, box = base.ground(batch["pixels"][:1], out.text["report"][:1].detach())
    assert heat.shape == (1, 8, 8) and box.shape == (1, 4)
    with pytest.raises(RuntimeError):
        base.encode_regions(batch["pixels"], [s["boxes"] for s in SAMPLES])


def test_full_model_global_loss_touches_no_hard_negative_machinery(batch):
    # the region path's params get gradients from the global loss too (the region-aware image)
    model = _model().train()
    loss, _ = hierarchical_loss(model(batch, text_levels=("report",)), {"global": 1.0}, ClipLoss())
    loss.backward()
    assert model.roi.pool_w.weight.grad.abs().sum() > 0
    assert model.region_proj.weight.grad is None
