"""The training loader's order is a plain shuffling DataLoader's, and a loader restored from a saved
state goes on with the same batches (regionmed/training/resume.py); the trainer's own resume is
tests/training/test_resume.py."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.utils.data import DataLoader

from regionmed.training.resume import ResumableLoader

N, BATCH, SEED = 23, 4, 7  # 5 whole batches per epoch (drop_last), 3 indices left over


def _epochs(loader, n_epochs: int) -> list[list[int]]:
    """Each epoch as Lightning takes it: a fresh iterator, exactly len(loader) batches, then left."""
    out = []
    for _ in range(n_epochs):
        it = iter(loader)
        out.append([int(i) for _ in range(len(loader)) for i in next(it)])
    return out


def _resumable(seed: int = SEED) -> ResumableLoader:
    return ResumableLoader(
        list(range(N)), batch_size=BATCH, drop_last=True, generator=torch.Generator().manual_seed(seed)
    )


def test_an_uninterrupted_order_is_the_plain_shuffling_loaders():
    plain = DataLoader(
        list(range(N)),
        batch_size=BATCH,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(SEED),
    )
    assert _epochs(_resumable(), 4) == _epochs(plain, 4)


@pytest.mark.parametrize(("epoch", "batches"), [(0, 2), (1, 1), (2, 4), (0, 5), (1, 5)])
def test_a_restored_loader_goes_on_with_the_same_batches(epoch, batches):
    reference = list(itertools.chain.from_iterable(_epochs(_resumable(), 4)))
    first = _resumable()
    seen = list(itertools.chain.from_iterable(_epochs(first, epoch)))
    it = iter(first)
    seen += [int(i) for _ in range(batches) for i in next(it)]
    state = first.state_dict()  # what Lightning puts in the checkpoint after the batch

    second = _resumable(seed=SEED + 1)  # a new process: the same seed in practice; the state decides
    second.load_state_dict(state)
    cut = epoch + (batches == len(first))  # a checkpoint at an epoch's end resumes with the next epoch
    it = iter(second)
    rest_of_epoch = (
        [int(i) for _ in range(len(second) - batches) for i in next(it)] if batches < len(first) else []
    )
    later = list(itertools.chain.from_iterable(_epochs(second, 4 - cut - (batches < len(first)))))
    assert seen + rest_of_epoch + later == reference
