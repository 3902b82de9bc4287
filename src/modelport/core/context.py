"""The facts gathered about one request as it passes through the layers.

The HTTP surface creates it, the inference use cases fill in what the record needs (route,
target, usage, timings; the attempts' ends add the time upstream), and the recorder turns it
into a log line, metrics and a ledger record once the response (streamed or not) has ended.
It carries facts for the record only: a use case returns its answer and headers. It holds
no bodies unless the route captures them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from modelport.core.operation import Operation
from modelport.core.usage import Usage


@dataclass(slots=True)
class RequestContext:
    request_id: str
    method: str
    path: str
    client: str = ""
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)
    recorded: bool = False  # an inference use case: the recorder takes it, refusals included
    operation: Operation | None = None  # set once the request is admitted to a route or model
    model_version: str | None = None  # when the use case knows it (a tensor model's version)
    prompt_version: str | None = None  # the route's prompt put before the request, if any
    validation: str | None = None  # the output contract's verdict: passed, repaired, failed
    # input guards' actions: (masked, kind, how many) or (blocked, rule, 1); never the values
    guards: list[tuple[str, str, int]] | None = None
    route: str | None = None
    target: str | None = None
    stream: bool = False
    status: int = 0
    error_code: str | None = None
    upstream_s: float = 0.0
    first_chunk_s: float | None = None
    usage: Usage | None = None
    usage_estimated: bool = False  # the provider reported none; ``usage`` is Modelport's guess
    client_disconnected: bool = False
    request_body: bytes | None = None
    response_body: bytes | None = None
    key_id: str | None = None
    environment: str | None = None
    cost_usd: float | None = None
    # headers the HTTP surface's own pages add (admin, dashboard); the inference use cases
    # return theirs with their answer (or on their error) instead
    response_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    attempts: list[Any] = field(default_factory=list)  # inference.attempts.Attempt records
    chunk_gaps: list[float] = field(default_factory=list)  # seconds between stream chunks
    queue_s: float = 0.0  # time spent waiting for a target's admission slot
    batch_id: str | None = None  # a batch line's request: its batch

    def elapsed(self) -> float:
        return time.perf_counter() - self.started
