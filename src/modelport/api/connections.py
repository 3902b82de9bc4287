"""Connections: what a client may hold and how slowly it may talk, before any request exists.

uvicorn's httptools protocol, with the limits it lacks: the request head may be at most
``server.max_header_bytes`` (431), must arrive within ``server.header_timeout_s`` of its first
byte (or of the connection opening), and the body within ``server.body_timeout_s`` of the head
(408, then the connection closes); one client address may hold at most
``server.max_connections_per_client`` connections (429). Without these a client that sends a
64 MiB header stalls the event loop, and slow or idle connections pile up until the process
runs out of file descriptors. uvicorn's own plain-text 400 for malformed HTTP is answered in
OpenAI's error shape.

The checks run per network read, not per byte: counting a read against the head is one
comparison unless it could overflow the limit, and the deadlines are two reads of the loop's
clock per request, checked by one sweep per server. Nothing here knows about routes or keys.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from modelport.config.settings import ServerSettings
from modelport.errors import (
    HeadersTooLarge,
    ModelportError,
    RequestError,
    RequestTimeout,
    TooManyConnections,
)
from modelport.protocol.openai.errors import error_body

log = logging.getLogger("modelport.connections")

_END_OF_HEAD = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float
    max_per_client: int  # 0: no limit

    @classmethod
    def of(cls, server: ServerSettings) -> ConnectionLimits:
        return cls(server.max_header_bytes, server.header_timeout_s, server.body_timeout_s,
                   server.max_connections_per_client)


class ClientTable:
    """Open connections per client address, for one server."""

    __slots__ = ("_limit", "_open")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[str, int] = {}

    def enter(self, address: str) -> bool:
        count = self._open.get(address, 0)
        if self._limit and count >= self._limit:
            return False
        self._open[address] = count + 1
        return True

    def leave(self, address: str) -> None:
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)


def response_bytes(exc: ModelportError) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, for errors raised below the app."""
    body = error_body(exc)
    head = [STATUS_LINE[exc.status], b"content-type: application/json\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\n", b"connection: close\r\n"]
    for name, value in exc.headers.items():
        head.append(f"{name.lower()}: {value}\r\n".encode())
    return b"".join((*head, b"\r\n", body))


def guarded_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class for one server: its limits, its table of clients, its sweep."""

    class GuardedProtocol(_Guarded):
        _limits = limits
        _clients = ClientTable(limits.max_per_client)
        _sweep = _Sweep(min(limits.header_timeout_s, limits.body_timeout_s) / 2)

    return GuardedProtocol


class _Sweep:
    """One timer per server, not one per request: every ``interval`` seconds while it has
    connections, it ends those past their deadline. A request costs two reads of the loop's
    clock instead of a timer armed and cancelled twice."""

    __slots__ = ("_interval", "_running")

    def __init__(self, interval: float) -> None:
        self._interval = min(max(interval, 0.05), 1.0)
        self._running = False

    def ensure(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        if not self._running:
            self._running = True
            loop.call_later(self._interval, self._run, loop, connections)

    def _run(self, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        now = loop.time()
        for connection in list(connections):
            if isinstance(connection, _Guarded) and 0 < connection.deadline <= now:
                connection.too_slow()
        if connections:
            loop.call_later(self._interval, self._run, loop, connections)
        else:
            self._running = False


class _Guarded(HttpToolsProtocol):
    _limits: ConnectionLimits
    _clients: ClientTable
    _sweep: _Sweep

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._address = ""
        self._counted = False
        self._in_head = True  # between requests, or inside a request's head
        self._head_bytes = 0
        self._tail = b""
        self.deadline = 0.0  # loop time by which the head or body must be in; 0: none

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = self.client[0] if self.client else ""
        if not self._clients.enter(self._address):
            self._reject(TooManyConnections(
                "This address holds too many open connections; close some and retry.",
                headers={"Retry-After": "1"}))
            return
        self._counted = True
        self.deadline = self.loop.time() + self._limits.header_timeout_s
        self._sweep.ensure(self.loop, self.connections)

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline = 0.0
        if self._counted:
            self._counted = False
            self._clients.leave(self._address)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            room = self._limits.max_header_bytes - self._head_bytes
            if len(data) > room and (self._tail + data).find(
                _END_OF_HEAD, 0, room + len(self._tail) + len(_END_OF_HEAD)
            ) < 0:
                self._reject(HeadersTooLarge(
                    f"The request's headers are larger than the limit of "
                    f"{self._limits.max_header_bytes} bytes."))
                return
            self._head_bytes += len(data)
            self._tail = data[-3:]
            if not self.deadline:
                self.deadline = self.loop.time() + self._limits.header_timeout_s
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self.deadline = self.loop.time() + self._limits.body_timeout_s
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.deadline = 0.0
        self._in_head, self._head_bytes, self._tail = True, 0, b""
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        self._reject(RequestError(f"{msg} Send an HTTP/1.1 request."))

    def _reject(self, exc: ModelportError) -> None:
        self.deadline = 0.0
        if not self.transport.is_closing():
            self.transport.write(response_bytes(exc))
            self.transport.close()

    def too_slow(self) -> None:
        """Past the deadline: 408 and close, unless an answer is already on its way."""
        self.deadline = 0.0
        cycle = self.cycle
        in_flight = cycle is not None and not cycle.response_complete
        if self._in_head and in_flight:  # a pipelined head waits for the answer before it
            self.deadline = self.loop.time() + self._limits.header_timeout_s
            return
        if in_flight and cycle.response_started:
            self.transport.close()  # the body stalled after the app answered: just hang up
            return
        part = "headers" if self._in_head else "body"
        log.info("closing a connection whose request %s came too slowly", part,
                 extra={"client": self._address})
        if in_flight:
            cycle.disconnected = True  # the app's next receive() sees the client gone
            cycle.message_event.set()
        self._reject(RequestTimeout(f"The request's {part} did not arrive in time."))
