"""Watching an OpenAI chat/completions stream for its usage chunk, without re-encoding it.

When the client did not ask for usage, Modelport asks the provider for it anyway (so the
ledger has token counts) and drops the usage-only chunk before it reaches the client.
"""

from __future__ import annotations

import orjson

from modelport.core.usage import Usage
from modelport.protocol.sse import event_data

_USAGE_MARKERS = (b'"usage":{', b'"usage": {')


class UsageTap:
    __slots__ = ("strip_usage_chunk", "usage")

    def __init__(self, *, strip_usage_chunk: bool) -> None:
        self.strip_usage_chunk = strip_usage_chunk
        self.usage: Usage | None = None

    def forward(self, event: bytes) -> bool:
        """Record usage from ``event``; answer whether the client should see the event."""
        if not any(marker in event for marker in _USAGE_MARKERS):
            return True
        try:
            chunk = orjson.loads(event_data(event))
        except orjson.JSONDecodeError:
            return True
        if not isinstance(chunk, dict):
            return True
        usage = Usage.from_openai(chunk.get("usage"))
        if usage is None:
            return True
        self.usage = usage
        return not (self.strip_usage_chunk and not chunk.get("choices"))
