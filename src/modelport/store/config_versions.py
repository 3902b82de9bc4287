"""Configuration versions as stored rows: every config a server applied, never changed.

A row is one application (at start when the file differs from the last one kept, over the
admin API, by ``SIGHUP``, or a rollback), with the config as written and who applied it,
and an audit entry (``config.<action>``) in the same transaction. Secrets in a config are
references (``env:NAME``, ``file:PATH``), so the text kept holds no secret value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from modelport.store.keys import KeyStore
from modelport.store.tables import config_versions


@dataclass(frozen=True, slots=True)
class ConfigVersionRow:
    id: int  # the number history shows, in the order they were applied
    config_version: str  # the content hash responses and the ledger name
    text: str
    action: str  # start, apply, rollback, signal
    source: str
    reason: str
    actor: str
    client: str | None
    restores: int | None  # a rollback: the id it brought back
    created_at: datetime


def _row(r: object) -> ConfigVersionRow:
    return ConfigVersionRow(r.id, r.config_version, r.text, r.action,  # type: ignore[attr-defined]
                            r.source, r.reason, r.actor, r.client,  # type: ignore[attr-defined]
                            r.restores, r.created_at)  # type: ignore[attr-defined]


class ConfigVersionStore(KeyStore):
    """The config_versions table; it shares the keys' engine and audit log."""

    def record(self, *, config_version: str, text: str, action: str, source: str,
               reason: str, actor: str, client: str | None,
               restores: int | None = None) -> ConfigVersionRow:
        now = self._clock()
        values = {"config_version": config_version, "text": text, "action": action,
                  "source": source[:400], "reason": reason, "actor": actor[:200],
                  "client": client, "restores": restores, "created_at": now}
        with self._transaction() as conn:
            new_id = conn.execute(insert(config_versions).values(**values)).inserted_primary_key
            assert new_id is not None
            self._write_audit(conn, now, actor, f"config.{action}", config_version, {
                "id": new_id[0], "source": source[:400], "reason": reason,
                "restores": restores}, client)
        return ConfigVersionRow(id=new_id[0], **values)  # type: ignore[arg-type]

    def history(self, limit: int = 50) -> list[ConfigVersionRow]:
        """The latest versions, newest first."""
        with self._connection() as conn:
            rows = conn.execute(select(config_versions)
                                .order_by(config_versions.c.id.desc()).limit(limit))
            return [_row(r) for r in rows]

    def latest(self) -> ConfigVersionRow | None:
        found = self.history(1)
        return found[0] if found else None

    def find(self, ref: str) -> ConfigVersionRow | None:
        """A version by its number (``12``) or by its hash (the latest application of it;
        a prefix of at least 6 characters will do). A hash is hexadecimal, so a prefix may be
        all digits: a number that names no version is then tried as one."""
        with self._connection() as conn:
            row = None
            if ref.isdecimal() and len(ref) < 10:  # fits the id column
                row = conn.execute(select(config_versions)
                                   .where(config_versions.c.id == int(ref))).first()
            if row is None and len(ref) >= 6:
                row = conn.execute(select(config_versions)
                                   .where(config_versions.c.config_version.startswith(
                                       ref.lower(), autoescape=True))
                                   .order_by(config_versions.c.id.desc()).limit(1)).first()
            return None if row is None else _row(row)
