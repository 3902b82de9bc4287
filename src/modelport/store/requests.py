"""The request ledger read back: one request with its feedback, pages of requests, user
feedback written, and captured bodies deleted after their route's retention period.

Synchronous like every store: call it from a worker thread on a server. Pages are ordered
newest first and continue from an opaque cursor (the last row's id), so that rows written
while a client pages do not shift what it sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection, RowMapping, and_, insert, select, update

from modelport.store.engine import EngineStore, unavailable_as_error
from modelport.store.tables import feedback, requests

MAX_PAGE = 500
_BODY = 64 * 1024  # captured bodies are shown up to this many bytes


@dataclass(frozen=True, slots=True)
class RequestFilter:
    route: str | None = None
    key_id: str | None = None
    status: int | None = None  # an exact status, or a class given as 200, 400, 500 ...
    status_class: int | None = None  # 2, 4 or 5
    since: datetime | None = None
    until: datetime | None = None
    batch_id: str | None = None


@dataclass(frozen=True, slots=True)
class Feedback:
    request_id: str
    key_id: str | None
    route: str | None
    model_version: str | None
    outcome: str
    score: float | None = None
    correction: str | None = None
    comment: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _row(row: RowMapping, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "request_id": row["request_id"],
        "created_at": _iso(row["created_at"]),
        "method": row["method"],
        "path": row["path"],
        "operation": row["operation"],
        "key_id": row["key_id"],
        "environment": row["environment"],
        "route": row["route"],
        "target": row["target"],
        "model_version": row["model_version"],
        "config_version": row["config_version"],
        "status": row["status"],
        "error_code": row["error_code"],
        "stream": bool(row["stream"]),
        "client_disconnected": bool(row["client_disconnected"]),
        "latency_ms": row["latency_ms"],
        "queue_ms": row["queue_ms"],
        "upstream_ms": row["upstream_ms"],
        "overhead_ms": row["overhead_ms"],
        "first_chunk_ms": row["first_chunk_ms"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "usage_estimated": bool(row["usage_estimated"]),
        "prompt_version": row["prompt_version"],
        "batch_id": row["batch_id"],
        "validation": row["validation"],
        "guards": row["guards"],
        "shadow_of": row["shadow_of"],
        "shadow_match": row["shadow_match"],
        "cost_usd": row["cost_usd"],
        "attempts": row["attempts"],
    }
    if full:
        out["attempt_log"] = orjson.loads(row["attempt_log"]) if row["attempt_log"] else []
        for name in ("request_body", "response_body"):
            body = row[name]
            out[name] = body[:_BODY].decode("utf-8", "replace") if body is not None else None
    return out


class RequestStore(EngineStore):
    """Build it with ``RequestStore.open(url)``, or with an already migrated engine."""

    def get(self, request_id: str) -> dict[str, Any] | None:
        """A request with its attempts, captured bodies and feedback; None if unknown."""
        with self._connection() as conn:
            row = conn.execute(
                select(requests).where(requests.c.request_id == request_id)
                .order_by(requests.c.id.desc()).limit(1)
            ).mappings().first()
            if row is None:
                return None
            found = _row(row, full=True)
            found["feedback"] = [
                {"outcome": f["outcome"], "score": f["score"], "correction": f["correction"],
                 "comment": f["comment"], "created_at": _iso(f["created_at"])}
                for f in conn.execute(
                    select(feedback).where(feedback.c.request_id == request_id)
                    .order_by(feedback.c.id)
                ).mappings()
            ]
        return found

    def page(self, where: RequestFilter, limit: int = 50, cursor: int | None = None
             ) -> tuple[list[dict[str, Any]], int | None]:
        """Requests matching ``where``, newest first, and the cursor of the next page."""
        limit = max(1, min(limit, MAX_PAGE))
        query = select(requests).order_by(requests.c.id.desc()).limit(limit + 1)
        conditions = []
        if where.route is not None:
            conditions.append(requests.c.route == where.route)
        if where.key_id is not None:
            conditions.append(requests.c.key_id == where.key_id)
        if where.batch_id is not None:
            conditions.append(requests.c.batch_id == where.batch_id)
        if where.status is not None:
            conditions.append(requests.c.status == where.status)
        if where.status_class is not None:
            low = where.status_class * 100
            conditions.append(requests.c.status.between(low, low + 99))
        if where.since is not None:
            conditions.append(requests.c.created_at >= where.since)
        if where.until is not None:
            conditions.append(requests.c.created_at < where.until)
        if cursor is not None:
            conditions.append(requests.c.id < cursor)
        if conditions:
            query = query.where(and_(*conditions))
        with self._connection() as conn:
            rows = list(conn.execute(query).mappings())
        more = len(rows) > limit
        rows = rows[:limit]
        return [_row(r, full=False) for r in rows], (rows[-1]["id"] if more else None)

    def answered(self, request_id: str) -> tuple[str | None, str | None, str | None] | None:
        """Who made a request, its route and model version; None if the ledger lacks it."""
        with self._connection() as conn:
            row = conn.execute(
                select(requests.c.key_id, requests.c.route, requests.c.model_version)
                .where(requests.c.request_id == request_id, requests.c.operation.is_not(None))
                .order_by(requests.c.id.desc()).limit(1)
            ).first()
        return (row[0], row[1], row[2]) if row is not None else None

    def add_feedback(self, item: Feedback) -> None:
        with self._connection() as conn:
            conn.execute(insert(feedback).values(
                request_id=item.request_id, key_id=item.key_id, route=item.route,
                model_version=item.model_version, outcome=item.outcome, score=item.score,
                correction=item.correction, comment=item.comment, created_at=datetime.now(UTC),
            ))
            conn.commit()

    def feedback_summary(self, since: datetime) -> list[dict[str, Any]]:
        """Feedback per route and model version since ``since``, with the correction rate
        ((edited + rejected) / all)."""
        with self._connection() as conn:
            rows = conn.execute(
                select(feedback.c.route, feedback.c.model_version, feedback.c.outcome)
                .where(feedback.c.created_at >= since)
            ).all()
        groups: dict[tuple[str | None, str | None], dict[str, int]] = {}
        for route, version, outcome in rows:
            counts = groups.setdefault((route, version), {"accepted": 0, "edited": 0,
                                                          "rejected": 0})
            counts[outcome] = counts.get(outcome, 0) + 1
        out = []
        for (route, version), counts in sorted(groups.items(), key=lambda g: str(g[0])):
            total = sum(counts.values())
            out.append({"route": route, "model_version": version, **counts, "total": total,
                        "correction_rate": (counts["edited"] + counts["rejected"]) / total})
        return out

    def purge_bodies(self, route: str, before: datetime) -> int:
        """Delete the captured bodies of ``route``'s requests older than ``before``."""
        with self._connection() as conn:
            result = conn.execute(
                update(requests)
                .where(requests.c.route == route, requests.c.created_at < before,
                       (requests.c.request_body.is_not(None))
                       | (requests.c.response_body.is_not(None)))
                .values(request_body=None, response_body=None)
            )
            conn.commit()
            return int(result.rowcount or 0)

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with unavailable_as_error(), self._engine.connect() as conn:
            yield conn
