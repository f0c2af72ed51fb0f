"""Reading and normalising images: PNG, JPEG and DICOM in, the corpus's 8-bit square images out.

Shared by the corpus build and the service, so that an image is prepared the same way for
training and for inference. Every failure raises :class:`ImageError` with a reason that the
caller files against the record (never a crash of the whole build).
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from regionmed.corpus.shards import image_bytes

DICOM_MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
# The formats Pillow may decode here (DICOM is sniffed and read by pydicom before Pillow is asked):
# every other decoder Pillow has (GIF, TIFF, BMP, WebP, ...) stays out of reach of uploaded bytes.
PIL_FORMATS = ("PNG", "JPEG")
# Named in the rejection of a format that is not accepted (magic bytes → name).
_OTHER_FORMATS = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
    b"\x00\x00\x01\x00": "ICO",
    b"8BPS": "PSD",
    b"\xff\x4f\xff\x51": "JPEG 2000 codestream",
    b"\x00\x00\x00\x0cjP": "JPEG 2000",
}
# EXIF orientations that swap width and height (5..8: transposed, rotated 90° or 270°).
EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})
# One pixel limit, the caller's ``max_pixels`` (checked from the header before decoding): Pillow's own
# decompression-bomb check would otherwise refuse at 2 x 89 M pixels with its own message, whatever
# limit was configured. Every decode of outside bytes in the package goes through decode_image.
Image.MAX_IMAGE_PIXELS = None


class ImageError(ValueError):
    """An image that cannot be used, with a reason a person can act on and a short category."""

    def __init__(self, message: str, category: str = "unreadable_image"):
        super().__init__(message)
        self.category = category


@dataclass(frozen=True)
class Letterbox:
    """How a source image of ``width`` x ``height`` was fitted into a ``size`` x ``size`` square."""

    width: int
    height: int
    size: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def box_to_normalised(self, box_px) -> tuple[float, float, float, float]:
        """A box in source pixels ``[x0, y0, x1, y1]`` → the same box normalised in the square."""
        x0, y0, x1, y1 = (float(v) for v in box_px)
        return (
            (x0 * self.scale_x + self.pad_x) / self.size,
            (y0 * self.scale_y + self.pad_y) / self.size,
            (x1 * self.scale_x + self.pad_x) / self.size,
            (y1 * self.scale_y + self.pad_y) / self.size,
        )


def is_dicom(data: bytes) -> bool:
    return data[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == DICOM_MAGIC


def decode_image(
    data: bytes, max_pixels: int, dicom_window: str = "header", reduce_to: int | None = None
) -> np.ndarray:
    """Bytes of a PNG, JPEG or DICOM file → uint8 array (H, W) or (H, W, 3), as a viewer shows it.

    The pixel count is checked from the header before any pixel is decoded (no decompression bombs).
    Other formats are refused (``unsupported_format``). A JPEG's or PNG's EXIF orientation is
    applied here, once, so the importer and the service see the same displayed orientation (boxes
    are drawn on that).

    ``reduce_to``: the size the caller will resize to (the service: the model's input). The image is
    then decoded at a reduced scale where the decoder can (JPEG draft mode: 1/2..1/8) and reduced by
    an integer factor (box filter) right after, never below ``reduce_to`` on its longer side, so no
    full-size copy outlives this call.
    """
    if is_dicom(data):
        return _reduced(_decode_dicom(data, max_pixels, dicom_window), reduce_to)
    try:
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(
                    f"image too large: {w}x{h} = {w * h} pixels > limit {max_pixels}", "image_too_large"
                )
            if w == 0 or h == 0:
                raise ImageError("image has zero width or height", "unreadable_image")
            if reduce_to and img.format == "JPEG" and max(w, h) >= 2 * reduce_to:
                scale = reduce_to / max(w, h)
                img.draft(img.mode, (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
            img.load()
            return _reduced(_pil_to_array(_displayed(img)), reduce_to)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        other = next((name for magic, name in _OTHER_FORMATS.items() if data.startswith(magic)), None)
        if other is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            other = "WebP"
        if other:
            raise ImageError(
                f"{other} images are not accepted: send PNG, JPEG or DICOM", "unsupported_format"
            ) from None
        raise ImageError(
            f"not a readable PNG/JPEG/DICOM image ({type(exc).__name__})", "not_an_image"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"unreadable or truncated image ({exc})") from None


def _reduced(arr: np.ndarray, reduce_to: int | None) -> np.ndarray:
    """``arr`` shrunk by the largest integer factor that keeps its longer side >= ``reduce_to``."""
    factor = max(arr.shape[:2]) // reduce_to if reduce_to else 1
    if factor < 2:
        return arr
    return np.asarray(Image.fromarray(arr).reduce(factor))


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` as displayed, from the header alone (no pixel decoded); ``None`` when the
    header cannot be read (the decoder then says what is wrong)."""
    try:
        if is_dicom(data):
            import pydicom

            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            return int(ds.get("Columns", 0)), int(ds.get("Rows", 0))
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as img:
            return displayed_size(img)
    except Exception:  # unreadable: decode_image reports it with its reason
        return None


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = as stored); 1 for a missing or broken EXIF block."""
    try:
        value = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block: keep the stored orientation
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _displayed(img: Image.Image) -> Image.Image:
    """The image as a viewer shows it: its EXIF orientation applied (no copy when there is none)."""
    return img if _orientation(img) == 1 else ImageOps.exif_transpose(img)


def displayed_size(img: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of an opened image as a viewer shows it (EXIF orientation applied)."""
    w, h = img.size
    return (h, w) if _orientation(img) in TRANSPOSED_ORIENTATIONS else (w, h)


def _pil_to_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        return _to_uint8(arr)
    if img.mode not in ("L", "RGB"):
        img = img.convert("RGB") if img.mode in ("RGBA", "P", "CMYK", "YCbCr", "LA") else img.convert("L")
    return np.asarray(img, dtype=np.uint8).copy()


def _decode_dicom(data: bytes, max_pixels: int, dicom_window: str) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # pydicom raises many types for broken files
        raise ImageError(f"unreadable DICOM ({type(exc).__name__}: {exc})") from None
    if "PixelData" not in ds:
        raise ImageError("DICOM has no pixel data", "no_pixel_data")
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows * cols > max_pixels:
        raise ImageError(
            f"image too large: {cols}x{rows} = {rows * cols} pixels > limit {max_pixels}", "image_too_large"
        )
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ImageError(f"DICOM pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3 and ds.get("SamplesPerPixel", 1) == 1:
        arr = arr[arr.shape[0] // 2]  # a multi-frame volume: take its middle slice
    if ds.get("SamplesPerPixel", 1) == 3:
        return _to_uint8(np.asarray(arr, dtype=np.float64))
    arr = apply_modality_lut(arr, ds)  # rescale slope / intercept
    if dicom_window == "header" and "WindowCenter" in ds:
        arr = apply_voi_lut(arr, ds)
    out = _to_uint8(np.asarray(arr, dtype=np.float64))
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 255 - out  # MONOCHROME1: high values are dark
    return out


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    return np.clip((arr - lo) / (hi - lo) * 255 + 0.5, 0, 255).astype(np.uint8)


def set_channels(arr: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        if arr.ndim == 3:  # ITU-R 601 luma, as PIL's "L" conversion
            arr = (arr[..., :3] @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)
        return arr
    return np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr[..., :3]


def letterbox(arr: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio so the longer side is ``size``, then pad to a centred square."""
    h, w = arr.shape[:2]
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = np.asarray(Image.fromarray(arr).resize((new_w, new_h), Image.Resampling.BILINEAR))
    out = np.zeros((size, size, *arr.shape[2:]), dtype=np.uint8)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    # Per-axis scales: rounding makes them differ slightly from ``scale``.
    return out, Letterbox(w, h, size, new_w / w, new_h / h, float(pad_x), float(pad_y))


def encode_png(arr: np.ndarray) -> bytes:
    """Deterministic PNG bytes (no timestamps or text chunks)."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def open_stored(path: str | Path) -> Image.Image:
    """A stored image (a file, or a shard member: regionmed/corpus/shards.py) as a PIL image."""
    return Image.open(io.BytesIO(image_bytes(path)))


def read_png(path: str | Path) -> np.ndarray:
    """The pixels of a stored image: a file, or a shard member (regionmed/corpus/shards.py)."""
    with Image.open(io.BytesIO(image_bytes(path))) as img:
        return np.asarray(img, dtype=np.uint8).copy()


def to_model_input(arr: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (H, W[, 3]) → float32 (C, H, W) in 0..1, the input every model of the package takes."""
    arr = set_channels(arr, channels)
    x = arr.astype(np.float32) / 255.0
    return x[None] if x.ndim == 2 else np.transpose(x, (2, 0, 1))
