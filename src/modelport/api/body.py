"""Reading a request's headers and its body, within the configured size limit."""

from __future__ import annotations

from modelport.api.asgi import Receive, Scope
from modelport.errors import ClientDisconnected, PayloadTooLarge, RequestError
from modelport.policy.keys import PRIORITIES

_PRIORITIES = {name.encode(): value for name, value in PRIORITIES.items()}  # X-Priority
DEFAULT_PRIORITY = PRIORITIES["interactive"]  # a request that sends no X-Priority
HEADERS_KEY = "modelport.headers"  # the request's headers by name, built once per request


def request_timeout(value: bytes | None) -> float | None:
    """``X-Request-Timeout`` in seconds: it may shorten the route's deadline, never extend it."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86_400:
        raise RequestError("X-Request-Timeout must be a number of seconds above 0.",
                           param="X-Request-Timeout")
    return seconds


def request_priority(value: bytes | None) -> int:
    if value is None:
        return DEFAULT_PRIORITY
    priority = _PRIORITIES.get(value.strip().lower())
    if priority is None:
        raise RequestError("X-Priority must be 'interactive' or 'batch'.", param="X-Priority")
    return priority


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    length = (scope.get(HEADERS_KEY) or headers_of(scope)).get(b"content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise RequestError("Content-Length is not a number.") from None
        if declared > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected("The client closed the connection.")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def headers_of(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by name (in lower case), each its first value: indexed on the
    first call of a request (in C, one pass), so later lookups are dict reads."""
    table: dict[bytes, bytes] | None = scope.get(HEADERS_KEY)
    if table is None:
        table = scope[HEADERS_KEY] = dict(reversed(scope["headers"]))  # the first one wins
    return table


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (``name`` in lower case)."""
    return headers_of(scope).get(name)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")


def prefers_async(value: bytes | None) -> bool:
    """Whether a ``Prefer`` header (RFC 7240) asks for ``respond-async``: preferences are
    separated by commas, each a token with optional parameters after ``;`` or ``=``."""
    if not value:
        return False
    for preference in value.split(b","):
        token = preference.split(b";", 1)[0].split(b"=", 1)[0].strip().lower()
        if token == b"respond-async":
            return True
    return False
