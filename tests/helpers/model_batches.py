"""Tiny realistic batches for the model tests: synthetic phantoms, their texts and regions.

The batch format is the one ``RegionCLIP.forward`` documents (the training collator's): texts per
level tokenised, regions flattened with their image index, phrases and hard negatives as indices
into a table of distinct texts.
"""

from __future__ import annotations

import numpy as np
import torch

from helpers.params import default_section, tiny_model_config
from regionmed.corpus.reports import describe
from regionmed.corpus.synthetic import generate_phantom
from regionmed.model.config import ModelConfig
from regionmed.training.data import TEXT_LEVELS, Collator


def phantom_samples(n: int, size: int = 64, seed: int = 0, start: int = 0) -> list[dict]:
    params = default_section("corpus.synthetic")
    samples = []
    for i in range(start, start + n):
        phantom = generate_phantom(i, seed, size, params)
        text = describe(phantom, np.random.default_rng([seed, i, 1]), 2, 1)
        regions = sorted(text.regions, key=lambda r: r.kind != "finding")  # findings first
        samples.append(
            {
                "pixels": torch.from_numpy(phantom.pixels.astype(np.float32) / 255.0)[None],
                "texts": {lv: getattr(text, lv) for lv in TEXT_LEVELS},
                "boxes": torch.tensor([r.bbox for r in regions], dtype=torch.float32).reshape(-1, 4),
                "phrases": [r.phrase for r in regions],
                "hard_negatives": [list(r.hard_negatives) for r in regions],
                "region_kind": [r.kind for r in regions],
                "region_size": [r.size or "" for r in regions],
                "labels": list(text.labels),
                "modality": phantom.modality.name,
                "image_id": f"syn-{i:06d}",
            }
        )
    return samples


def all_texts(samples: list[dict]) -> list[str]:
    out = []
    for s in samples:
        out += list(s["texts"].values()) + s["phrases"] + [n for negs in s["hard_negatives"] for n in negs]
    return out


def collate(samples: list[dict], tokenizer, max_length: int = 64) -> dict:
    """The training collator itself, so the model is tested on exactly the batches it trains on."""
    return Collator(tokenizer, max_length)(samples)


# a box head for tiny_config's models (params.yaml's default may have none): a 3-cell window at 16 x 16
TINY_BOX_HEAD = {"window": 3.0, "crop_size": 16, "channels": 16, "anchor_jitter": 1.0, "centre_stride": 4}


def tiny_config(**roi) -> ModelConfig:
    """params.yaml's model, small enough to train for a hundred steps in seconds on two CPU cores."""
    return tiny_model_config(
        vision={"image_size": 64, "patch_size": 8, "hidden": 64, "layers": 2, "heads": 2, "mlp": 128},
        text={"hidden": 64, "layers": 2, "heads": 2, "mlp": 128, "max_length": 64},
        roi={"fusion_heads": 2, **roi},
        embed_dim=32,
    )
