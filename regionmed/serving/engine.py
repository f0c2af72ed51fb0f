"""The model behind the service, with no BentoML in it: bytes and strings in, numpy out.

The service (``service.py``), the package stage (the retrieval index) and the benchmark's
in-process baseline all call this class, so HTTP and in-process numbers measure the same work.

Images go through the corpus's own preprocessing (``regionmed.corpus.images``): decode (PNG, JPEG,
DICOM incl. MONOCHROME1; pixel count checked from the header), channels, letterbox to the model's
square input, float 0..1. Every torch call and every tokenizer call holds one lock: a fast
tokenizer is not safe to call from two threads, and on a small CPU one model call at a time with
all cores is faster than two that fight over them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from regionmed.corpus.images import (
    ImageError,
    Letterbox,
    decode_image,
    is_dicom,
    letterbox,
    set_channels,
    to_model_input,
)

CLASS_CACHE_SIZE = 256  # zero-shot label sets whose class embeddings are kept


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


def decode_upload(data: bytes, max_pixels: int, dicom_window: str = "header") -> DecodedImage:
    """Bytes of a PNG/JPEG/DICOM → :class:`DecodedImage`; :class:`ImageError` says what is wrong.

    Only sizes, the format and counts are kept: nothing from a DICOM header beyond rows/columns.
    """
    if not data:
        raise ImageError("the image is empty (0 bytes)", "not_an_image")
    try:
        arr = decode_image(data, max_pixels, dicom_window)
    except ImageError:
        raise
    except Exception as exc:  # noqa: BLE001  a decoder bug must still be a 4xx about this file, never a 500
        raise ImageError(f"unreadable image ({type(exc).__name__})") from None
    if arr.ndim not in (2, 3) or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"unsupported image shape {arr.shape}")
    desc = {"width": int(arr.shape[1]), "height": int(arr.shape[0]),
            "channels": 1 if arr.ndim == 2 else int(arr.shape[2]), "format": sniff_format(data),
            "bytes": len(data)}
    return DecodedImage(arr, desc)


class Engine:
    """A loaded RegionCLIP, its tokenizer and (optionally) a retrieval index."""

    def __init__(self, model, tokenizer, *, version: str, info: dict | None = None, index=None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.device = next(model.parameters()).device
        self.version = version
        self.info = info or {}
        self.index = index
        self.lock = threading.Lock()
        self._class_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()  # not the model's: a cache hit never waits for a model call
        cfg = model.config
        self.image_size, self.channels = cfg.vision.image_size, cfg.vision.channels
        self.max_length, self.embed_dim = cfg.text.max_length, cfg.embed_dim
        self.global_only = bool(model.global_only)
        with torch.inference_mode():
            self.logit_scale = float(model.scale())

    @classmethod
    def from_dir(cls, path: str | Path, *, version: str | None = None, info: dict | None = None,
                 index=None, device: str = "cpu") -> Engine:
        """``device``: ``cpu``, ``cuda`` or ``auto`` (cuda when available)."""
        from regionmed.model.io import WEIGHTS_FILE, load_model

        path = Path(path)
        model, tokenizer = load_model(path, resolve_device(device))
        if version is None:
            version = "dir-" + _file_digest(path / WEIGHTS_FILE)[:12]
        return cls(model, tokenizer, version=version, info=info, index=index)

    # ---- preprocessing -------------------------------------------------------------------------
    def prepare(self, decoded: DecodedImage) -> PreparedImage:
        arr = set_channels(decoded.array, self.channels)
        fit = None
        if arr.shape[:2] != (self.image_size, self.image_size):
            arr, fit = letterbox(arr, self.image_size)
        pixels = to_model_input(arr, self.channels)
        desc = {**decoded.descriptors, "mean": float(pixels.mean()), "std": float(pixels.std())}
        return PreparedImage(pixels, fit, desc)

    # ---- encoders --------------------------------------------------------------------------------
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """``[B, C, H, W]`` float 0..1 → ``[B, D]`` L2-normalised image embeddings."""
        x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).to(self.device)
        with self.lock, torch.inference_mode():
            return self.model.encode_image(x).float().cpu().numpy()

    def encode_images(self, images: Sequence[PreparedImage]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return self.encode_pixels(np.stack([im.pixels for im in images]))

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text with the special tokens, before truncation to the model's max length."""
        with self.lock:
            ids = self.tokenizer([str(t) for t in texts], add_special_tokens=True, truncation=False,
                                 verbose=False)["input_ids"]
        return [len(i) for i in ids]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings → ``[N, D]`` L2-normalised text embeddings (each distinct string encoded once)."""
        from regionmed.model.text import encode_text_list

        if not texts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        with self.lock, torch.inference_mode():
            return encode_text_list(self.model, self.tokenizer, [str(t) for t in texts],
                                    max_length=self.max_length).float().cpu().numpy()

    def text_descriptors(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        counts = self.token_counts(texts)
        return [{"n_chars": len(t), "n_tokens": n, "truncated": n > self.max_length} for t, n in zip(texts, counts)]

    # ---- zero-shot -------------------------------------------------------------------------------
    def class_embeddings(self, classes: Sequence[str], use_templates: bool = True) -> np.ndarray:
        """``[C, D]``: per label the prompt-ensembled embedding (templates from
        ``regionmed/prompts/zeroshot.yaml``), or with ``use_templates=False`` each string embedded as it is (a prompt)."""
        hit = self.cached_class_embeddings(classes, use_templates)
        if hit is not None:
            return hit
        key = (bool(use_templates), *classes)
        if use_templates:
            from regionmed.prompts.templates import build_prompts, embed_prompt_sets

            emb = embed_prompt_sets(lambda ts: self.encode_texts(ts), build_prompts(list(classes)))
        else:
            emb = self.encode_texts(list(classes))
        emb = np.asarray(emb, dtype=np.float32)
        with self._cache_lock:
            self._class_cache[key] = emb
            while len(self._class_cache) > CLASS_CACHE_SIZE:
                self._class_cache.popitem(last=False)
        return emb

    def cached_class_embeddings(self, classes: Sequence[str], use_templates: bool = True) -> np.ndarray | None:
        """:meth:`class_embeddings` if this label set is in the cache, else ``None``; never runs the model."""
        key = (bool(use_templates), *classes)
        with self._cache_lock:
            hit = self._class_cache.get(key)
            if hit is not None:
                self._class_cache.move_to_end(key)
            return hit

    def probabilities(self, image_emb: np.ndarray, class_emb: np.ndarray) -> np.ndarray:
        """Softmax over classes of ``logit_scale * cos`` → ``[N, C]``."""
        logits = self.logit_scale * (np.atleast_2d(image_emb) @ class_emb.T)
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def zero_shot(self, images: Sequence[PreparedImage], classes: Sequence[str],
                  use_templates: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(image embeddings [N, D], probabilities [N, C])``."""
        emb = self.encode_images(images)
        return emb, self.probabilities(emb, self.class_embeddings(classes, use_templates))

    # ---- regions ---------------------------------------------------------------------------------
    def ground(self, image: PreparedImage, phrase: str) -> dict[str, Any]:
        """Where is ``phrase``? → box (normalised to the upload), its score (cosine of the box's
        region embedding with the phrase), the heatmap over the model input's patch grid and the
        phrase embedding."""
        text = self.encode_texts([phrase])
        x = torch.from_numpy(image.pixels[None].astype(np.float32)).to(self.device)
        t = torch.from_numpy(text).to(self.device)
        with self.lock, torch.inference_mode():
            heat, box = self.model.ground(x, t)
            heat, box_model = heat.float().cpu(), box[0].float().cpu()
            if self.global_only:
                score = float(heat.max())
            else:
                region = self.model.encode_regions(x, [box_model[None].to(self.device)])
                score = float((region.float() @ t[0].float()).item())
        return {"box": image.to_upload_box(box_model.tolist()), "box_model": [float(v) for v in box_model],
                "score": score, "heatmap": heat[0].float().numpy(), "text_embedding": text[0]}

    def encode_regions(self, image: PreparedImage, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """Boxes normalised to the upload → ``[N, D]`` region embeddings."""
        if self.global_only:
            raise ValueError("the served model is global-only: it has no region embeddings")
        model_boxes = torch.tensor([image.to_model_box(b) for b in boxes], dtype=torch.float32)
        x = torch.from_numpy(image.pixels[None].astype(np.float32)).to(self.device)
        with self.lock, torch.inference_mode():
            return self.model.encode_regions(x, [model_boxes.to(self.device)]).float().cpu().numpy()


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error, not a fallback."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"serving.device is {device!r} but torch sees no CUDA device")
    return device


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
