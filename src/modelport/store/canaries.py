"""Canary states as stored rows: what a server decided (a rollback) or an operator did
(promote, abort, resume), per route and canary target.

Each change is audited (``canary.rolled_back``, ``canary.promote``, ...) and bumps
``store_revision`` in the same transaction, so every server polling the revision
(``policy.sync``) follows, and a restarted server does not send traffic to a canary that was
rolled back. A route without a row runs its canary as configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select

from modelport.store.keys import KeyStore
from modelport.store.tables import canaries


@dataclass(frozen=True, slots=True)
class CanaryRow:
    route: str
    target: str  # the canary target's label
    state: str  # rolled_back, promoted, aborted (running: no row)
    reason: str
    actor: str
    at: datetime


class CanaryStore(KeyStore):
    """The canaries table; it shares the keys' engine, revision counter and audit log."""

    def list_canaries(self) -> list[CanaryRow]:
        with self._connection() as conn:
            rows = conn.execute(select(canaries).order_by(canaries.c.route))
            return [CanaryRow(r.route, r.target, r.state, r.reason, r.actor, r.at)
                    for r in rows]

    def set_state(self, *, route: str, target: str, state: str, reason: str, actor: str,
                  client: str | None) -> CanaryRow:
        """Record a state (``running`` deletes the row); audited as ``canary.<state>``."""
        now = self._clock()
        with self._transaction() as conn:
            conn.execute(delete(canaries).where(canaries.c.route == route))
            if state != "running":
                conn.execute(insert(canaries).values(route=route, target=target, state=state,
                                                     reason=reason, actor=actor, at=now))
            self._bump(conn)
            self._write_audit(conn, now, actor, f"canary.{state}", route[:64],
                              {"target": target, "reason": reason}, client)
        return CanaryRow(route, target, state, reason, actor, now)
