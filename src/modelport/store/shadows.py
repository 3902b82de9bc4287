"""A route's shadow calls against the answers they copied, read back from the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Self

from sqlalchemy import Connection, select

from modelport.store.engine import EngineStore, unavailable_as_error
from modelport.store.stats import MAX_ROWS, percentile
from modelport.store.tables import requests


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """Shadow calls since ``since``, and the served answers they copied."""

    since: datetime
    target: str | None  # the shadow target (the newest row's)
    shadows: int
    errors: int
    matches: int
    differs: int
    shadow_p50_ms: float | None
    shadow_p95_ms: float | None
    served_p50_ms: float | None
    served_p95_ms: float | None
    shadow_cost_usd: float
    served_cost_usd: float
    truncated: bool

    @property
    def match_rate(self) -> float | None:
        answered = self.matches + self.differs
        return self.matches / answered if answered else None


class ShadowStore(EngineStore):
    @classmethod
    def sharing(cls, store: EngineStore) -> Self:
        return cls(store._engine)

    def compare(self, route: str, since: datetime) -> ShadowComparison:
        shadow_rows = select(
            requests.c.shadow_of, requests.c.target, requests.c.status,
            requests.c.latency_ms, requests.c.cost_usd, requests.c.shadow_match,
        ).where(requests.c.route == route, requests.c.created_at >= since,
                requests.c.shadow_of.is_not(None)
                ).order_by(requests.c.created_at.desc()).limit(MAX_ROWS + 1)
        with self._connection() as conn:
            shadows = conn.execute(shadow_rows).all()[:MAX_ROWS + 1]
            truncated = len(shadows) > MAX_ROWS
            shadows = shadows[:MAX_ROWS]
            served = self._served(conn, [r.shadow_of for r in shadows])
        ok = [r for r in shadows if r.status < 400]
        shadow_ms = sorted(r.latency_ms for r in ok)
        served_ms = sorted(ms for ms, _ in served.values())
        return ShadowComparison(
            since=since, target=shadows[0].target if shadows else None,
            shadows=len(shadows), errors=len(shadows) - len(ok),
            matches=sum(1 for r in shadows if r.shadow_match is True),
            differs=sum(1 for r in shadows if r.shadow_match is False),
            shadow_p50_ms=percentile(shadow_ms, 0.5), shadow_p95_ms=percentile(shadow_ms, 0.95),
            served_p50_ms=percentile(served_ms, 0.5), served_p95_ms=percentile(served_ms, 0.95),
            shadow_cost_usd=sum(r.cost_usd or 0.0 for r in shadows),
            served_cost_usd=sum(cost or 0.0 for _, cost in served.values()),
            truncated=truncated)

    @staticmethod
    def _served(conn: Connection, ids: list[str]) -> dict[str, tuple[float, float | None]]:
        found: dict[str, tuple[float, float | None]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = conn.execute(select(requests.c.request_id, requests.c.latency_ms,
                                       requests.c.cost_usd)
                                .where(requests.c.request_id.in_(chunk),
                                       requests.c.shadow_of.is_(None)))
            for request_id, latency_ms, cost_usd in rows:
                found[request_id] = (latency_ms, cost_usd)
        return found

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with unavailable_as_error(), self._engine.connect() as conn:
            yield conn
