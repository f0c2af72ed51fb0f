"""The packaged model as a function, with no BentoML in it: decoded images and strings in, numpy out.

The service (``regionmed/serving``), the package stage (the retrieval index), the drift reference
and the benchmark's in-process baseline all call this class, so HTTP and in-process numbers measure
the same work. Uploads are decoded and prepared in :mod:`regionmed.inference.uploads`. Every torch call and
every tokenizer call holds one lock: a fast tokenizer is not safe to call from two threads, and on a small CPU
one model call at a time with all cores is faster than two that fight over them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from regionmed.corpus.images import sha256_file
from regionmed.inference.uploads import DecodedImage, PreparedImage, prepare_image

CLASS_CACHE_SIZE = 256  # zero-shot label sets whose class embeddings are kept


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
    def from_dir(
        cls,
        path: str | Path,
        *,
        version: str | None = None,
        info: dict | None = None,
        index=None,
        device: str = "cpu",
    ) -> Engine:
        """``device``: ``cpu``, ``cuda`` or ``auto`` (cuda when available)."""
        from regionmed.model.io import WEIGHTS_FILE, load_model

        path = Path(path)
        model, tokenizer = load_model(path, resolve_device(device))
        if version is None:
            version = "dir-" + sha256_file(path / WEIGHTS_FILE)[:12]
        return cls(model, tokenizer, version=version, info=info, index=index)

    # ---- preprocessing -------------------------------------------------------------------------
    def prepare(self, decoded: DecodedImage) -> PreparedImage:
        return prepare_image(decoded, self.image_size, self.channels)

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
            ids = self.tokenizer(
                [str(t) for t in texts], add_special_tokens=True, truncation=False, verbose=False
            )["input_ids"]
        return [len(i) for i in ids]

    def knows_no_token_of(self, text: str) -> bool:
        """True when every token of ``text`` is the tokenizer's unknown token (or there is none):
        the model then answers from its special tokens alone, not from the text."""
        with self.lock:
            ids = self.tokenizer(str(text), add_special_tokens=False, truncation=False, verbose=False)[
                "input_ids"
            ]
        unk = self.tokenizer.unk_token_id
        return not ids or (unk is not None and all(i == unk for i in ids))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings → ``[N, D]`` L2-normalised text embeddings (each distinct string encoded once)."""
        from regionmed.model.text import encode_text_list

        if not texts:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        with self.lock, torch.inference_mode():
            return (
                encode_text_list(
                    self.model, self.tokenizer, [str(t) for t in texts], max_length=self.max_length
                )
                .float()
                .cpu()
                .numpy()
            )

    def text_descriptors(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        counts = self.token_counts(texts)
        return [
            {"n_chars": len(t), "n_tokens": n, "truncated": n > self.max_length}
            for t, n in zip(texts, counts, strict=True)
        ]

    # ---- zero-shot -------------------------------------------------------------------------------
    def class_embeddings(self, classes: Sequence[str], use_templates: bool = True) -> np.ndarray:
        """``[C, D]``: per label the prompt-ensembled embedding (templates from
        ``regionmed/prompts/zeroshot.yaml``), or with ``use_templates=False`` each string embedded as it is (a
        prompt)."""
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

    def cached_class_embeddings(
        self, classes: Sequence[str], use_templates: bool = True
    ) -> np.ndarray | None:
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

    def zero_shot(
        self, images: Sequence[PreparedImage], classes: Sequence[str], use_templates: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
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
        warning = None
        if self.knows_no_token_of(phrase):
            warning = (
                "the phrase has no word the model knows (every token is unknown to its tokenizer): "
                "the box and score do not come from the phrase"
            )
        return {
            "box": image.to_upload_box(box_model.tolist()),
            "box_model": [float(v) for v in box_model],
            "score": score,
            "heatmap": heat[0].float().numpy(),
            "text_embedding": text[0],
            "warning": warning,
        }

    def encode_regions(self, image: PreparedImage, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """Boxes normalised to the upload → ``[N, D]`` region embeddings."""
        if self.global_only:
            raise ValueError("the served model is global-only: it has no region embeddings")
        model_boxes = torch.tensor([image.to_model_box(b) for b in boxes], dtype=torch.float32)
        x = torch.from_numpy(image.pixels[None].astype(np.float32)).to(self.device)
        with self.lock, torch.inference_mode():
            return self.model.encode_regions(x, [model_boxes.to(self.device)]).float().cpu().numpy()


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error, not a
    fallback."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"serving.device is {device!r} but torch sees no CUDA device")
    return device
