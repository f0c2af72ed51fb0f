"""RoIAlign (separable bilinear weights) against a plain-Python bilinear oracle, and the box helpers."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from regionmed.model.roi import (
    cell_boxes,
    grid_proposals,
    pack_by_image,
    peak_boxes,
    proposal_boxes,
    roi_align,
    roi_align_shared,
    roi_pool_tokens,
)


def _bilinear(grid: np.ndarray, fx: float, fy: float) -> np.ndarray:
    """Value at a point given as fractions of the image; cell centres at (j + 0.5) / W, clamped."""
    _, h, w = grid.shape
    px = min(max(fx * w - 0.5, 0.0), w - 1.0)
    py = min(max(fy * h - 0.5, 0.0), h - 1.0)
    x0, y0 = math.floor(px), math.floor(py)
    x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
    lx, ly = px - x0, py - y0
    return (1 - ly) * ((1 - lx) * grid[:, y0, x0] + lx * grid[:, y0, x1]) + ly * (
        (1 - lx) * grid[:, y1, x0] + lx * grid[:, y1, x1]
    )


def roi_align_oracle(grid: np.ndarray, boxes: np.ndarray, pool: int, sr: int) -> np.ndarray:
    out = np.zeros((len(boxes), grid.shape[1], pool, pool))
    for n, (b, x0, y0, x1, y1) in enumerate(boxes):
        for i in range(pool):
            for j in range(pool):
                acc = np.zeros(grid.shape[1])
                for iy in range(sr):
                    for ix in range(sr):
                        fy = y0 + (y1 - y0) * (i * sr + iy + 0.5) / (pool * sr)
                        fx = x0 + (x1 - x0) * (j * sr + ix + 0.5) / (pool * sr)
                        acc += _bilinear(grid[int(b)], fx, fy)
                out[n, :, i, j] = acc / (sr * sr)
    return out


box_coord = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def boxes_and_grid(draw):
    bsz, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    gh, gw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    n = draw(st.integers(1, 6))
    rows = []
    for _ in range(n):
        xa, xb, ya, yb = (draw(box_coord) for _ in range(4))
        rows.append([draw(st.integers(0, bsz - 1)), min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)])
    seed = draw(st.integers(0, 10_000))
    grid = np.random.default_rng(seed).normal(size=(bsz, c, gh, gw))
    return grid, np.array(rows, dtype=np.float64), draw(st.integers(1, 3)), draw(st.integers(1, 3))


@settings(max_examples=60, deadline=None)
@given(boxes_and_grid())
def test_roi_align_matches_oracle(case):
    grid, boxes, pool, sr = case
    got = roi_align(torch.from_numpy(grid), torch.from_numpy(boxes), pool, sr).numpy()
    np.testing.assert_allclose(got, roi_align_oracle(grid, boxes, pool, sr), atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(boxes_and_grid())
def test_shared_boxes_as_one_matrix_product_match_the_oracle(case):
    """The same boxes in every image (proposals, cells) go through an interpolation matrix."""
    grid, boxes, pool, sr = case
    shared = boxes[:, 1:]
    got = roi_align_shared(torch.from_numpy(grid), torch.from_numpy(shared), pool, sr).numpy()
    assert got.shape == (grid.shape[0], len(shared), grid.shape[1], pool, pool)
    for b in range(grid.shape[0]):
        per_image = np.concatenate([np.full((len(shared), 1), b), shared], axis=1)
        np.testing.assert_allclose(
            got[b], roi_align_oracle(grid, per_image, pool, sr), rtol=1e-5, atol=1e-5
        )  # float32 matmul vs a float64 oracle


def test_whole_image_box_at_grid_resolution_returns_the_grid():
    grid = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    boxes = torch.tensor([[1, 0, 0, 1, 1], [0, 0, 0, 1, 1]], dtype=torch.float64)
    out = roi_align(grid, boxes, pool_size=4, sampling_ratio=1)
    torch.testing.assert_close(out, grid.flip(0))


def test_roi_align_is_differentiable_and_handles_no_boxes():
    grid = torch.randn(1, 2, 3, 3, requires_grad=True)
    roi_align(grid, torch.tensor([[0, 0.1, 0.2, 0.7, 0.9]]), 2, 2).sum().backward()
    assert grid.grad is not None and grid.grad.abs().sum() > 0
    assert roi_align(grid, torch.zeros(0, 5), 2, 2).shape == (0, 2, 2, 2)


def test_pack_by_image_round_trips_unsorted_rows():
    values = torch.arange(7.0)[:, None]
    batch = torch.tensor([2, 0, 2, 1, 0, 2, 0])
    packed, mask, slot = pack_by_image(values, batch, 4)
    assert packed.shape == (4, 3, 1) and mask.sum() == 7 and not mask[3].any()
    torch.testing.assert_close(packed[batch, slot], values)


def test_proposals_tile_the_image():
    boxes = grid_proposals([2, 3, 4])
    assert boxes.shape == (29, 4)
    for start, n in ((0, 2), (4, 3), (13, 4)):
        tile = boxes[start : start + n * n]
        area = ((tile[:, 2] - tile[:, 0]) * (tile[:, 3] - tile[:, 1])).sum()
        assert torch.isclose(area, torch.tensor(1.0))
    assert torch.equal(proposal_boxes("grid", [2, 3, 4]), boxes)
    cells = cell_boxes(2, 3)
    assert torch.allclose(cells[4], torch.tensor([1 / 3, 0.5, 2 / 3, 1.0]))


def test_similarity_proposals_centre_on_the_peak():
    heat = torch.zeros(1, 4, 4)
    heat[0, 1, 2] = 5.0
    peaks = peak_boxes(heat, top_k=1, half_extents=(0.5,))
    assert torch.allclose(peaks[0, 0], torch.tensor([0.5, 0.25, 0.75, 0.5]))
    boxes = proposal_boxes("similarity", [2], heatmap=heat, top_k=2)
    assert boxes.shape == (1, 4 + 2 * 3, 4) and (boxes >= 0).all() and (boxes <= 1).all()


@settings(max_examples=40, deadline=None)
@given(boxes_and_grid(), st.booleans())
def test_region_tokens_are_roi_align_as_one_matrix_product(case, shared):
    """``roi_pool_tokens`` (the region path's pooling, from the ViT's token layout) is RoIAlign with
    the bins ordered (i, j, channel), for shared and for per-image boxes."""
    grid, boxes, pool, sr = case
    bsz, c, gh, gw = grid.shape
    tokens = torch.from_numpy(grid).flatten(2).transpose(1, 2)
    if shared:
        got = roi_pool_tokens(tokens, torch.from_numpy(boxes[:, 1:]), (gh, gw), pool, sr)
        per_image = [np.concatenate([np.full((len(boxes), 1), b), boxes[:, 1:]], axis=1) for b in range(bsz)]
    else:  # one box per image, each from its own image
        rows = np.concatenate([np.arange(bsz)[:, None], np.resize(boxes[:, 1:], (bsz, 4))], axis=1)
        got = roi_pool_tokens(tokens, torch.from_numpy(rows[:, None, 1:]), (gh, gw), pool, sr)
        per_image = [rows[b : b + 1] for b in range(bsz)]
    assert got.shape == (bsz, len(per_image[0]), pool * pool * c)
    for b in range(bsz):
        want = (
            roi_align_oracle(grid, per_image[b], pool, sr)
            .transpose(0, 2, 3, 1)
            .reshape(len(per_image[b]), -1)
        )
        np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-10, atol=1e-10)
