"""The in-process image batcher of ``zero_shot`` and ``retrieve``: batches, order, errors, shedding."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest


class FakeEngine:
    """Prepare and encode like the engine, recording batch sizes; ``gate`` holds the first batch."""

    def __init__(self, fail: bool = False):
        self.sizes: list[int] = []
        self.fail = fail
        self.gate = threading.Event()

    def prepare(self, item):
        return type("Prepared", (), {"value": item.array, "descriptors": {"mean": 0.5}})()

    def encode_images(self, prepared):
        self.gate.wait(10)
        self.sizes.append(len(prepared))
        if self.fail:
            raise RuntimeError("model failed")
        return np.stack([np.full(4, p.value, dtype=np.float32) for p in prepared])


def decoded(i: int):
    from regionmed.inference.uploads import DecodedImage

    return DecodedImage(array=float(i), descriptors={})


@pytest.fixture(scope="module")
def service_module(service_cls):
    from regionmed.serving import service  # imported by the fixture with the test params

    return service


def test_concurrent_calls_are_batched_in_order_up_to_the_max(service_module):
    engine = FakeEngine()
    batcher = service_module.ImageBatcher(engine, max_batch_size=4, max_latency_ms=10_000)

    async def main():
        calls = [asyncio.ensure_future(batcher(decoded(i))) for i in range(10)]
        await asyncio.sleep(0.05)  # all queued behind the first batch, which waits on the gate
        engine.gate.set()
        return await asyncio.gather(*calls)

    out = asyncio.run(main())
    batcher.close()
    assert [float(emb[0]) for emb, _ in out] == [float(i) for i in range(10)]
    assert all(prep.descriptors == {"mean": 0.5} for _, prep in out)
    assert sum(engine.sizes) == 10 and max(engine.sizes) == 4 and len(engine.sizes) <= 4, engine.sizes


def test_a_model_error_reaches_every_request_of_the_batch(service_module):
    engine = FakeEngine(fail=True)
    engine.gate.set()
    batcher = service_module.ImageBatcher(engine, max_batch_size=8, max_latency_ms=10_000)

    async def main():
        return await asyncio.gather(*(batcher(decoded(i)) for i in range(3)), return_exceptions=True)

    out = asyncio.run(main())
    batcher.close()
    assert all(isinstance(e, RuntimeError) and "model failed" in str(e) for e in out)


def test_requests_that_waited_longer_than_max_latency_are_shed_with_503(service_module):
    from bentoml.exceptions import ServiceUnavailable

    engine = FakeEngine()
    batcher = service_module.ImageBatcher(engine, max_batch_size=1, max_latency_ms=50)

    async def main():
        first = asyncio.ensure_future(batcher(decoded(0)))
        await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(batcher(decoded(i))) for i in range(1, 4)]
        await asyncio.sleep(0.2)  # the queued ones are now older than max_latency_ms
        engine.gate.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    out = asyncio.run(main())
    batcher.close()
    assert float(out[0][0][0]) == 0.0
    assert all(isinstance(e, ServiceUnavailable) and "max_latency_ms" in str(e) for e in out[1:])
    assert engine.sizes == [1]


def test_a_request_that_went_away_does_not_break_the_batcher(service_module):
    engine = FakeEngine()
    batcher = service_module.ImageBatcher(engine, max_batch_size=8, max_latency_ms=10_000)

    async def main():
        gone = asyncio.ensure_future(batcher(decoded(0)))
        await asyncio.sleep(0.01)
        gone.cancel()
        engine.gate.set()
        return await batcher(decoded(1))

    emb, _ = asyncio.run(main())
    time.sleep(0.05)
    batcher.close()
    assert float(emb[0]) == 1.0
