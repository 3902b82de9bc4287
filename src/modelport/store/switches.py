"""Kill switches as stored rows: turned off (a row), turned back on (the row deleted).

Each change is audited (``switch.off``, ``switch.on``) and bumps ``store_revision`` in the
same transaction, so every server polling the revision (``policy.sync``) reloads the
switches within its poll interval, and a restarted server starts with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select

from modelport.store.keys import KeyStore
from modelport.store.tables import switches


@dataclass(frozen=True, slots=True)
class SwitchRow:
    scope: str  # all, route, model, provider, key
    name: str  # "" for all
    behaviour: str  # refuse, answer, fallback
    message: str
    fallback_route: str | None
    reason: str
    actor: str
    created_at: datetime


class SwitchStore(KeyStore):
    """The switches table; it shares the keys' engine, revision counter and audit log."""

    def list_switches(self) -> list[SwitchRow]:
        with self._connection() as conn:
            rows = conn.execute(select(switches).order_by(switches.c.scope, switches.c.name))
            return [SwitchRow(r.scope, r.name, r.behaviour, r.message, r.fallback_route,
                              r.reason, r.actor, r.created_at) for r in rows]

    def turn_off(self, *, scope: str, name: str, behaviour: str, message: str,
                 fallback_route: str | None, reason: str, actor: str,
                 client: str | None) -> SwitchRow:
        """Turn off (or change how an off switch answers); audited as ``switch.off``."""
        now = self._clock()
        row = SwitchRow(scope, name, behaviour, message, fallback_route, reason, actor, now)
        with self._transaction() as conn:
            conn.execute(delete(switches).where(switches.c.scope == scope,
                                                switches.c.name == name))
            conn.execute(insert(switches).values(
                scope=scope, name=name, behaviour=behaviour, message=message,
                fallback_route=fallback_route, reason=reason, actor=actor, created_at=now))
            self._bump(conn)
            self._write_audit(conn, now, actor, "switch.off", _target(scope, name), {
                "behaviour": behaviour, "message": message, "fallback_route": fallback_route,
                "reason": reason}, client)
        return row

    def turn_on(self, *, scope: str, name: str, reason: str, actor: str,
                client: str | None) -> bool:
        """Turn back on; False when it was not off. Audited as ``switch.on``."""
        with self._transaction() as conn:
            gone = conn.execute(delete(switches).where(switches.c.scope == scope,
                                                       switches.c.name == name)).rowcount
            if gone:
                self._bump(conn)
                self._write_audit(conn, self._clock(), actor, "switch.on",
                                  _target(scope, name), {"reason": reason}, client)
        return bool(gone)


def _target(scope: str, name: str) -> str:
    return (scope if not name else f"{scope}:{name}")[:64]
