"""The box head: it learns to draw a phrase's box from a window around a point, ground() uses it, and
the global-only model has none.

The learning check is a toy task: on noise, a bright and a dark square (3-12 px, centres 5-9 px
apart, so both are in the window), the phrase names one (two fixed embeddings) and the anchor is that
square's centre moved by up to a cell per axis, as in training. After 300 Adam steps of the head alone,
on 256 held-out images its box has IoU > 0.5 with the named square for at least 70% of them (seen
here: 0.94; the untrained head: 0.05); a one-cell box at the anchor, the best the patch grid could
draw, gets under 20% (seen: 0.03); and at least 80% of the head's boxes overlap the named square more
than the other one (seen: 0.98; the untrained head: 0.62).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers.model_batches import TINY_BOX_HEAD, all_texts, collate, phantom_samples, tiny_config

from regionmed.evaluation.grounding import box_iou
from regionmed.model import ClipLoss, RegionCLIP, hierarchical_loss, train_wordpiece_tokenizer
from regionmed.model.box_head import BoxHead, box_regression_loss, generalized_iou
from regionmed.model.losses import cell_overlap_targets
from regionmed.model.roi import cell_boxes
from regionmed.training.module import OptimConfig, RegionMedModule

SIZE, GRID, HIDDEN, EMBED = 64, 8, 8, 16
STEPS, BATCH = 300, 64
MIN_IOU50, MAX_CELL_IOU50, MIN_PICKS_NAMED = 0.7, 0.2, 0.8
SAMPLES = phantom_samples(6)
TOKENIZER = train_wordpiece_tokenizer(all_texts(phantom_samples(40)), 400)


def _squares(n: int, generator: torch.Generator):
    """Images ``[n, 1, SIZE, SIZE]``, the two squares' boxes ``[n, 2, 4]`` (bright, dark) and which one
    is named ``[n]``."""
    images = 0.5 + 0.05 * torch.randn(n, 1, SIZE, SIZE, generator=generator)
    sides = torch.randint(3, 13, (n, 2), generator=generator).float()
    first = 14 + torch.rand(n, 2, generator=generator) * (SIZE - 28)
    angle = torch.rand(n, generator=generator) * 2 * torch.pi
    gap = 5 + 4 * torch.rand(n, generator=generator)
    second = first + gap[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
    centres = torch.stack([first, second], dim=1)  # [n, 2, (x, y)] in pixels
    boxes = torch.cat([centres - sides[..., None] / 2, centres + sides[..., None] / 2], dim=-1).round()
    for i in range(n):
        for k, value in ((0, 0.4), (1, -0.4)):  # painted in order: the dark one may cover the bright
            x0, y0, x1, y1 = boxes[i, k].clamp(0, SIZE).int().tolist()
            images[i, 0, y0:y1, x0:x1] = 0.5 + value
    named = torch.randint(0, 2, (n,), generator=generator)
    return images, boxes.clamp(0, SIZE) / SIZE, named


def _head_inputs(images, boxes, named, phrases, generator):
    target = boxes[torch.arange(len(named)), named]
    jitter = (torch.rand(len(named), 2, generator=generator) * 2 - 1) / GRID  # up to a cell per axis
    anchor = (target[:, :2] + target[:, 2:]) / 2 + jitter
    grid = F.avg_pool2d(images, SIZE // GRID).expand(-1, HIDDEN, -1, -1)  # coarse "patch features"
    return (images - 0.5) / 0.25, grid, phrases[named], torch.arange(len(named)), anchor, target


@pytest.mark.parametrize("centre_stride", [4, 2])
def test_the_box_head_learns_to_draw_the_named_square_finer_than_a_cell(centre_stride):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    config = tiny_config(box_head={**TINY_BOX_HEAD, "centre_stride": centre_stride}).roi.box_head
    head = BoxHead(config, image_channels=1, hidden=HIDDEN, embed_dim=EMBED)
    phrases = F.normalize(torch.randn(2, EMBED, generator=generator), dim=-1)  # "bright", "dark"
    optimizer = torch.optim.Adam(head.parameters(), lr=2e-3)
    for _ in range(STEPS):
        *inputs, target = _head_inputs(*_squares(BATCH, generator), phrases, generator)
        loss = box_regression_loss(head(*inputs), target, (1 / GRID, 1 / GRID))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    images, boxes, named = _squares(256, generator)
    *inputs, target = _head_inputs(images, boxes, named, phrases, generator)
    with torch.no_grad():
        drawn = head(*inputs)
    anchor = inputs[-1]
    cell_box = torch.cat([anchor - 0.5 / GRID, anchor + 0.5 / GRID], dim=1)
    iou_head, iou_cell = box_iou(drawn, target), box_iou(cell_box, target)
    other = boxes[torch.arange(len(named)), 1 - named]
    assert (iou_head > 0.5).mean() >= MIN_IOU50, f"head IoU>0.5: {(iou_head > 0.5).mean():.2f}"
    assert (iou_cell > 0.5).mean() <= MAX_CELL_IOU50  # the task is finer than the patch grid
    assert (iou_head > box_iou(drawn, other)).mean() >= MIN_PICKS_NAMED  # the phrase decides


def _model(global_only=False, **roi) -> RegionCLIP:
    torch.manual_seed(0)
    config = tiny_config(**{"box_head": TINY_BOX_HEAD, **roi})
    return RegionCLIP(config, vocab_size=len(TOKENIZER), global_only=global_only).eval()


@pytest.fixture(scope="module")
def batch():
    return collate(SAMPLES, TOKENIZER)


def test_ground_draws_the_head_box_at_the_heatmap_peak_inside_the_image(batch):
    model = _model()
    phrase = model.encode_text(**batch["finding_text"])
    heat, box = model.ground(batch["pixels"], phrase)
    assert box.shape == (len(SAMPLES), 4) and bool(((box >= 0) & (box <= 1)).all())
    assert bool((box[:, 2] >= box[:, 0]).all() and (box[:, 3] >= box[:, 1]).all())
    # the box's centre lies within the head's window (half of it: 1.5 cells) around the peak cell
    peak = cell_boxes(GRID, GRID)[heat.flatten(1).argmax(1)]
    half = model.config.roi.box_head.window / 2 / GRID
    assert bool(((box[:, :2] + box[:, 2:]) / 2 - (peak[:, :2] + peak[:, 2:]) / 2).abs().max() <= half + 1e-6)
    # the heatmap is the cells' own: the same with the head taken away
    plain = _model(box_head=None)
    plain.load_state_dict(model.state_dict(), strict=False)
    torch.testing.assert_close(plain.ground(batch["pixels"], phrase).heatmap, heat)


def test_a_box_larger_than_the_head_window_is_the_region_path_candidate(batch):
    model = _model()
    phrase = model.encode_text(**batch["finding_text"])
    plain = _model(box_head=None)
    plain.load_state_dict(model.state_dict(), strict=False)
    candidate = plain.ground(batch["pixels"], phrase).box
    with torch.no_grad():  # the head now draws 4-cell boxes: more than its 3-cell window holds
        model.box_head.regress[-1].bias.fill_(float(torch.log(torch.tensor(4.0))))
    torch.testing.assert_close(model.ground(batch["pixels"], phrase).box, candidate)
    with torch.no_grad():  # 2-cell boxes: the head's own
        model.box_head.regress[-1].bias.fill_(float(torch.log(torch.tensor(2.0))))
    box = model.ground(batch["pixels"], phrase).box
    torch.testing.assert_close(
        box[:, 2:] - box[:, :2], torch.full_like(box[:, 2:], 2 / GRID), atol=1e-3, rtol=0
    )


def test_the_box_loss_leaves_out_boxes_larger_than_the_window(batch):
    model = _model().train()
    out = model(batch, ground_cells=True)
    sides = (out.region_boxes[:, 2:] - out.region_boxes[:, :2]) * GRID
    expected = (sides <= model.config.roi.box_head.window + 1e-6).all(dim=1)
    assert torch.equal(out.box_fits, expected) and 0 < int(expected.sum()) < len(expected)
    loss, _ = hierarchical_loss(out, {"box": 1.0}, ClipLoss())
    only_fitting = box_regression_loss(
        out.box_pred[expected], out.region_boxes[expected], (1 / GRID, 1 / GRID)
    )
    torch.testing.assert_close(loss, only_fitting)


def test_the_global_only_model_has_no_box_head_and_grounds_as_before(batch):
    with_config, without = _model(global_only=True), _model(global_only=True, box_head=None)
    assert with_config.box_head is None
    assert with_config.state_dict().keys() == without.state_dict().keys()
    phrase = with_config.encode_text(**batch["finding_text"])
    heat, box = with_config.ground(batch["pixels"], phrase)
    torch.testing.assert_close(box, cell_boxes(GRID, GRID)[heat.flatten(1).argmax(1)])
    out = with_config(batch, ground_cells=True)
    assert out.box_pred is None and out.patch_grid is None
    with pytest.raises(ValueError, match="global_only"):
        RegionMedModule(with_config, {"global": 1.0, "box": 1.0}, OptimConfig(1e-3, 0.0, 0, 10))
    with pytest.raises(ValueError, match="box head"):
        RegionMedModule(_model(box_head=None), {"box": 1.0}, OptimConfig(1e-3, 0.0, 0, 10))


def test_the_box_loss_trains_the_head_alone_not_the_encoders(batch):
    model = _model().train()
    out = model(batch, ground_cells=True)
    assert out.box_pred.shape == (len(batch["region_boxes"]), 4)
    loss, parts = hierarchical_loss(out, {"box": 1.0}, ClipLoss())
    loss.backward()
    assert set(parts) == {"box"}
    assert model.box_head.regress[-1].weight.grad.abs().sum() > 0
    # the patch features and the phrase are detached: the encoders are left to the contrastive losses
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert all(p.grad is None for p in model.text_encoder.parameters())


def test_box_head_lr_gives_the_head_its_own_rate_and_leaves_the_rest_as_before():
    model = _model()
    head_params = {id(p) for p in model.box_head.parameters()}

    def groups(box_head_lr):
        module = RegionMedModule(
            model, {"global": 1.0, "box": 1.0}, OptimConfig(1e-3, 0.05, 0, 10, box_head_lr=box_head_lr)
        )
        optimizer = module.configure_optimizers()["optimizer"]
        return [({id(p) for p in g["params"]}, g["lr"], g["weight_decay"]) for g in optimizer.param_groups]

    same = groups(None)
    assert [(lr, wd) for _, lr, wd in same] == [(1e-3, 0.05), (1e-3, 0.0)]  # decay, no decay: as before
    own = groups(2e-2)
    assert [(lr, wd) for _, lr, wd in own] == [(1e-3, 0.05), (1e-3, 0.0), (2e-2, 0.05), (2e-2, 0.0)]
    assert own[2][0] | own[3][0] == head_params  # the head's parameters, all and only them
    assert own[0][0] | own[1][0] == (same[0][0] | same[1][0]) - head_params


def test_training_anchors_sit_at_the_box_centre_plus_the_jittered_offset(batch):
    model = _model()
    zero = dict(batch, box_anchor_offset=torch.zeros_like(batch["box_anchor_offset"]))
    ones = dict(batch, box_anchor_offset=torch.ones_like(batch["box_anchor_offset"]))
    with torch.no_grad():  # a fresh head draws one cell centred on its anchor
        centred, moved = model(zero).box_pred, model(ones).box_pred
    boxes = batch["region_boxes"]
    torch.testing.assert_close((centred[:, :2] + centred[:, 2:]) / 2, (boxes[:, :2] + boxes[:, 2:]) / 2)
    shift = model.config.roi.box_head.anchor_jitter / GRID
    torch.testing.assert_close(moved - centred, torch.full_like(moved, shift))


def test_the_centre_weight_puts_the_grounding_target_peak_on_the_centre_cell():
    cells = cell_boxes(GRID, GRID)
    # a box covering three cells whole in x (2..4) and one in y: by area the three tie
    box = torch.tensor([[2 / GRID, 0.0, 5 / GRID, 1 / GRID]])
    by_area = cell_overlap_targets(box, cells)
    assert torch.allclose(by_area[0, [2, 3, 4]], torch.full((3,), 1 / 3))
    centred = cell_overlap_targets(box, cells, centre_weight=0.5)
    assert torch.isclose(centred.sum(), torch.tensor(1.0)) and int(centred.argmax()) == 3
    assert torch.allclose(centred[0, [2, 4]], torch.full((2,), 1 / 6))


def test_each_cell_of_the_pixel_map_is_centred_where_the_centre_is_decoded():
    """The pixel path's map cell k must read the crop around (k + 0.5) / n of the window: where
    soft_argmax decodes it and where the context's RoIAlign samples it. Found by the gradient's
    centroid: constant positive weights on a constant input weigh the receptive field symmetrically."""
    config = tiny_config(box_head={**TINY_BOX_HEAD, "crop_size": 32}).roi.box_head
    head = BoxHead(config, image_channels=1, hidden=HIDDEN, embed_dim=EMBED)
    with torch.no_grad():
        for layer in [*head.pixels_half, head.pixels_quarter]:
            if isinstance(layer, torch.nn.Conv2d):
                layer.weight.fill_(0.05)
                layer.bias.zero_()
    crop = torch.ones(1, 1, 32, 32, requires_grad=True)
    half = head.pixels_half(crop)  # the map centre_stride 2 decodes from (with the deeper one upsampled)
    for out, cells in ((head.pixels_quarter(half), (2, 3, 4, 5)), (half, (4, 6, 8, 10))):
        side = out.shape[-1]
        for k in cells:  # cells whose receptive field does not reach the zero padding
            (grad,) = torch.autograd.grad(out[0, :, k, k].sum(), crop, retain_graph=True)
            weight = grad[0, 0].sum(0)  # along x
            centroid = float((weight * torch.arange(32.0)).sum() / weight.sum())
            # in input pixel indices: cell k's centre (k + 0.5) / side of the window is pixel index
            # (k + 0.5) * 32 / side - 0.5
            assert centroid == pytest.approx((k + 0.5) * 32 / side - 0.5, abs=1e-4), (side, k)
            along_y = float((grad[0, 0].sum(1) * torch.arange(32.0)).sum() / grad.sum())
            assert along_y == pytest.approx(centroid)


def test_generalized_iou_and_the_box_loss_on_known_boxes():
    a = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.1, 0.1]])
    b = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.1, 0.0, 0.3, 0.2], [0.2, 0.0, 0.3, 0.1]])
    # identical: 1; half-shifted: IoU 1/3, no gap; apart: IoU 0, a third of the enclosure empty
    torch.testing.assert_close(generalized_iou(a, b), torch.tensor([1.0, 1 / 3, -1 / 3]))
    assert float(box_regression_loss(a, a, (0.125, 0.125))) == pytest.approx(0.0, abs=1e-6)
    # L1 in cells (the centre 0.1 = 0.8 cell to the right) plus 1 - GIoU (2/3)
    one = box_regression_loss(a[1:2], b[1:2], (0.125, 0.125))
    assert float(one) == pytest.approx(0.8 + 2 / 3, abs=1e-5)


def test_the_box_head_settings_bound_the_jitter_by_the_window():
    with pytest.raises(ValueError, match="half the window"):
        tiny_config(box_head={**TINY_BOX_HEAD, "anchor_jitter": TINY_BOX_HEAD["window"]})
    with pytest.raises(ValueError, match="multiple of 4"):
        tiny_config(box_head={**TINY_BOX_HEAD, "crop_size": 18})
