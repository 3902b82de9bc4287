import asyncio

import numpy as np
import pytest

from modelport.errors import Overloaded, UpstreamServerError
from modelport.runtimes.batcher import Batcher


class Model:
    """Records each call's batch and answers y = 2x, slowly enough for requests to gather."""

    def __init__(self, delay: float = 0.01, fail: bool = False) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.fail = fail

    async def __call__(self, inputs, names):
        self.calls.append(inputs["x"].shape[0])
        await asyncio.sleep(self.delay)
        if self.fail:
            raise UpstreamServerError("model failed")
        return {"y": inputs["x"] * 2}


def batcher(model, **kw):
    options = dict(max_batch_size=8, max_delay_s=0.005, max_queue=100, queue_timeout_s=5.0)
    options.update(kw)
    return Batcher(model, **options)


def rows(n, start=0):
    return {"x": np.arange(start, start + n, dtype=np.float32).reshape(n, 1)}


async def test_concurrent_requests_share_calls_and_get_their_own_rows():
    model = Model()
    b = batcher(model)
    results = await asyncio.gather(*(b.submit(rows(1, i), None) for i in range(20)))
    for i, result in enumerate(results):
        assert result["y"].tolist() == [[2.0 * i]]
    assert sum(model.calls) == 20
    assert len(model.calls) < 20
    assert max(model.calls) <= 8


async def test_multi_row_requests_are_split_back_in_order():
    model = Model()
    b = batcher(model)
    a, c = await asyncio.gather(b.submit(rows(3, 0), None), b.submit(rows(2, 10), None))
    assert a["y"].ravel().tolist() == [0, 2, 4]
    assert c["y"].ravel().tolist() == [20, 22]


async def test_a_request_larger_than_the_batch_runs_alone():
    model = Model()
    b = batcher(model)
    result = await b.submit(rows(20), None)
    assert result["y"].shape == (20, 1) and model.calls == [20]


async def test_incompatible_requests_are_not_joined():
    model = Model()
    b = batcher(model)
    wide = {"x": np.zeros((1, 2), dtype=np.float32)}
    await asyncio.gather(b.submit(rows(1), None), b.submit(wide, None))
    assert sorted(model.calls) == [1, 1]


async def test_unbatched_model_gets_one_request_per_call():
    model = Model(delay=0)
    b = batcher(model, max_batch_size=0)
    await asyncio.gather(*(b.submit(rows(1, i), None) for i in range(5)))
    assert model.calls == [1, 1, 1, 1, 1]


async def test_full_queue_is_refused_at_once_with_retry_after():
    model = Model(delay=0.2)
    b = batcher(model, max_queue=3, max_batch_size=1)
    tasks = [asyncio.ensure_future(b.submit(rows(1), None)) for _ in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await b.submit(rows(1), None)
    assert info.value.headers["Retry-After"] == "1"
    await asyncio.gather(*tasks)


async def test_requests_past_the_queue_timeout_are_answered_503():
    model = Model(delay=0.1)
    b = batcher(model, max_batch_size=1, queue_timeout_s=0.05)
    results = await asyncio.gather(*(b.submit(rows(1), None) for _ in range(3)),
                                   return_exceptions=True)
    assert isinstance(results[0], dict)
    assert all(isinstance(r, Overloaded) for r in results[1:])


async def test_a_failed_call_fails_every_request_in_it():
    b = batcher(Model(fail=True))
    results = await asyncio.gather(*(b.submit(rows(1), None) for _ in range(4)),
                                   return_exceptions=True)
    assert all(isinstance(r, UpstreamServerError) for r in results)


async def test_a_lone_request_waits_at_most_the_batch_delay():
    model = Model(delay=0)
    b = batcher(model, max_delay_s=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await b.submit(rows(1), None)
    assert 0.04 <= loop.time() - start < 0.5


async def test_a_cancelled_request_is_skipped():
    model = Model(delay=0.05)
    b = batcher(model, max_batch_size=1)
    first = asyncio.ensure_future(b.submit(rows(1), None))
    second = asyncio.ensure_future(b.submit(rows(1), None))
    await asyncio.sleep(0.01)
    second.cancel()
    await first
    await asyncio.sleep(0.1)
    assert model.calls == [1]
