"""Decoding reduced to the size the caller needs (the service: the model's input): JPEG draft
mode and an integer box-filter reduction, never below the requested side."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from regionmed.corpus.images import decode_image
from regionmed.inference.uploads import decode_upload


def _image(fmt: str, width: int, height: int) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    arr = ((x // 64 + y // 64) % 2 * 200 + 20).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_big_image_is_decoded_reduced_but_not_below_the_model_side(fmt):
    data = _image(fmt, 4096, 2048)
    arr = decode_image(data, 20_000_000, reduce_to=128)
    assert 128 <= max(arr.shape[:2]) < 256, arr.shape
    assert abs(arr.shape[1] / arr.shape[0] - 2.0) < 0.05  # aspect kept
    full = decode_image(data, 20_000_000)
    assert full.shape[:2] == (2048, 4096)


def test_small_images_are_left_as_they_are():
    data = _image("PNG", 200, 150)
    assert decode_image(data, 1_000_000, reduce_to=128).shape == (150, 200)


def test_the_upload_descriptors_keep_the_uploads_own_size():
    decoded = decode_upload(_image("JPEG", 3000, 1000), 20_000_000, reduce_to=128)
    assert max(decoded.array.shape[:2]) < 256
    assert (decoded.descriptors["width"], decoded.descriptors["height"]) == (3000, 1000)
