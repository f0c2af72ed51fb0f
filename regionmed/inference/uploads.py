"""Uploads as the model takes them: bytes → decoded pixels → the model's square input, with the
descriptors the embedding log keeps (sizes, format, byte count, mean and std of the model input).

Shared by the service (each upload), the package stage (the retrieval index) and the drift
reference (the descriptors of the reference split), so all three see an image the same way.
Decoding is the corpus's own (``regionmed.corpus.images``): PNG, JPEG, DICOM incl. MONOCHROME1,
pixel count checked from the header; then channels, letterbox, float 0..1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from regionmed.corpus.images import (
    ImageError,
    Letterbox,
    decode_image,
    header_size,
    is_dicom,
    letterbox,
    set_channels,
    to_model_input,
)


def sniff_format(data: bytes) -> str:
    """``png`` | ``jpeg`` | ``dicom`` | ``other`` from the magic bytes (for the log's descriptors)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if is_dicom(data):
        return "dicom"
    return "other"


@dataclass
class DecodedImage:
    """An upload decoded to uint8 pixels, with the descriptors the monitoring log keeps.

    ``request`` is the (unhashed) id of the request that sent it, so a batched call can log each
    embedding against its own request.
    """

    array: np.ndarray
    descriptors: dict[str, Any]
    request: str = ""


@dataclass
class PreparedImage:
    """A decoded image as the model takes it: ``pixels`` float32 ``[C, H, W]`` and how it was fitted."""

    pixels: np.ndarray
    fit: Letterbox | None
    descriptors: dict[str, Any] = field(default_factory=dict)

    def to_model_box(self, box: Sequence[float]) -> list[float]:
        """A box normalised to the upload → the same box normalised to the model's square input."""
        if self.fit is None:
            return [float(v) for v in box]
        w, h = self.fit.width, self.fit.height
        return list(self.fit.box_to_normalised([box[0] * w, box[1] * h, box[2] * w, box[3] * h]))

    def to_upload_box(self, box: Sequence[float]) -> list[float]:
        """A box normalised to the model's square input → normalised to the upload (clipped to 0..1)."""
        if self.fit is None:
            return [float(np.clip(v, 0, 1)) for v in box]
        f = self.fit
        xs = [(box[i] * f.size - f.pad_x) / f.scale_x / f.width for i in (0, 2)]
        ys = [(box[i] * f.size - f.pad_y) / f.scale_y / f.height for i in (1, 3)]
        return [float(np.clip(v, 0, 1)) for v in (xs[0], ys[0], xs[1], ys[1])]


def decode_upload(
    data: bytes, max_pixels: int, dicom_window: str = "header", reduce_to: int | None = None
) -> DecodedImage:
    """Bytes of a PNG/JPEG/DICOM → :class:`DecodedImage`; :class:`ImageError` says what is wrong.

    Only sizes, the format and counts are kept: nothing from a DICOM header beyond rows/columns.
    ``reduce_to``: decode reduced to no less than this on the longer side (the model's input size);
    the descriptors still give the upload's own width and height.
    """
    if not data:
        raise ImageError("the image is empty (0 bytes)", "not_an_image")
    size = header_size(data) if reduce_to else None
    try:
        arr = decode_image(data, max_pixels, dicom_window, reduce_to)
    except ImageError:
        raise
    except Exception as exc:  # a decoder bug must still be a 4xx about this file, never a 500
        raise ImageError(f"unreadable image ({type(exc).__name__})") from None
    if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"unsupported image shape {arr.shape}")
    width, height = size if size else (int(arr.shape[1]), int(arr.shape[0]))
    desc = {
        "width": int(width),
        "height": int(height),
        "channels": 1 if arr.ndim == 2 else int(arr.shape[2]),
        "format": sniff_format(data),
        "bytes": len(data),
    }
    return DecodedImage(arr, desc)


def prepare_image(decoded: DecodedImage, image_size: int, channels: int) -> PreparedImage:
    """A decoded image fitted to a ``image_size`` square of ``channels`` (letterboxed when not square),
    with the descriptors plus the model input's ``mean`` and ``std``."""
    arr = set_channels(decoded.array, channels)
    fit = None
    if arr.shape[:2] != (image_size, image_size):
        arr, fit = letterbox(arr, image_size)
    pixels = to_model_input(arr, channels)
    desc = {**decoded.descriptors, "mean": float(pixels.mean()), "std": float(pixels.std())}
    return PreparedImage(pixels, fit, desc)
