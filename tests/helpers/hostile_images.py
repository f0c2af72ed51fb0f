"""Unusual images for the importer's and the service's tests: JPEGs with an EXIF orientation tag
(as phones and many PACS exports write them) and what a viewer shows of them, images in formats
that are not accepted, a PNG whose header claims more pixels than Pillow's own bomb limit."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

# What a viewer does to the stored pixels for each orientation we test (numpy rot90 turns
# counter-clockwise): 6 = rotate 90° clockwise to display, 8 = 90° counter-clockwise.
DISPLAY_TURNS = {6: -1, 8: 1}


def stored_pixels(width: int = 96, height: int = 64) -> np.ndarray:
    """A dark image as stored, with a bright block in its top-left corner (so a turn moves it)."""
    arr = np.full((height, width, 3), 20, dtype=np.uint8)
    arr[4:20, 6:30] = 240
    return arr


def oriented_jpeg(stored: np.ndarray, orientation: int) -> bytes:
    """JPEG bytes of ``stored`` with the EXIF orientation tag set."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, format="JPEG", quality=98, exif=exif.tobytes())
    return buf.getvalue()


def decoded_as_stored(jpeg: bytes) -> np.ndarray:
    """The JPEG's pixels as stored (orientation ignored), as Pillow decodes them."""
    with Image.open(io.BytesIO(jpeg)) as img:
        return np.asarray(img.convert("RGB")).copy()


def displayed(stored: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows of ``stored`` with that orientation tag."""
    return np.ascontiguousarray(np.rot90(stored, DISPLAY_TURNS[orientation]))


def bright_box(shown: np.ndarray, threshold: int = 128) -> list[int]:
    """``[x0, y0, x1, y1]`` in pixels around the bright block of a displayed image."""
    ys, xs = np.nonzero(shown[..., 0] > threshold)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def other_format(fmt: str) -> bytes:
    """A small image in a format Pillow reads but the project does not accept (GIF, TIFF, BMP, WEBP)."""
    buf = io.BytesIO()
    Image.fromarray(stored_pixels()).save(buf, format=fmt)
    return buf.getvalue()


def header_bomb_png(width: int = 20_000, height: int = 10_000) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (default 200 M: over Pillow's own
    decompression-bomb limit of 2 x 89.5 M), with almost no data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
