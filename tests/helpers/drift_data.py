"""Test data of the drift tests: a synthetic reference (three 'modalities' as clusters) and a log writer."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from regionmed.monitoring.embedding_log import EmbeddingLogWriter
from regionmed.monitoring.reference import Reference

DIM = 64
MODEL = "regionmed:test0001"
N_REF = 600


class Clock:
    """A settable clock for the log writer (seconds since the epoch)."""

    def __init__(self, start: str = "2026-11-28T10:00:00"):
        self.t = datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.t


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class Population:
    """Embeddings in three clusters ('modalities') and descriptors like the service logs."""

    def __init__(self, seed: int = 0):
        self.centers = np.random.default_rng(1234).normal(size=(3, DIM)) * 0.6
        self.rng = np.random.default_rng(seed)

    def images(self, n: int, modality: int | None = None, contrast: float = 1.0):
        lab = self.rng.integers(0, 3, n) if modality is None else np.full(n, modality)
        emb = unit(self.centers[lab] + self.rng.normal(size=(n, DIM)))
        mean = np.clip(self.rng.normal(0.3, 0.05, n) * contrast, 0, 1)
        desc = pd.DataFrame(
            {
                "width": 128,
                "height": 128,
                "channels": 1,
                "format": "png",
                "bytes": self.rng.integers(3000, 4000, n),
                "mean": mean,
                "std": np.clip(self.rng.normal(0.2, 0.02, n) * contrast, 0, 1),
            }
        )
        return emb, desc

    def texts(self, n: int):
        emb = unit(self.centers[self.rng.integers(0, 3, n)] + self.rng.normal(size=(n, DIM)))
        tokens = self.rng.integers(30, 60, n)
        return emb, pd.DataFrame({"n_chars": tokens * 5, "n_tokens": tokens, "truncated": False})


def make_reference(pop: Population, n: int = N_REF) -> Reference:
    img, img_desc = pop.images(n)
    txt, txt_desc = pop.texts(n)
    return Reference(
        {"image": img, "text": txt},
        {"image": img_desc, "text": txt_desc},
        [MODEL, "dir-abc"],
        {"finding": ["a", "b", "c"], "modality": ["m0", "m1", "m2"]},
        {"finding": unit(pop.centers), "modality": unit(pop.centers[[1, 2, 0]])},
        "test",
    )


def write_log(
    log_dir,
    emb: np.ndarray,
    desc: pd.DataFrame | None,
    *,
    kind: str = "image",
    endpoint: str = "encode_image",
    model: str = MODEL,
    clock: Clock | None = None,
    seconds_apart: float = 1.0,
) -> Clock:
    """One record per row, ``seconds_apart`` apart on the writer's clock; returns the clock."""
    clock = clock or Clock()
    w = EmbeddingLogWriter(log_dir, clock=clock)
    rows = desc.to_dict("records") if desc is not None else [{}] * len(emb)
    keep = {
        "width",
        "height",
        "channels",
        "format",
        "bytes",
        "mean",
        "std",
        "n_chars",
        "n_tokens",
        "truncated",
    }
    for e, d in zip(emb, rows, strict=True):
        w.log(
            endpoint=endpoint,
            model_version=model,
            request="0123456789abcdef",
            kind=kind,
            embeddings=e[None],
            descriptors=[{k: (v.item() if hasattr(v, "item") else v) for k, v in d.items() if k in keep}],
        )
        clock.t += seconds_apart
    w.close()
    return clock
