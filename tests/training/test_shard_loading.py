"""Training reads a sharded corpus as it reads one PNG per image: the same items, whatever the
DataLoader's worker processes (they share nothing but the shard files)."""

from __future__ import annotations

import torch
from helpers.params import with_updates
from torch.utils.data import DataLoader

from regionmed.corpus.build import build_corpus
from regionmed.training.data import CorpusDataset


def _pixels(corpus, num_workers: int) -> torch.Tensor:
    dataset = CorpusDataset(corpus, "train", channels=1, max_regions=4)
    loader = DataLoader(
        dataset, batch_size=16, shuffle=False, num_workers=num_workers, collate_fn=lambda items: items
    )
    return torch.stack([item["pixels"] for batch in loader for item in batch])


def test_shards_with_loader_workers_give_the_items_of_files(tmp_path, tiny_params):
    small = with_updates(tiny_params, {"corpus": {"synthetic": {"n_images": 120}, "shard_size": 20}})
    build_corpus(small, tmp_path / "shards", progress=False)
    build_corpus(with_updates(small, {"corpus": {"layout": "files"}}), tmp_path / "files", progress=False)
    from_files = _pixels(tmp_path / "files", 0)
    assert len(from_files) > 80 and from_files.std() > 0
    assert torch.equal(_pixels(tmp_path / "shards", 0), from_files)
    assert torch.equal(_pixels(tmp_path / "shards", 2), from_files)
