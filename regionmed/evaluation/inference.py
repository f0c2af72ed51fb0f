"""Batched calls into an exported model for evaluation: images, texts, grounding, regions.

Everything runs under ``torch.inference_mode()`` in fixed-size batches, so memory stays flat
whatever the size of the test split. The image embeddings of a split, and the test pixels, are
computed on the cluster in chunks of whole batches (:func:`cluster_pixels`,
:func:`cluster_image_embeddings`; regionmed/inference/image_tasks.py): each task reads its images and
embeds them with :meth:`Encoder.images`, on the worker's copy of the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from regionmed.corpus.images import read_png, to_model_input
from regionmed.inference.image_tasks import run_chunked, worker_model
from regionmed.model.regionclip import RegionCLIP
from regionmed.model.text import encode_text_list


def load_pixels(corpus_dir: str | Path, df: pd.DataFrame, channels: int) -> torch.Tensor:
    """``[N, C, H, W]`` float pixels in 0..1 of the manifest rows, in row order."""
    return torch.from_numpy(read_pixels(str(corpus_dir), channels, list(df["image_path"])))


def read_pixels(corpus_dir: str, channels: int, paths: list[str]) -> np.ndarray:
    """One pixel task (on a cluster worker, or in process): ``[N, C, H, W]`` float 0..1 of ``paths``."""
    arrays = [to_model_input(read_png(Path(corpus_dir) / p), channels) for p in paths]
    return np.stack(arrays) if arrays else np.zeros(0, dtype=np.float32)


def embed_images(model_dir: str, corpus_dir: str, channels: int, batch_size: int, paths: list[str]):
    """One embedding task (on a cluster worker): :meth:`Encoder.images` of ``paths``' pixels, with the
    worker's copy of the model in ``model_dir``."""
    model, tokenizer = worker_model(model_dir)
    pixels = torch.from_numpy(read_pixels(corpus_dir, channels, paths))
    return Encoder(model, tokenizer, batch_size).images(pixels)


def cluster_pixels(client, corpus_dir: str | Path, df: pd.DataFrame, channels: int, batch_size: int):
    """:func:`load_pixels` with the images read on the cluster (``client``), in row order."""
    (chunks,) = run_chunked(
        client,
        read_pixels,
        [list(df["image_path"])],
        batch_size,
        name="read test pixels",
        shared=(str(Path(corpus_dir).resolve()), channels),
    )
    return torch.from_numpy(np.concatenate(chunks)) if chunks else torch.zeros(0)


def cluster_image_embeddings(
    client,
    model_dir: str | Path,
    corpus_dir: str | Path,
    frames: Sequence[pd.DataFrame],
    channels: int,
    batch_size: int,
    label: str = "model",
) -> list[np.ndarray]:
    """Per frame, the image embeddings of its rows in order (as ``Encoder.images`` of their
    :func:`load_pixels` in batches of ``batch_size``), embedded on the cluster (``client``). ``label``
    names the tasks: one per model on one client (a task's name is its key on the scheduler)."""
    per_frame = run_chunked(
        client,
        embed_images,
        [list(df["image_path"]) for df in frames],
        batch_size,
        name=f"embed images ({label})",
        shared=(str(Path(model_dir).resolve()), str(Path(corpus_dir).resolve()), channels, batch_size),
    )
    return [np.concatenate(chunks) for chunks in per_frame]


class Encoder:
    """A model and its tokenizer behind numpy-returning, batched methods."""

    def __init__(self, model: RegionCLIP, tokenizer, batch_size: int):
        self.model, self.tokenizer, self.batch_size = model.eval(), tokenizer, batch_size

    @property
    def global_only(self) -> bool:
        return self.model.global_only

    @property
    def logit_scale(self) -> float:
        return float(self.model.scale().detach())

    @torch.inference_mode()
    def images(self, pixels: torch.Tensor) -> np.ndarray:
        out = [
            self.model.encode_image(pixels[i : i + self.batch_size])
            for i in range(0, len(pixels), self.batch_size)
        ]
        return torch.cat(out).float().numpy()

    @torch.inference_mode()
    def texts(self, texts: list[str]) -> np.ndarray:
        return (
            encode_text_list(self.model, self.tokenizer, list(texts), batch_size=max(self.batch_size, 256))
            .float()
            .numpy()
        )

    @torch.inference_mode()
    def ground(
        self, pixels: torch.Tensor, image_index: np.ndarray, phrases: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps ``[N, gh, gw]`` and boxes ``[N, 4]`` of phrase ``k`` in image ``image_index[k]``."""
        emb = torch.from_numpy(self.texts(phrases))
        heat, boxes = [], []
        for i in range(0, len(phrases), self.batch_size):
            idx = torch.as_tensor(image_index[i : i + self.batch_size])
            h, b = self.model.ground(pixels[idx], emb[i : i + self.batch_size])
            heat.append(h.float())
            boxes.append(b.float())
        if not heat:
            return np.zeros((0, 1, 1)), np.zeros((0, 4))
        return torch.cat(heat).numpy(), torch.cat(boxes).numpy()

    @torch.inference_mode()
    def regions(self, pixels: torch.Tensor, image_index: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Region embeddings of ``boxes[k]`` in image ``image_index[k]``.

        A global-only model has no region path: it scores the whole image (its only embedding),
        which is what a plain CLIP can do with a region phrase.
        """
        out = []
        for start in range(0, len(boxes), self.batch_size):
            idx = image_index[start : start + self.batch_size]
            if self.global_only:
                out.append(self.model.encode_image(pixels[torch.as_tensor(idx)]))
                continue
            uniq, inverse = np.unique(idx, return_inverse=True)
            per_image = [
                torch.as_tensor(boxes[start : start + self.batch_size][inverse == j], dtype=torch.float32)
                for j in range(len(uniq))
            ]
            emb = self.model.encode_regions(pixels[torch.as_tensor(uniq)], per_image)
            # encode_regions returns regions grouped by image; put them back in the caller's order
            order = np.concatenate([np.flatnonzero(inverse == j) for j in range(len(uniq))])
            restored = torch.empty_like(emb)
            restored[torch.as_tensor(order)] = emb
            out.append(restored)
        return torch.cat(out).float().numpy() if out else np.zeros((0, 1))
