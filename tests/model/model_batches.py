"""Tiny realistic batches for the model tests: synthetic phantoms, their texts and regions.

The batch format is the one ``RegionCLIP.forward`` documents (the training collator's): texts per
level tokenised, regions flattened with their image index, phrases and hard negatives as indices
into a table of distinct texts.
"""

from __future__ import annotations

import numpy as np
import torch

from regionmed.corpus.reports import describe
from regionmed.corpus.synthetic import generate_phantom
from regionmed.model.config import ModelConfig, RoiConfig, TextConfig, VisionConfig
from regionmed.params import SyntheticParams

TEXT_LEVELS = ("report", "modality_text", "anatomy_text", "finding_text")


def phantom_samples(n: int, size: int = 64, seed: int = 0, start: int = 0) -> list[dict]:
    params = SyntheticParams()
    samples = []
    for i in range(start, start + n):
        phantom = generate_phantom(i, seed, size, params)
        text = describe(phantom, np.random.default_rng([seed, i, 1]), 2, 1)
        regions = sorted(text.regions, key=lambda r: r.kind != "finding")  # findings first
        samples.append({
            "pixels": torch.from_numpy(phantom.pixels.astype(np.float32) / 255.0)[None],
            "texts": {lv: getattr(text, lv) for lv in TEXT_LEVELS},
            "boxes": torch.tensor([r.bbox for r in regions], dtype=torch.float32).reshape(-1, 4),
            "phrases": [r.phrase for r in regions],
            "hard_negatives": [list(r.hard_negatives) for r in regions],
            "kinds": [r.kind for r in regions],
        })
    return samples


def all_texts(samples: list[dict]) -> list[str]:
    out = []
    for s in samples:
        out += list(s["texts"].values()) + s["phrases"] + [n for negs in s["hard_negatives"] for n in negs]
    return out


def collate(samples: list[dict], tokenizer, max_length: int = 64) -> dict:
    def tok(texts):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    batch = {"pixels": torch.stack([s["pixels"] for s in samples])}
    for lv in TEXT_LEVELS:
        batch[lv] = tok([s["texts"][lv] for s in samples])
    table: dict[str, int] = {}
    phrase_index, negatives, region_batch, boxes, kinds = [], [], [], [], []
    for b, s in enumerate(samples):
        for phrase, negs, box, kind in zip(s["phrases"], s["hard_negatives"], s["boxes"], s["kinds"]):
            phrase_index.append(table.setdefault(phrase, len(table)))
            negatives.append([table.setdefault(n, len(table)) for n in negs])
            region_batch.append(b)
            boxes.append(box)
            kinds.append(kind)
    k = max([len(r) for r in negatives] + [1])
    hard = torch.full((len(negatives), k), -1, dtype=torch.long)
    for i, row in enumerate(negatives):
        hard[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    batch.update(
        region_boxes=torch.stack(boxes) if boxes else torch.zeros(0, 4),
        region_batch=torch.tensor(region_batch, dtype=torch.long),
        phrase_index=torch.tensor(phrase_index, dtype=torch.long),
        hard_negative_index=hard,
        text_table=tok(list(table) or [""]),
        region_kind=kinds,
    )
    return batch


def tiny_config(**roi) -> ModelConfig:
    """A model small enough to train for a hundred steps in seconds on two CPU cores."""
    return ModelConfig(
        vision=VisionConfig(image_size=64, patch_size=8, hidden=64, layers=2, heads=2, mlp=128),
        text=TextConfig(hidden=64, layers=2, heads=2, mlp=128, max_length=64),
        roi=RoiConfig(fusion_heads=2, **roi),
        embed_dim=32,
    )
