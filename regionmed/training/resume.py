"""What makes an interrupted phase resume exactly where it stopped, and only from a sound checkpoint.

- :class:`ResumableLoader`: the training ``DataLoader`` with Lightning's ``state_dict`` /
  ``load_state_dict`` interface. Lightning stores its state in each checkpoint (the shuffling
  generator's state when the epoch's order was drawn, and the batches consumed) and restores it on
  resume, so the resumed run sees the rest of the same epoch in the same order. A plain loader
  would start the epoch over in a fresh order (Lightning warns "your dataloader is not resumable"):
  the resumed run would train on other batches and end with other weights. The order of an
  uninterrupted run is the one ``DataLoader(shuffle=True, generator=...)`` gives, draw for draw.
- :class:`AtomicCheckpointIO`: checkpoints written whole or not at all, under a temporary name
  in the checkpoint folder and renamed (Lightning's own writer goes through a temporary file in
  the system temp folder and *moves* it, a copy when that is another file system).
- :func:`usable_checkpoint`: the checkpoint to resume from, or None when there is none or it cannot
  be read (a truncated or damaged file is set aside and the phase starts over, saying so).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch.utils.data import DataLoader, RandomSampler

from regionmed.atomic import atomic_write_bytes

DAMAGED_SUFFIX = ".damaged"


class _ResumableSampler(RandomSampler):
    """``RandomSampler`` (same draws from the same generator) that remembers the generator's state when
    each epoch's order was drawn, and can be told to redraw that order and skip its first indices."""

    def __init__(self, data_source, generator: torch.Generator):
        super().__init__(data_source, generator=generator)
        self.epoch_state: torch.Tensor | None = None
        self._pending: tuple[torch.Tensor, int] | None = None

    def __iter__(self) -> Iterator[int]:
        skip = 0
        if self._pending is not None:
            state, skip = self._pending
            self._pending = None
            self.generator.set_state(state)
        self.epoch_state = self.generator.get_state()
        for k, index in enumerate(super().__iter__()):
            if k >= skip:
                yield index

    def resume_at(self, state: torch.Tensor, skip: int) -> None:
        self._pending = (state, skip)


class ResumableLoader(DataLoader):
    """A shuffling training loader whose position Lightning saves in a checkpoint (module docstring).
    Takes ``DataLoader``'s arguments, with ``generator`` (required) instead of ``shuffle``/``sampler``."""

    def __init__(self, dataset, *, generator: torch.Generator, **kwargs: Any):
        super().__init__(
            dataset, sampler=_ResumableSampler(dataset, generator), generator=generator, **kwargs
        )
        self._consumed = 0

    def __iter__(self):
        # counted here, where the training loop takes each batch: a worker's prefetching does not count
        sampler = self.sampler
        self._consumed = self._consumed if isinstance(sampler, _ResumableSampler) and sampler._pending else 0
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        sampler = self.sampler
        if not isinstance(sampler, _ResumableSampler) or sampler.epoch_state is None:
            return {}
        if self._consumed >= len(self):
            # the epoch is done: the next one draws its order from the generator as it is now
            return {"generator_state": self.generator.get_state(), "batches": 0, "epoch_done": True}
        return {"generator_state": sampler.epoch_state, "batches": self._consumed, "epoch_done": False}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sampler = self.sampler
        if not state_dict or not isinstance(sampler, _ResumableSampler):
            return
        if state_dict["epoch_done"]:
            # now, not when the epoch's order is drawn: the loader draws its workers' seed first
            self.generator.set_state(state_dict["generator_state"])
            self._consumed = 0
            return
        self._consumed = int(state_dict["batches"])
        sampler.resume_at(state_dict["generator_state"], self._consumed * int(self.batch_size or 1))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through regionmed/atomic.py (module docstring)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write_bytes(path, buffer.getvalue())


def usable_checkpoint(path: Path, log: Callable[[str], None]) -> tuple[Path | None, int]:
    """``(path, its step)`` when the checkpoint loads, ``(None, 0)`` when there is none; a checkpoint that
    does not load (truncated, damaged) is renamed ``*.damaged``, said in ``log``, and ``(None, 0)``."""
    if not path.exists():
        return None, 0
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        step = int(state["global_step"])
        if "state_dict" not in state or "optimizer_states" not in state:
            raise KeyError("no model or optimizer state")
    except Exception as exc:  # a damaged file fails in many ways: zip, pickle, a missing key
        aside = path.with_name(path.name + DAMAGED_SUFFIX)
        os.replace(path, aside)
        log(
            f"checkpoint {path} is damaged ({type(exc).__name__}: {str(exc)[:200]}); not resumed: "
            f"this phase starts over from step 0 (the file is set aside as {aside.name})"
        )
        return None, 0
    return path, step
