"""Usage read back from the request ledger: reports per key or route, and spend per key.

Read-only over the ``requests`` table, which ``LedgerWriter`` fills; nothing here writes.
Each query is one aggregate over ``(key_id, created_at)`` or ``(route, created_at)``,
both indexed. Synchronous: call it from a worker thread on a server.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Connection, func, select

from modelport.store.engine import EngineStore, unavailable_as_error
from modelport.store.tables import requests

GroupBy = Literal["key", "route"]


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One group of a report; ``group`` is None for requests made without a key or route."""

    group: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class UsageStore(EngineStore):
    """Build it with ``UsageStore.open(url)`` (which migrates and owns the engine), or with
    an engine whose schema the caller has already migrated (``modelport.store.migrate``)."""

    def report(self, by: GroupBy, since: datetime, until: datetime | None) -> list[UsageRow]:
        """Inference requests answered (2xx), their tokens and cost, per key or route in
        ``[since, until)``, costliest first. Refusals and other endpoints do not count."""
        group = requests.c.key_id if by == "key" else requests.c.route
        cost = func.coalesce(func.sum(requests.c.cost_usd), 0.0)
        query = (
            select(
                group,
                func.count(),
                func.coalesce(func.sum(requests.c.prompt_tokens), 0),
                func.coalesce(func.sum(requests.c.completion_tokens), 0),
                cost,
            )
            .where(requests.c.created_at >= since)
            .where(requests.c.operation.is_not(None))
            .where(requests.c.status.between(200, 299))
            .group_by(group)
            .order_by(cost.desc(), group.asc().nulls_last())
        )
        if until is not None:
            query = query.where(requests.c.created_at < until)
        with self._connection() as conn:
            return [
                UsageRow(name, int(count), int(prompt), int(completion), float(spent))
                for name, count, prompt, completion, spent in conn.execute(query)
            ]

    def spent_by_key(self, since: datetime) -> dict[str, float]:
        """Cost per key since ``since``: what budgets start from when a server starts."""
        query = (
            select(requests.c.key_id, func.coalesce(func.sum(requests.c.cost_usd), 0.0))
            .where(requests.c.key_id.is_not(None), requests.c.created_at >= since)
            .group_by(requests.c.key_id)
        )
        with self._connection() as conn:
            return {key_id: float(spent) for key_id, spent in conn.execute(query)}

    def last_used_by_key(self) -> dict[str, datetime]:
        """When each key that was ever used was used last."""
        query = (
            select(requests.c.key_id, func.max(requests.c.created_at))
            .where(requests.c.key_id.is_not(None))
            .group_by(requests.c.key_id)
        )
        with self._connection() as conn:
            return {key_id: last for key_id, last in conn.execute(query)}

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with unavailable_as_error(), self._engine.connect() as conn:
            yield conn
