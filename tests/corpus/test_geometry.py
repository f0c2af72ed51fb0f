"""Box transforms under resize + pad, and split stability (property-based)."""

from __future__ import annotations

import numpy as np
from helpers.params import default_section
from hypothesis import given, settings
from hypothesis import strategies as st

from regionmed.corpus.images import letterbox
from regionmed.corpus.splits import assign_splits, hashed_split


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(8, 300),
    h=st.integers(8, 300),
    size=st.sampled_from([32, 64, 128]),
    fx=st.tuples(st.floats(0, 0.9), st.floats(0.05, 1)),
    fy=st.tuples(st.floats(0, 0.9), st.floats(0.05, 1)),
)
def test_a_box_marks_the_same_pixels_after_letterbox(w, h, size, fx, fy):
    """Paint a box white on black, letterbox the image, and the transformed box bounds the white pixels."""
    x0 = int(fx[0] * w)
    x1 = max(x0 + 1, min(w, x0 + int(fx[1] * (w - x0)) + 1))
    y0 = int(fy[0] * h)
    y1 = max(y0 + 1, min(h, y0 + int(fy[1] * (h - y0)) + 1))
    img = np.zeros((h, w), dtype=np.uint8)
    img[y0:y1, x0:x1] = 255
    out, fit = letterbox(img, size)
    assert out.shape == (size, size)
    bx0, by0, bx1, by1 = fit.box_to_normalised((x0, y0, x1, y1))
    assert 0 <= bx0 < bx1 <= 1 + 1e-9 and 0 <= by0 < by1 <= 1 + 1e-9
    ys, xs = np.nonzero(out > 127)
    if xs.size:  # boxes thinner than a pixel after downscaling may vanish; their box stays valid
        tol = 1.5 / size + 1.0 / min(w, h) * (size / max(w, h)) / size
        assert xs.min() / size >= bx0 - tol and (xs.max() + 1) / size <= bx1 + tol
        assert ys.min() / size >= by0 - tol and (ys.max() + 1) / size <= by1 + tol


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), min_size=5, max_size=60, unique=True), st.integers(0, 5))
def test_splits_are_stable_when_records_are_added(patients, seed):
    fractions = default_section("corpus.split")
    first = {p: hashed_split(p, seed, fractions) for p in patients[: len(patients) // 2]}
    records = {f"r{i}": p for i, p in enumerate(patients)}
    after = assign_splits(records, {}, seed, fractions)
    for record, patient in records.items():
        if patient in first:
            assert after[record] == first[patient]


def test_a_given_split_is_kept_per_patient():
    records = {"a1": "A", "a2": "A", "b1": "B"}
    given = {"a1": "test", "a2": "train", "b1": "val"}
    out = assign_splits(records, given, 0, default_section("corpus.split"))
    assert out == {"a1": "test", "a2": "test", "b1": "val"}
