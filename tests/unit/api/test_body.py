"""read_body: the request body within the size limit, from ASGI receive messages."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.api.body import header, read_body
from modelport.errors import ClientDisconnected, PayloadTooLarge, RequestError


class Receive:
    """An ASGI receive callable that hands out scripted messages and counts the calls."""

    def __init__(self, *messages: dict[str, Any]) -> None:
        self._messages = list(messages)
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return self._messages.pop(0)


def scope(content_length: int | str | None = None) -> dict[str, Any]:
    headers = [(b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    return {"type": "http", "headers": headers}


def body(chunk: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": chunk, "more_body": more}


async def test_body_in_several_chunks_is_joined() -> None:
    receive = Receive(body(b'{"a"', more=True), body(b":", more=True), body(b"1}"))

    assert await read_body(scope(), receive, limit=100) == b'{"a":1}'


async def test_body_at_exactly_the_limit_is_accepted() -> None:
    assert await read_body(scope(4), Receive(body(b"abcd")), limit=4) == b"abcd"


async def test_declared_length_over_the_limit_is_refused_before_reading() -> None:
    receive = Receive(body(b"x" * 10))

    with pytest.raises(PayloadTooLarge) as info:
        await read_body(scope(10), receive, limit=4)

    assert info.value.status == 413
    assert receive.calls == 0


async def test_streamed_body_over_the_limit_is_refused_without_content_length() -> None:
    receive = Receive(body(b"abc", more=True), body(b"de", more=True), body(b"never"))

    with pytest.raises(PayloadTooLarge):
        await read_body(scope(), receive, limit=4)

    assert receive.calls == 2


async def test_non_numeric_content_length_is_a_400() -> None:
    with pytest.raises(RequestError) as info:
        await read_body(scope("ten"), Receive(body(b"")), limit=4)

    assert info.value.status == 400


async def test_disconnect_while_reading_raises_client_disconnected() -> None:
    receive = Receive(body(b"ab", more=True), {"type": "http.disconnect"})

    with pytest.raises(ClientDisconnected):
        await read_body(scope(), receive, limit=100)


async def test_empty_body_reads_as_empty_bytes() -> None:
    assert await read_body(scope(), Receive(body(b"")), limit=100) == b""


def test_a_repeated_header_reads_as_its_first_value() -> None:
    request = {"type": "http", "headers": [(b"x-priority", b"batch"), (b"x-priority", b"x"),
                                           (b"authorization", b"Bearer a")]}
    assert header(request, b"x-priority") == b"batch"
    assert header(request, b"authorization") == b"Bearer a"
    assert header(request, b"prefer") is None
