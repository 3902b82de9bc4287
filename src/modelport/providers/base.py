"""The seam between the use cases and anything that answers inference.

A provider takes a ready-to-send request body for one operation and either returns the
upstream's reply, opens a stream, or raises a ``modelport.errors.UpstreamError``. A 2xx
reply is a JSON object (a provider raises ``UpstreamBadResponse`` for anything else, so the
route's rules retry or fall back from it and the breaker counts it). A reply may carry a
client error (4xx) from the provider, already scrubbed of secrets, which the caller passes
back as it is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import orjson

from modelport.core.operation import Operation
from modelport.core.usage import Usage


# not frozen: one is made for every request, and a frozen dataclass costs three times
# as much to construct; nothing changes one once made
@dataclass(slots=True)
class UpstreamReply:
    status: int
    body: bytes
    content_type: str = "application/json"
    # the body already parsed, when the provider had to parse it (a 2xx answer is checked
    # to be a JSON object); None: parse ``body`` when needed
    document: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def parsed(self) -> Any:
        """The body as JSON (the provider's parse when it made one); None when it is not."""
        if self.document is not None:
            return self.document
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def usage(self) -> Usage | None:
        """The ``usage`` object it reports, if any."""
        parsed = self.document if self.document is not None else self.parsed()
        return Usage.from_openai(parsed.get("usage")) if isinstance(parsed, dict) else None


class UpstreamStream(Protocol):
    """An open streaming response: raw bytes as they arrive, and a way to let go early."""

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def send(self, operation: Operation, body: bytes, *,
                   idempotency_key: str | None = None) -> UpstreamReply:
        """The whole answer; ``idempotency_key``, when given, is sent where the provider
        honours one (the same key on a retry of the same work)."""
        ...

    async def open_stream(
        self, operation: Operation, body: bytes
    ) -> UpstreamStream | UpstreamReply:
        """Open a stream; a client error from the provider comes back as a reply instead."""
        ...


@runtime_checkable
class HostedRuntime(Protocol):
    """A provider that is a model Modelport runs itself: it loads, and has a state."""

    @property
    def state(self) -> str:
        """``starting`` (loading or restarting), ``ready``, ``failed`` or ``stopped``."""
        ...
