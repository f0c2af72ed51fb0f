"""Corpus → training batches: images, four text levels, region boxes, phrases and hard negatives.

Region phrases and their hard negatives repeat a lot within a batch ("the left lung" appears in
every chest image), so the collate function tokenises each distinct string once and hands the
model indices into that table (``text_table``); the model encodes each distinct text once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from regionmed.corpus.images import read_png, to_model_input
from regionmed.corpus.phrases import strip_location
from regionmed.corpus.schema import NO_FINDING, read_manifest
from regionmed.model.config import TEXT_LEVELS
from regionmed.training.resume import ResumableLoader

# A region that loses more than this share of its area to an augmentation shift is dropped.
MIN_KEPT_AREA = 0.5
# Sentences that contradict an image (the negation loss): a finding it has, denied, or a finding
# of its modality that it lacks, asserted. Report language, as the corpus writes its findings.
DENY_SENTENCES = ("No {label}.", "There is no {label}.")
ASSERT_SENTENCES = ("There is evidence of {label}.", "{Label} is seen.")


@dataclass(frozen=True)
class AugmentConfig:
    max_shift: float = 0.0  # fraction of the image size
    intensity: float = 0.0  # +- relative contrast and brightness change
    # Share of finding phrases that the grounding loss also asks about without their location words.
    # Every corpus phrase names its place ("... in the right upper zone"), so without this the
    # grounding loss never asks the image where "a small nodule" is: the words alone answer it.
    location_free: float = 0.0


@dataclass(frozen=True)
class RegionWeighting:
    """How much an annotated region (origin "annotated") counts in the region and grounding losses."""

    annotated: float = 1.0
    confidence_weighted: bool = False  # also times the region's confidence

    def weight(self, region: dict) -> float:
        if region.get("origin", "given") != "annotated":
            return 1.0
        conf = region.get("confidence")
        return self.annotated * (float(conf) if self.confidence_weighted and conf is not None else 1.0)


class CorpusDataset(Dataset):
    """One split of a corpus; every item carries everything the losses and the metrics need."""

    def __init__(
        self,
        corpus_dir: str | Path,
        split: str,
        channels: int,
        max_regions: int,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        weighting: RegionWeighting | None = None,
    ):
        self.corpus_dir = Path(corpus_dir)
        self.weighting = weighting or RegionWeighting()
        self.df = read_manifest(self.corpus_dir, split)
        if self.df.empty:
            raise ValueError(f"split {split!r} of {corpus_dir} has no images")
        self.channels, self.max_regions = channels, max_regions
        self.augment = augment or AugmentConfig()
        self.seed = seed
        self.epoch = 0
        # finding labels per modality (axis:class labels and "no finding" are not findings)
        self.findings_by_modality = {
            m: sorted(
                {lb for labels in group["labels"] for lb in labels if lb != NO_FINDING and ":" not in lb}
            )
            for m, group in self.df.groupby("modality")
        }

    def __len__(self) -> int:
        return len(self.df)

    def __getitem__(self, i: int) -> dict:
        row = self.df.iloc[i]
        pixels = torch.from_numpy(
            to_model_input(read_png(self.corpus_dir / row["image_path"]), self.channels)
        )
        # findings first: when regions are capped, findings are what region alignment is for
        regions = sorted(row["regions"], key=lambda r: r["kind"] != "finding")[: self.max_regions]
        boxes = torch.tensor([r["bbox"] for r in regions], dtype=torch.float32).reshape(-1, 4)
        if self.augment.max_shift > 0 or self.augment.intensity > 0:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            pixels, boxes, keep = _augment(pixels, boxes, self.augment, rng)
            regions = [r for r, k in zip(regions, keep, strict=True) if k]
            boxes = boxes[keep]
        return {
            "location_free_queries": self._location_free_queries(
                regions, np.random.default_rng([self.seed, self.epoch, i, 2])
            ),
            "pixels": pixels,
            "texts": {level: row[level] for level in TEXT_LEVELS},
            "boxes": boxes,
            "phrases": [r["phrase"] for r in regions],
            "hard_negatives": [list(r["hard_negatives"]) for r in regions],
            "region_kind": [r["kind"] for r in regions],
            "region_size": [r["size"] or "" for r in regions],
            "region_weight": [self.weighting.weight(r) for r in regions],
            # the box head's training anchor of each region: its box centre moved by this draw (-1..1
            # per axis) times the head's anchor_jitter, in patch cells (regionmed/model/box_head.py)
            "box_anchor_offset": torch.from_numpy(
                np.random.default_rng([self.seed, self.epoch, i, 3]).uniform(-1, 1, (len(regions), 2))
            ).float(),
            "labels": list(row["labels"]),
            "modality": row["modality"],
            "image_id": row["image_id"],
            "negation_text": self.contradiction(row, np.random.default_rng([self.seed, self.epoch, i, 1])),
        }

    def _location_free_queries(self, regions: list, rng: np.random.Generator) -> list[int]:
        """Finding regions (indices) whose phrase is also a grounding query without its location
        words, each with probability ``augment.location_free`` (phrases with nothing to drop never)."""
        p = self.augment.location_free
        if p <= 0:
            return []
        return [
            k
            for k, r in enumerate(regions)
            if r["kind"] == "finding" and strip_location(r["phrase"]) != r["phrase"] and rng.random() < p
        ]

    def contradiction(self, row, rng: np.random.Generator) -> str:
        """A sentence this image's findings contradict ("" when its modality has no finding labels)."""
        findings = self.findings_by_modality.get(row["modality"], [])
        present = [lb for lb in row["labels"] if lb in findings]
        absent = [lb for lb in findings if lb not in present]
        if not present and not absent:
            return ""
        deny = bool(present) and (not absent or rng.random() < 0.5)
        label = str(rng.choice(present if deny else absent))
        template = str(rng.choice(DENY_SENTENCES if deny else ASSERT_SENTENCES))
        return template.format(label=label, Label=label[:1].upper() + label[1:])


def _augment(pixels: torch.Tensor, boxes: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator):
    """Shift the image (zero fill) and its boxes together; jitter contrast and brightness."""
    size = pixels.shape[-1]
    max_px = round(cfg.max_shift * size)
    dx, dy = (int(v) for v in rng.integers(-max_px, max_px + 1, size=2)) if max_px else (0, 0)
    if dx or dy:
        shifted = torch.zeros_like(pixels)
        src = pixels[..., max(0, -dy) : size - max(0, dy), max(0, -dx) : size - max(0, dx)]
        shifted[..., max(0, dy) : max(0, dy) + src.shape[-2], max(0, dx) : max(0, dx) + src.shape[-1]] = src
        pixels = shifted
    if cfg.intensity > 0:
        gain, bias = (
            1 + rng.uniform(-cfg.intensity, cfg.intensity),
            rng.uniform(-cfg.intensity, cfg.intensity) / 2,
        )
        pixels = (pixels * gain + bias).clamp(0, 1)
    moved = boxes + torch.tensor([dx, dy, dx, dy], dtype=torch.float32) / size
    clipped = moved.clamp(0, 1)

    def area(b):
        return (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)

    keep = area(clipped) >= MIN_KEPT_AREA * area(boxes).clamp(min=1e-12)
    return pixels, clipped, keep


class Collator:
    """Stacks images, tokenises texts (each distinct region text once) and flattens regions."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def __call__(self, items: list[dict]) -> dict:
        batch = {"pixels": torch.stack([it["pixels"] for it in items])}
        for level in TEXT_LEVELS:
            batch[level] = self.tokenize([it["texts"][level] for it in items])
        batch["negation_text"] = self.tokenize([it.get("negation_text", "") for it in items])
        batch["negation_mask"] = torch.tensor([bool(it.get("negation_text")) for it in items])
        table: dict[str, int] = {}
        phrase_index, negative_rows, region_batch, boxes, anchor_offsets = [], [], [], [], []
        # grounding queries: every region's phrase, plus location-free ones; each names the regions
        # of its image it describes (the identical phrase; "a small nodule": every small nodule)
        ground_index, ground_region, ground_names = [], [], []
        for b, it in enumerate(items):
            first = len(phrase_index)
            for phrase, negatives, box in zip(it["phrases"], it["hard_negatives"], it["boxes"], strict=True):
                phrase_index.append(table.setdefault(phrase, len(table)))
                negative_rows.append([table.setdefault(n, len(table)) for n in negatives])
                region_batch.append(b)
                boxes.append(box)
            anchor_offsets.append(it.get("box_anchor_offset", torch.zeros(len(it["phrases"]), 2)))
            phrases, kinds = it["phrases"], it["region_kind"]
            stripped = [
                strip_location(p) if kind == "finding" else None
                for p, kind in zip(phrases, kinds, strict=True)
            ]
            queries = [
                (k, phrases[k], [j for j, p in enumerate(phrases) if p == phrases[k]])
                for k in range(len(phrases))
            ]
            queries += [
                (k, stripped[k], [j for j, s in enumerate(stripped) if s == stripped[k]])
                for k in it.get("location_free_queries", ())
            ]
            for k, query, names in queries:
                ground_index.append(table.setdefault(query, len(table)))
                ground_region.append(first + k)
                ground_names.append([first + j for j in names])
        ground_group = torch.zeros(len(ground_names), len(phrase_index), dtype=torch.bool)
        for q, rows in enumerate(ground_names):
            ground_group[q, rows] = True
        k = max((len(r) for r in negative_rows), default=0)
        hard = torch.full((len(negative_rows), max(k, 1)), -1, dtype=torch.long)
        for i, row in enumerate(negative_rows):
            hard[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        batch.update(
            region_boxes=torch.stack(boxes) if boxes else torch.zeros(0, 4),
            region_batch=torch.tensor(region_batch, dtype=torch.long),
            box_anchor_offset=torch.cat(anchor_offsets) if anchor_offsets else torch.zeros(0, 2),
            phrase_index=torch.tensor(phrase_index, dtype=torch.long),
            ground_index=torch.tensor(ground_index, dtype=torch.long),
            ground_region=torch.tensor(ground_region, dtype=torch.long),
            ground_group=ground_group,
            hard_negative_index=hard,
            text_table=self.tokenize(list(table) or [""]),
            region_kind=[k for it in items for k in it["region_kind"]],
            region_size=[s for it in items for s in it["region_size"]],
            region_weight=torch.tensor(
                [w for it in items for w in it.get("region_weight", [1.0] * len(it["phrases"]))],
                dtype=torch.float32,
            ),
            report_text=[it["texts"]["report"] for it in items],
            labels=[it["labels"] for it in items],
            modality=[it["modality"] for it in items],
            image_id=[it["image_id"] for it in items],
        )
        return batch


class CorpusDataModule(L.LightningDataModule):
    def __init__(
        self,
        corpus_dir: str | Path,
        tokenizer,
        channels: int,
        max_length: int,
        batch_size: int,
        max_regions: int,
        augment: AugmentConfig,
        num_workers: int = 0,
        seed: int = 0,
        eval_batch_size: int | None = None,
        weighting: RegionWeighting | None = None,
    ):
        super().__init__()
        self.corpus_dir, self.channels, self.max_regions = Path(corpus_dir), channels, max_regions
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.augment, self.num_workers, self.seed = augment, num_workers, seed
        self.weighting = weighting
        self.collate = Collator(tokenizer, max_length)

    def setup(self, stage: str | None = None) -> None:
        self.train_set = CorpusDataset(
            self.corpus_dir, "train", self.channels, self.max_regions, self.augment, self.seed, self.weighting
        )
        self.val_set = CorpusDataset(self.corpus_dir, "val", self.channels, self.max_regions)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        # drop_last: a contrastive batch of 3 is a different task from one of 64. Resumable: an interrupted
        # phase goes on with the rest of the epoch in the same order (regionmed/training/resume.py).
        return ResumableLoader(
            self.train_set,
            batch_size=self.batch_size,
            drop_last=True,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.val_set,
            batch_size=self.eval_batch_size,
            shuffle=False,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )
