"""The kinds of inference call a route can serve, independent of any wire format."""

from __future__ import annotations

from enum import StrEnum


class Operation(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"

    @property
    def streamable(self) -> bool:
        return self is not Operation.EMBEDDING
