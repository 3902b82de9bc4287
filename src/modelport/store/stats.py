"""Figures read back from the request ledger for the dashboard: time series (requests,
errors, latency percentiles, cost per time bucket) and per-target figures over a window.

Only inference requests count: those that reached routing (``operation`` is set), answered
or not. Calls refused before that (no valid key, a malformed body) and the other ``/v1``
endpoints (feedback, model lists, tokens) are in the ledger but not here, as in
``store.usage``.

Read-only over the ``requests`` table, which ``LedgerWriter`` fills. Each query reads a few
columns of at most ``MAX_ROWS`` rows, the newest of the window (``ix_requests_created_at``),
and aggregates in Python: SQLite and PostgreSQL share no date-truncation or percentile
function, and this way both give the same numbers. ``truncated`` says when a window held more
rows than that, and the figures then cover its newest rows only. Percentiles are nearest-rank
over the latencies of the bucket. Synchronous: call it from a worker thread on a server.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self

from sqlalchemy import Connection, select

from modelport.store.engine import EngineStore, unavailable_as_error
from modelport.store.tables import requests

MAX_ROWS = 200_000


def percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of ascending ``ordered``; None if empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class Figures:
    """Inference requests, errors (status 400 and above), latency
    percentiles in milliseconds (None without requests) and cost in USD."""

    requests: int = 0
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cost_usd: float = 0.0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(slots=True)
class _Tally:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    cost_usd: float = 0.0

    def add(self, status: int, latency_ms: float, cost_usd: float | None) -> None:
        self.latencies.append(latency_ms)
        self.errors += status >= 400
        self.cost_usd += cost_usd or 0.0

    def figures(self) -> Figures:
        ordered = sorted(self.latencies)
        return Figures(len(ordered), self.errors, percentile(ordered, 0.5),
                       percentile(ordered, 0.99), self.cost_usd)


@dataclass(frozen=True, slots=True)
class Bucket:
    start: datetime
    figures: Figures


@dataclass(frozen=True, slots=True)
class Series:
    """``buckets`` of ``bucket_s`` seconds each, aligned on multiples of ``bucket_s`` since
    the epoch, from the one holding ``since`` to the one holding ``until``; empty ones too."""

    since: datetime
    until: datetime
    bucket_s: int
    buckets: list[Bucket]
    totals: Figures
    truncated: bool


@dataclass(frozen=True, slots=True)
class TargetFigures:
    """Figures per ``(route, target)``; ``(route, None)`` holds all of a route's requests,
    those refused before any target was chosen too."""

    since: datetime
    figures: dict[tuple[str, str | None], Figures]
    truncated: bool


class StatsStore(EngineStore):
    """Build it with ``StatsStore.open(url)``, over an already migrated engine, or with
    ``StatsStore.sharing(store)`` over the engine of another store."""

    @classmethod
    def sharing(cls, store: EngineStore) -> Self:
        return cls(store._engine)

    def series(self, since: datetime, until: datetime, bucket_s: int) -> Series:
        """Requests in ``[since, until)`` in time buckets of ``bucket_s`` seconds."""
        first = math.floor(since.timestamp() / bucket_s) * bucket_s
        count = max(1, math.ceil((until.timestamp() - first) / bucket_s))
        tallies = [_Tally() for _ in range(count)]
        total = _Tally()
        query = (
            select(requests.c.created_at, requests.c.status, requests.c.latency_ms,
                   requests.c.cost_usd)
            .where(requests.c.created_at >= since, requests.c.created_at < until,
                   requests.c.operation.is_not(None))
            .order_by(requests.c.created_at.desc())
            .limit(MAX_ROWS + 1)
        )
        with self._connection() as conn:
            rows = conn.execute(query).all()
        for created_at, status, latency_ms, cost_usd in rows[:MAX_ROWS]:
            index = int((created_at.timestamp() - first) // bucket_s)
            tallies[min(max(index, 0), count - 1)].add(status, latency_ms, cost_usd)
            total.add(status, latency_ms, cost_usd)
        buckets = [Bucket(datetime.fromtimestamp(first + i * bucket_s, UTC), t.figures())
                   for i, t in enumerate(tallies)]
        return Series(since, until, bucket_s, buckets, total.figures(),
                      truncated=len(rows) > MAX_ROWS)

    def by_target(self, since: datetime) -> TargetFigures:
        """Figures per route and per (route, target) since ``since``."""
        query = (
            select(requests.c.route, requests.c.target, requests.c.status,
                   requests.c.latency_ms, requests.c.cost_usd)
            .where(requests.c.created_at >= since, requests.c.route.is_not(None),
                   requests.c.operation.is_not(None))
            .order_by(requests.c.created_at.desc())
            .limit(MAX_ROWS + 1)
        )
        with self._connection() as conn:
            rows = conn.execute(query).all()
        tallies: dict[tuple[str, str | None], _Tally] = {}
        for route, target, status, latency_ms, cost_usd in rows[:MAX_ROWS]:
            tallies.setdefault((route, None), _Tally()).add(status, latency_ms, cost_usd)
            if target is not None:
                tallies.setdefault((route, target), _Tally()).add(status, latency_ms, cost_usd)
        return TargetFigures(since, {group: t.figures() for group, t in tallies.items()},
                             truncated=len(rows) > MAX_ROWS)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with unavailable_as_error(), self._engine.connect() as conn:
            yield conn
