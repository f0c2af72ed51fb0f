"""In-process adaptive batching for the service's APIs that take more than an image.

BentoML's batchable APIs take one argument; ``zero_shot`` and ``retrieve`` take an image and texts,
so their image encodes are batched here: a model thread of its own, greedy batches, 503 shedding.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from typing import Any

import numpy as np
from bentoml.exceptions import ServiceUnavailable

from regionmed.inference.engine import Engine
from regionmed.inference.uploads import DecodedImage, PreparedImage
from regionmed.serving.middleware import note_unavailable


class ImageBatcher:
    """One decoded image in, its embedding and prepared input (with the log's descriptors) out.

    Concurrent calls are prepared and encoded together by one model thread that takes whatever is
    queued (up to ``max_batch_size``) as soon as its previous batch is done: the batch size adapts
    to the load, and the next batch starts without waiting for the event loop, which meanwhile
    answers the last batch's requests and parses the next ones. A request that has waited longer
    than ``max_latency_ms`` when its turn comes is shed with 503 (like the batchable APIs).
    """

    def __init__(self, engine: Engine, max_batch_size: int, max_latency_ms: int):
        self.engine, self.max_batch_size = engine, max(1, int(max_batch_size))
        self.max_latency_s = max_latency_ms / 1000.0
        self._queue: deque[tuple[float, DecodedImage, asyncio.AbstractEventLoop, asyncio.Future]] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def __call__(self, item: DecodedImage) -> tuple[np.ndarray, PreparedImage]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._ready:
            if self._closed:
                note_unavailable("the service is shutting down", "shutting_down")
                raise ServiceUnavailable("the service is shutting down")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="regionmed-image-batcher", daemon=True
                )
                self._thread.start()
            self._queue.append((time.monotonic(), item, loop, future))
            self._ready.notify()
        try:
            return await future
        except ServiceUnavailable as exc:
            note_unavailable(str(exc), "overloaded")
            raise

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def _work(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if self._closed and not self._queue:
                    return
                jobs = [self._queue.popleft() for _ in range(min(self.max_batch_size, len(self._queue)))]
            now = time.monotonic()
            late = [j for j in jobs if now - j[0] > self.max_latency_s]
            for _, _, loop, future in late:
                _resolve(
                    loop,
                    future,
                    error=ServiceUnavailable(
                        "the service is overloaded: the request waited longer than "
                        f"batching.max_latency_ms ({self.max_latency_s * 1000:g} ms)"
                    ),
                )
            jobs = [j for j in jobs if now - j[0] <= self.max_latency_s]
            if not jobs:
                continue
            try:
                prepared = [self.engine.prepare(item) for _, item, _, _ in jobs]
                embeddings = self.engine.encode_images(prepared)
            except Exception as exc:  # handed to each request, as BentoML's dispatcher does
                for _, _, loop, future in jobs:
                    _resolve(loop, future, error=exc)
                continue
            for (_, _, loop, future), emb, prep in zip(jobs, embeddings, prepared, strict=True):
                _resolve(loop, future, result=(emb, prep))


def _resolve(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future,
    result: Any = None,
    error: BaseException | None = None,
) -> None:
    """Settle ``future`` from the model thread (unless its request has gone meanwhile)."""

    def settle() -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
        loop.call_soon_threadsafe(settle)
