"""The kinds of inference call a route can serve, independent of any wire format."""

from __future__ import annotations

from enum import StrEnum


class Operation(StrEnum):
    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"
    INFER = "infer"  # tensor inference over the Open Inference Protocol (V2)

    @property
    def streamable(self) -> bool:
        return self in (Operation.CHAT, Operation.COMPLETION)
