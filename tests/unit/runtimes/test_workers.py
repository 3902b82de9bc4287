import asyncio
import os
import pickle
import struct
from multiprocessing import Pipe

import pytest

from modelport.errors import (
    InputRejected,
    ModelportError,
    RuntimeCrashed,
    RuntimeUnavailable,
    UpstreamServerError,
)
from modelport.runtimes.workers import Worker, WorkerBug, _ReplyReader
from tests.fakes import workers as entries


@pytest.fixture
async def worker():
    w = Worker("echo", entries.echo, {"a": 1}, start_timeout_s=60)
    assert await w.start()
    yield w
    await w.close()


async def test_calls_and_streams_round_trip(worker):
    assert worker.info["spec"] == {"a": 1}
    assert await worker.call("echo", [1, "two"]) == [1, "two"]
    parts = [p async for p in worker.stream("count", 5)]
    assert parts == [0, 1, 2, 3, 4]
    many = await asyncio.gather(*(worker.call("echo", i) for i in range(200)))
    assert many == list(range(200))


async def test_child_errors_become_modelport_errors(worker):
    with pytest.raises(InputRejected, match="bad input"):
        await worker.call("bad", None)
    with pytest.raises(UpstreamServerError, match="the model failed"):
        await worker.call("model-failed", None)


async def test_an_exception_outside_the_models_call_is_a_bug_never_the_callers_fault(worker):
    """A KeyError in a worker's own code is Modelport's: a 500, not a 400."""
    with pytest.raises(WorkerBug, match="KeyError") as raised:
        await worker.call("bug", None)
    assert not isinstance(raised.value, ModelportError)


async def test_a_cancelled_call_is_withdrawn(worker):
    task = asyncio.ensure_future(worker.call("sleep", 0.2))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert worker.in_flight == 0
    assert await worker.call("echo", "after") == "after"


async def test_a_crash_fails_in_flight_requests_and_the_worker_comes_back():
    restarts = []
    w = Worker("echo", entries.echo, None, on_restart=lambda: restarts.append(1))
    assert await w.start()
    first_pid = w.info["pid"]
    try:
        dying = asyncio.ensure_future(w.call("die", None))
        queued = asyncio.ensure_future(w.call("echo", "never answered"))
        for task in (dying, queued):
            with pytest.raises(RuntimeCrashed):
                await task
        with pytest.raises(RuntimeUnavailable, match="restarting"):
            await w.call("echo", 1)
        assert restarts == [1]
        for _ in range(200):
            if w.state == "ready":
                break
            await asyncio.sleep(0.05)
        assert w.state == "ready" and w.info["pid"] != first_pid
        assert await w.call("echo", 2) == 2
    finally:
        await w.close()


async def test_a_model_that_cannot_load_leaves_a_reason():
    w = Worker("broken", entries.cannot_load, None)
    assert not await w.start()
    assert w.state == "failed"
    assert "no such model file" in (w.reason or "")
    with pytest.raises(RuntimeUnavailable, match="failed to load"):
        await w.call("echo", 1)
    await w.close()


async def test_large_replies_arrive_whole(worker):
    # Far more than one read (1 MiB) and than the socket's buffer: the reply is reassembled
    # from many readable events on the loop.
    blob = bytes(range(256)) * 20_000  # 5 MB
    assert await worker.call("echo", blob) == blob
    parts = [p async for p in worker.stream("count", 300)]
    assert parts == list(range(300))


def test_reply_reader_keeps_split_messages_until_they_are_whole():
    parent, child = Pipe(duplex=True)
    reader = _ReplyReader(parent.fileno())
    first, second = (1, "part", "a" * 10), (1, "reply", {"n": 2})
    framed = b"".join(struct.pack("!i", len(p)) + p
                      for p in (pickle.dumps(first), pickle.dumps(second)))
    # The 8-byte form Connection uses for a message over 2 GiB, for a small one.
    huge_form = pickle.dumps((2, "part", "b"))
    framed += struct.pack("!i", -1) + struct.pack("!Q", len(huge_form)) + huge_form
    fd = child.fileno()
    os.write(fd, framed[:3])
    assert reader.read() == []  # not even a whole length yet
    os.write(fd, framed[3:10])
    assert reader.read() == []
    os.write(fd, framed[10:])
    assert reader.read() == [first, second, (2, "part", "b")]
    child.send((3, "reply", None))  # Connection's own framing
    assert reader.read() == [(3, "reply", None)]
    os.write(fd, struct.pack("!i", 3) + b"bad")
    with pytest.raises(pickle.UnpicklingError):
        reader.read()
    child.close()
    assert reader.read() is None  # end of file: the child is gone
    parent.close()


async def test_a_large_request_to_a_busy_worker_does_not_block_the_loop(worker):
    # While the child sleeps it reads nothing, so a request larger than the pipe's buffer
    # cannot be written at once; the loop must go on serving (a blocking write would stall
    # every other request until the child finishes).
    busy = asyncio.ensure_future(worker.call("sleep", 1.0))
    await asyncio.sleep(0.05)
    blob = b"x" * 8_000_000
    loop = asyncio.get_running_loop()
    echoed = asyncio.ensure_future(worker.call("echo", blob))
    gaps, last = [], loop.time()
    while not echoed.done():
        await asyncio.sleep(0.01)
        now = loop.time()
        gaps.append(now - last)
        last = now
    assert max(gaps) < 0.2
    assert await busy == "slept"
    assert await echoed == blob
