"""Progress for people and for logs: a tqdm bar on a terminal, a plain line every few per cent otherwise.

Under ``dvc repro`` and in Prefect's task logs there is no terminal, and a bar's carriage-return
updates become hundreds of log lines per stage; there, :func:`progress` prints one line per
``LOG_EVERY_PERCENT`` and one at the end (training steps: ``regionmed.training.train.LogProgress``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")
LOG_EVERY_PERCENT = 10


def on_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def progress(
    items: Iterable[T],
    total: int,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
    stream: TextIO | None = None,
) -> Iterator[T]:
    """``items`` with a bar on a terminal, else with a line every ``LOG_EVERY_PERCENT`` per cent."""
    stream = stream or sys.stderr
    if not enabled:
        yield from items
        return
    if on_terminal(stream):
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc, unit=unit, file=stream)
        return
    start, next_pct, done = time.perf_counter(), LOG_EVERY_PERCENT, 0
    for done, item in enumerate(items, start=1):  # done is read after the loop too
        yield item
        pct = 100 * done // max(total, 1)
        if pct >= next_pct and done < total:
            print(
                f"{desc}: {done}/{total} {unit} ({pct}%, {time.perf_counter() - start:.0f} s)",
                file=stream,
                flush=True,
            )
            next_pct = (pct // LOG_EVERY_PERCENT + 1) * LOG_EVERY_PERCENT
    print(
        f"{desc}: {done}/{total} {unit} done in {time.perf_counter() - start:.1f} s", file=stream, flush=True
    )
