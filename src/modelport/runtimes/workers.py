"""Worker processes: where local models run, away from the event loop.

A ``Worker`` owns one child process (started with ``spawn``) and one pipe to it, a socket
that the event loop watches in both directions, never blocking on it: each time it is
readable one ``read`` takes what has arrived and every whole reply in it is delivered at once
(``_ReplyReader``), and a request the child is too busy to take in whole waits in a buffer
that the loop writes out as the child reads (``_RequestWriter``), so a large request to a busy
model never stalls other requests. No thread sits between the child and the loop, so a
streamed token costs no thread switch or GIL hand-off on its way. Both ends speak
``multiprocessing.Connection``'s framing, which the child reads and writes as usual.

A request is either a call (one reply) or a stream (parts, then a final reply). When the
child dies, every request it held fails with ``RuntimeCrashed`` (a server error, so a route can
fall back to another target) and the child is started again after a backoff; requests that
arrive meanwhile fail at once with ``RuntimeUnavailable``. Nothing waits on a dead process.

The child runs ``entry(channel, spec)``: it loads its model, calls ``channel.ready(info)``
(or raises, and the reason is reported) and then serves messages from ``channel.recv()``
until it returns ``None``.

Messages parent -> child: ``(request_id, op, payload)``; ``op`` "cancel" withdraws a
request. Child -> parent: ``(request_id, kind, payload)`` with kind "part", "reply" or
"error" (payload ``(code, message)``); request id 0 carries "ready" and "failed".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import struct
import time
from collections.abc import AsyncIterator, Callable
from multiprocessing.connection import Connection
from typing import Any

from modelport.errors import (
    ContextTooLong,
    InputRejected,
    ModelportError,
    RuntimeCrashed,
    RuntimeUnavailable,
    UpstreamServerError,
)

log = logging.getLogger("modelport.runtimes")

Entry = Callable[["ChildChannel", Any], None]

# Errors a child may report, by code: any other code is a server error of the runtime,
# and INTERNAL a bug in the worker's own code (a 500 with the request id, as elsewhere).
_CHILD_ERRORS: dict[str, type[ModelportError]] = {
    "invalid_request": InputRejected,
    "context_length_exceeded": ContextTooLong,
}
INTERNAL = "internal_error"


class WorkerBug(RuntimeError):
    """An exception in a worker outside the model's own call: Modelport's fault, never the
    caller's; not a ``ModelportError``, so the server answers 500 and logs it once."""


def child_error(exc: Exception) -> tuple[str, str]:
    """How a worker reports an exception: input its model rejected is the caller's
    (``InputRejected``), a failure of the model itself the runtime's (``UpstreamServerError``),
    anything else a bug."""
    if isinstance(exc, InputRejected):
        return "invalid_request", exc.message
    if isinstance(exc, UpstreamServerError):
        return "runtime_error", exc.message
    return INTERNAL, f"{type(exc).__name__}: {exc}"
_RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_LOADING_RETRY_AFTER_S = 2  # what a client is told to wait while a model loads


class ChildChannel:
    """The child's end of the pipe, with the message kinds spelled out."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.closed = False

    def ready(self, info: dict[str, Any]) -> None:
        self._conn.send((0, "ready", info))

    def recv(self, timeout: float | None = None) -> tuple[int, str, Any] | None:
        """The next message; ``None`` when the parent has gone or asked to stop, or when
        ``timeout`` passed with nothing to read (check ``closed`` to tell which)."""
        try:
            if timeout is not None and not self._conn.poll(timeout):
                return None
            message: tuple[int, str, Any] = self._conn.recv()
        except (EOFError, OSError):
            self.closed = True
            return None
        if message[1] == "stop":
            self.closed = True
            return None
        return message

    def part(self, request_id: int, payload: Any) -> None:
        self._conn.send((request_id, "part", payload))

    def reply(self, request_id: int, payload: Any) -> None:
        self._conn.send((request_id, "reply", payload))

    def error(self, request_id: int, code: str, message: str) -> None:
        self._conn.send((request_id, "error", (code, message)))


def answer_calls(channel: ChildChannel, op: str, handle: Callable[[Any], Any],
                 classify: Callable[[Exception], tuple[str, str]] = child_error) -> None:
    """The loop of a worker whose requests are single calls: ``handle`` each ``op`` message
    and reply, or report the failure as ``classify`` names it (an error code and a message).
    Cancellations are ignored: a call is short and already running. Returns on stop."""
    while True:
        message = channel.recv()
        if message is None:
            return
        request_id, kind, payload = message
        if kind != op:
            continue
        try:
            channel.reply(request_id, handle(payload))
        except Exception as exc:
            code, text = classify(exc)
            channel.error(request_id, code, text)


def _child_main(entry: Entry, conn: Connection, spec: Any) -> None:
    # The parent decides when workers stop: a Ctrl-C or a SIGTERM sent to the whole process
    # group (systemd's default) reaches the server, which drains and then stops its workers;
    # were they to die first, shutdown would look like crashes. A parent that dies without
    # stopping them closes the pipe, and they exit on that.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    channel = ChildChannel(conn)
    try:
        entry(channel, spec)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            conn.send((0, "failed", f"{type(exc).__name__}: {exc}"))
        raise SystemExit(1) from None


def _frame(message: Any) -> tuple[bytes, bytes]:
    """``multiprocessing.Connection``'s framing: a 4-byte big-endian signed length (or -1 and
    an 8-byte length for a message over 2 GiB), then the pickled message."""
    data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
    size = len(data)
    header = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)
    return header, data


class _RequestWriter:
    """Requests to the child on the parent's non-blocking end of the pipe. What the socket
    does not take at once is kept, in order, and written by the loop as the socket drains
    (``add_writer``); later requests queue behind it."""

    __slots__ = ("_loop", "_pending", "fd")

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self._loop = loop
        self._pending = bytearray()

    def send(self, message: Any) -> None:
        """Write one message, or keep what does not fit; raises OSError when the child's end
        is closed."""
        header, data = _frame(message)
        sent = 0
        if not self._pending:  # else it queues behind what is already waiting
            with contextlib.suppress(BlockingIOError, InterruptedError):
                sent = os.writev(self.fd, [header, data])
            if sent == len(header) + len(data):
                return
            self._loop.add_writer(self.fd, self._flush)
        if sent < len(header):
            self._pending += header[sent:]
            self._pending += data
        else:
            self._pending += memoryview(data)[sent - len(header):]

    def _flush(self) -> None:
        try:
            sent = os.write(self.fd, self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the child is gone: its end of file reaches the reader
            sent = len(self._pending)
        del self._pending[:sent]
        if not self._pending:
            self._loop.remove_writer(self.fd)

    def stop(self) -> None:
        if self._pending:
            self._pending.clear()
            self._loop.remove_writer(self.fd)


class _ReplyReader:
    """The child's messages, parsed on the event loop from the bytes each readable event
    brings (``_frame``'s framing); a message split across reads waits in the buffer for the
    rest."""

    __slots__ = ("_buffer", "_chunk", "fd")

    def __init__(self, fd: int, read_size: int = 1 << 18) -> None:
        self.fd = fd
        self._buffer = bytearray()
        # Read into one buffer kept for the worker's life: a fresh bytes object per read
        # would be a large allocation (an mmap and munmap) per streamed token.
        self._chunk = memoryview(bytearray(read_size))

    def read(self) -> list[tuple[int, str, Any]] | None:
        """The whole messages that have arrived; ``None`` at end of file (the child is
        gone). Raises for a message that cannot be unpickled."""
        try:
            n = os.readv(self.fd, [self._chunk])
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            return None
        if not n:
            return None
        buffer = self._buffer
        buffer += self._chunk[:n]
        messages: list[tuple[int, str, Any]] = []
        while len(buffer) >= 4:
            (size,) = struct.unpack_from("!i", buffer)
            start = 4
            if size == -1:
                if len(buffer) < 12:
                    break
                (size,) = struct.unpack_from("!Q", buffer, 4)
                start = 12
            end = start + size
            if len(buffer) < end:
                break
            messages.append(pickle.loads(buffer[start:end]))
            del buffer[:end]
        return messages


class _Pending:
    __slots__ = ("future", "queue")

    def __init__(self, future: asyncio.Future[Any] | None, queue: asyncio.Queue[Any] | None):
        self.future = future
        self.queue = queue


class Worker:
    """One model's child process, restarted when it dies."""

    def __init__(
        self,
        name: str,
        entry: Entry,
        spec: Any,
        *,
        start_timeout_s: float = 300.0,
        on_restart: Callable[[], None] | None = None,
        on_state: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.info: dict[str, Any] = {}
        self.state = "stopped"  # starting, ready, failed, stopped
        self.reason: str | None = None
        self._entry = entry
        self._spec = spec
        self._start_timeout_s = start_timeout_s
        self._on_restart = on_restart
        self._on_state = on_state
        self._ctx = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._writer: _RequestWriter | None = None
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._ready: asyncio.Future[None] | None = None
        self._closing = False
        self._crashes = 0
        self._restart_task: asyncio.Task[None] | None = None
        self._generation = 0
        self._ready_since = 0.0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> bool:
        """Start the child and wait until it is ready; ``False`` (with ``reason``) if it
        could not load. Never raises for a model that fails to load."""
        loop = asyncio.get_running_loop()
        self._generation += 1
        generation = self._generation
        self._set_state("starting")
        self._ready = loop.create_future()
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_child_main, args=(self._entry, child, self._spec),
            name=f"modelport-{self.name}", daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        os.set_blocking(parent.fileno(), False)
        self._writer = _RequestWriter(parent.fileno(), loop)
        reader = _ReplyReader(parent.fileno())
        loop.add_reader(reader.fd, self._on_readable, reader, generation)
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self._start_timeout_s)
        except TimeoutError:
            self._fail_start(f"did not become ready within {self._start_timeout_s:g} s")
            self._kill()
        return self.state == "ready"

    async def close(self) -> None:
        self._closing = True
        if self._restart_task is not None:
            self._restart_task.cancel()
        conn, process = self._conn, self._process
        if conn is not None and self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.send((0, "stop", None))
        if process is not None:
            await asyncio.to_thread(process.join, 5.0)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5.0)
        if conn is not None:
            self._disconnect(conn)
        self._fail_all(RuntimeUnavailable(f"Local model '{self.name}' was stopped."))
        self._set_state("stopped")

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    def _set_state(self, state: str) -> None:
        self.state = state
        if self._on_state is not None:
            self._on_state(state)

    def _fail_start(self, reason: str) -> None:
        self.reason = reason
        self._set_state("failed")
        log.error("runtime_load_failed", extra={"runtime": self.name, "reason": reason})
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    # -- requests ----------------------------------------------------------------------

    async def call(self, op: str, payload: Any) -> Any:
        """Send one request and wait for its reply; cancelling the caller withdraws it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        request_id = self._send(op, payload, _Pending(future, None))
        try:
            return await future
        except asyncio.CancelledError:
            self._withdraw(request_id)
            raise

    async def stream(self, op: str, payload: Any) -> AsyncIterator[Any]:
        """Send one request and yield its parts; the final reply ends the stream (and is
        yielded when it is not ``None``). Leaving early withdraws the request."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        request_id = self._send(op, payload, _Pending(None, queue))
        finished = False
        try:
            while True:
                kind, item = await queue.get()
                if kind == "part":
                    yield item
                    continue
                finished = True
                if kind == "error":
                    raise item
                if item is not None:
                    yield item
                return
        finally:
            if not finished:
                self._withdraw(request_id)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def _send(self, op: str, payload: Any, pending: _Pending) -> int:
        if self.state != "ready" or self._writer is None:
            raise RuntimeUnavailable(self._unavailable_message(), retry_after_s=(
                _LOADING_RETRY_AFTER_S if self.state == "starting" else None))
        self._next_id += 1
        request_id = self._next_id
        self._pending[request_id] = pending
        try:
            self._writer.send((request_id, op, payload))
        except (OSError, ValueError) as exc:
            del self._pending[request_id]
            raise RuntimeCrashed(f"Local model '{self.name}' is not reachable.") from exc
        return request_id

    def _withdraw(self, request_id: int) -> None:
        if self._pending.pop(request_id, None) is not None and self._writer is not None:
            with contextlib.suppress(OSError, ValueError):
                self._writer.send((request_id, "cancel", None))

    def _unavailable_message(self) -> str:
        if self.state == "failed":
            return f"Local model '{self.name}' failed to load: {self.reason}"
        if self.state == "starting":
            return f"Local model '{self.name}' is loading or restarting; try again shortly."
        return f"Local model '{self.name}' is not running."

    # -- replies (read on the loop) ----------------------------------------------------

    def _on_readable(self, reader: _ReplyReader, generation: int) -> None:
        try:
            batch = reader.read()
        except Exception:  # an unpicklable reply: the child is broken
            log.exception("runtime_reply_unreadable", extra={"runtime": self.name})
            batch = None
            if generation == self._generation:
                self._kill()
        if batch is None:
            asyncio.get_running_loop().remove_reader(reader.fd)
            self._on_exit(generation)
        elif batch:
            self._deliver(batch, generation)

    def _disconnect(self, conn: Connection) -> None:
        """Stop watching the pipe, drop what was not written, and close it."""
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
        conn.close()

    def _deliver(self, batch: list[tuple[int, str, Any]], generation: int) -> None:
        if generation != self._generation:
            return
        for request_id, kind, payload in batch:
            if request_id == 0:
                self._control(kind, payload)
                continue
            pending = self._pending.get(request_id)
            if pending is None:
                continue  # withdrawn
            if kind == "part":
                if pending.queue is not None:
                    pending.queue.put_nowait(("part", payload))
                continue
            del self._pending[request_id]
            result: Any = payload
            if kind == "error":
                code, message = payload
                result = (WorkerBug(f"Local model '{self.name}': {message}")
                          if code == INTERNAL else
                          _CHILD_ERRORS.get(code, UpstreamServerError)(message))
            if pending.future is not None:
                if not pending.future.done():
                    if kind == "error":
                        pending.future.set_exception(result)
                    else:
                        pending.future.set_result(result)
            elif pending.queue is not None:
                pending.queue.put_nowait((kind, result))

    def _control(self, kind: str, payload: Any) -> None:
        if kind == "ready":
            self.info = dict(payload)
            self.reason = None
            self._ready_since = time.monotonic()
            self._set_state("ready")
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif kind == "failed":
            self._fail_start(str(payload))

    def _on_exit(self, generation: int) -> None:
        if generation != self._generation or self._closing:
            return
        was_ready = self.state == "ready"
        self._fail_all(RuntimeCrashed(f"Local model '{self.name}' crashed; try again."))
        if self._conn is not None:
            self._disconnect(self._conn)
            self._conn = None
        if not was_ready:
            if self.state != "failed":
                self._fail_start("the worker process exited while loading")
            return
        if time.monotonic() - self._ready_since > 60:
            self._crashes = 0  # it had been healthy for a while: restart promptly
        self._crashes += 1
        delay = _RESTART_BACKOFF_S[min(self._crashes - 1, len(_RESTART_BACKOFF_S) - 1)]
        exitcode = self._process.exitcode if self._process is not None else None
        log.error("runtime_crashed", extra={
            "runtime": self.name, "exitcode": exitcode, "restart_in_s": delay})
        self._set_state("starting")
        if self._on_restart is not None:
            self._on_restart()
        self._restart_task = asyncio.get_running_loop().create_task(self._restart(delay))

    async def _restart(self, delay: float) -> None:
        await asyncio.sleep(delay)
        if not self._closing:
            await self.start()

    def _fail_all(self, exc: ModelportError) -> None:
        pending, self._pending = self._pending, {}
        for item in pending.values():
            if item.future is not None and not item.future.done():
                item.future.set_exception(exc)
            elif item.queue is not None:
                item.queue.put_nowait(("error", exc))
