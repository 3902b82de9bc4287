"""The review queue as stored rows: answers a person must see, and what they decided.

An item is created pending (with the request as sent, the answer, why it is held, the route
and the key) and decided once: approved (with the answer as it was, or edited) or rejected
(with a reason). A decision is audited (``review.approve``, ``review.reject``) in the same
transaction, and a second decision of the same item is refused (``AlreadyDecided``), so two
reviewers on two servers cannot both decide it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update

from modelport.errors import Conflict
from modelport.store.keys import KeyStore
from modelport.store.tables import reviews


@dataclass(frozen=True, slots=True)
class ReviewRow:
    id: str
    created_at: datetime
    route: str
    key_id: str | None
    request_id: str
    model_version: str | None
    reason: str  # always, sample, invalid_output: ...
    status: str  # pending, approved, rejected
    request: str  # the request as it was sent to the model (JSON)
    answer: str  # the model's answer (JSON)
    edited: bool = False  # approved with a reviewer's edit (``answer`` holds the edit)
    original: str | None = None  # the model's answer, when it was edited
    decided_at: datetime | None = None
    decided_by: str | None = None
    decision_reason: str = ""


class AlreadyDecided(Conflict):
    code = "review_decided"


def _row(r: object) -> ReviewRow:
    m = r._mapping  # type: ignore[attr-defined]
    return ReviewRow(m["id"], m["created_at"], m["route"], m["key_id"], m["request_id"],
                     m["model_version"], m["reason"], m["status"], m["request"], m["answer"],
                     bool(m["edited"]), m["original"], m["decided_at"], m["decided_by"],
                     m["decision_reason"])


class ReviewStore(KeyStore):
    """The reviews table; it shares the keys' engine and audit log."""

    def hold(self, *, route: str, key_id: str | None, request_id: str,
               model_version: str | None, reason: str, request: str, answer: str) -> ReviewRow:
        row = ReviewRow(id="rev_" + secrets.token_hex(12), created_at=self._clock(),
                        route=route, key_id=key_id, request_id=request_id,
                        model_version=model_version, reason=reason[:1000], status="pending",
                        request=request, answer=answer)
        with self._transaction() as conn:
            conn.execute(insert(reviews).values(
                id=row.id, created_at=row.created_at, route=route, key_id=key_id,
                request_id=request_id, model_version=model_version, reason=row.reason,
                status="pending", request=request, answer=answer, edited=False,
                decision_reason=""))
        return row

    def review(self, review_id: str) -> ReviewRow | None:
        with self._connection() as conn:
            found = conn.execute(select(reviews).where(reviews.c.id == review_id)).first()
            return None if found is None else _row(found)

    def page(self, *, status: str | None = None, route: str | None = None,
             limit: int = 50) -> list[ReviewRow]:
        """Oldest first (the queue's order), filtered by status and route."""
        query = select(reviews).order_by(reviews.c.created_at, reviews.c.id).limit(limit)
        if status is not None:
            query = query.where(reviews.c.status == status)
        if route is not None:
            query = query.where(reviews.c.route == route)
        with self._connection() as conn:
            return [_row(r) for r in conn.execute(query)]

    def pending(self) -> list[tuple[str, int, datetime]]:
        """(route, pending items, the oldest one's time) per route with any pending."""
        query = (select(reviews.c.route, func.count(), func.min(reviews.c.created_at))
                 .where(reviews.c.status == "pending").group_by(reviews.c.route))
        with self._connection() as conn:
            return [(r[0], int(r[1]), r[2]) for r in conn.execute(query)]

    def decide(self, review_id: str, *, approve: bool, answer: str | None, reason: str,
               actor: str, client: str | None) -> ReviewRow:
        """Approve (``answer``: an edited answer, or None to keep the model's) or reject.
        ``AlreadyDecided`` when it was decided before."""
        now = self._clock()
        with self._transaction() as conn:
            current = conn.execute(select(reviews).where(reviews.c.id == review_id)).first()
            if current is None:
                raise LookupError(review_id)
            item = _row(current)
            values: dict[str, object] = {
                "status": "approved" if approve else "rejected", "decided_at": now,
                "decided_by": actor[:200], "decision_reason": reason}
            if approve and answer is not None:
                values.update(answer=answer, edited=True, original=item.answer)
            done = conn.execute(update(reviews).where(
                reviews.c.id == review_id, reviews.c.status == "pending").values(**values))
            if done.rowcount != 1:
                raise AlreadyDecided(f"Review '{review_id}' was already {item.status}.")
            self._write_audit(conn, now, actor, "review.approve" if approve else
                              "review.reject", review_id[:64],
                              {"route": item.route, "edited": bool(approve and answer),
                               "reason": reason}, client)
            found = conn.execute(select(reviews).where(reviews.c.id == review_id)).first()
        assert found is not None
        return _row(found)
