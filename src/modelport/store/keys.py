"""API keys, their secret hashes and the audit log, as stored rows.

Only hashes reach this module: a key's secret is shown once by whoever made it and never
stored, logged or audited here. Every change to a key or its secrets bumps
``store_revision`` in the same transaction, so a server can poll one row to notice what the
CLI (or another replica) changed.

Each method runs one short transaction and is synchronous: call it from a worker thread on
a server. Writing methods write first and read after, so that SQLite takes its write lock
at the start of the transaction (waiting out a busy writer) rather than failing to upgrade
a read snapshot, and PostgreSQL locks the key's row against a concurrent rotation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, insert, or_, select, update

from modelport.store.engine import EngineStore, unavailable_as_error
from modelport.store.tables import api_key_secrets, api_keys, audit_log, store_revision

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SecretRow:
    """One stored secret of a key: its SHA-256, and when it stops working (None: never)."""

    secret_hash: str
    expires_at: datetime | None

    def valid_at(self, when: datetime) -> bool:
        return self.expires_at is None or when < self.expires_at


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A key as stored; ``routes`` None means every route of its environment."""

    id: str
    name: str
    prefix: str
    environment: str
    routes: tuple[str, ...] | None
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    budget_usd: float | None
    budget_period: str | None
    expires_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None
    secrets: tuple[SecretRow, ...]
    priority: str = "interactive"  # the highest X-Priority the key may ask for
    role: str = "caller"  # reviewer: decides reviews, calls no route
    # tool permissions: {"allow": [names] or null, "deny": [names]}; None: none
    tools: dict[str, list[str] | None] | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any] | None
    client: str | None


class KeyStore(EngineStore):
    """Keys, secrets, the audit log and the store revision over one SQLAlchemy engine.

    Build it with ``KeyStore.open(url)`` (which migrates and owns the engine), or with an
    engine whose schema the caller has already migrated (``modelport.store.migrate``).
    """

    def __init__(self, engine: Engine, *, clock: Clock = utc_now) -> None:
        super().__init__(engine)
        self._clock = clock

    def create(
        self,
        *,
        key_id: str,
        name: str,
        prefix: str,
        secret_hash: str,
        environment: str,
        routes: Sequence[str] | None,
        rpm: int | None,
        tpm: int | None,
        max_concurrency: int | None,
        budget_usd: float | None,
        budget_period: str | None,
        expires_at: datetime | None,
        actor: str,
        client: str | None,
        priority: str = "interactive",
        role: str = "caller",
        tools: dict[str, list[str] | None] | None = None,
    ) -> KeyRow:
        """Store a new key and its first secret, audited as ``key.create``."""
        if budget_period not in (None, "day", "month"):
            raise ValueError(f"budget_period must be 'day' or 'month', not {budget_period!r}")
        now = self._clock()
        values = {
            "name": name, "prefix": prefix, "environment": environment,
            "routes": None if routes is None else list(routes), "rpm": rpm, "tpm": tpm,
            "max_concurrency": max_concurrency, "budget_usd": budget_usd,
            "budget_period": budget_period, "expires_at": expires_at, "priority": priority,
            "role": role, "tools": tools,
        }
        with self._transaction() as conn:
            conn.execute(insert(api_keys).values(
                id=key_id, created_at=now,
                **{**values, "routes": _dump(values["routes"]), "tools": _dump(tools)},
            ))
            conn.execute(insert(api_key_secrets).values(
                key_id=key_id, secret_hash=secret_hash, created_at=now, expires_at=None))
            self._bump(conn)
            detail = {**values, "expires_at": _iso(expires_at)}
            self._write_audit(conn, now, actor, "key.create", key_id, detail, client)
            row = self._load(conn, key_id)
        assert row is not None  # written just above, in this transaction
        return row

    def get(self, key_id: str) -> KeyRow | None:
        with self._connection() as conn:
            return self._load(conn, key_id)

    def list_keys(self) -> list[KeyRow]:
        """Every key, revoked and expired ones included, oldest first."""
        with self._connection() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id))
            secrets = conn.execute(
                select(api_key_secrets.c.key_id, api_key_secrets.c.secret_hash,
                       api_key_secrets.c.expires_at).order_by(api_key_secrets.c.id))
            by_key: dict[str, list[SecretRow]] = {}
            for key_id, secret_hash, expires_at in secrets:
                by_key.setdefault(key_id, []).append(SecretRow(secret_hash, expires_at))
            return [_key_row(row, by_key.get(row.id, ())) for row in rows]

    def revoke(self, key_id: str, *, actor: str, client: str | None) -> KeyRow | None:
        """Revoke a key (audited as ``key.revoke``); None when there is no such key.

        Revoking a revoked key changes nothing (its first ``revoked_at`` stays) and is
        audited with ``already_revoked``."""
        now = self._clock()
        with self._transaction() as conn:
            changed = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            row = self._load(conn, key_id)
            if row is None:
                return None
            if changed:
                self._bump(conn)
            detail = None if changed else {"already_revoked": True}
            self._write_audit(conn, now, actor, "key.revoke", key_id, detail, client)
            return row

    def rotate(
        self,
        key_id: str,
        *,
        new_hash: str,
        grace_until: datetime | None,
        actor: str,
        client: str | None,
        new_prefix: str | None = None,
    ) -> KeyRow | None:
        """Give a key a new secret (audited as ``key.rotate``); None when there is no such
        key or it is revoked.

        Every older secret stops working at ``grace_until`` (None: at once), unless it was
        already due to stop earlier. ``new_prefix`` replaces the displayed prefix so that
        lists show the key now in use.
        """
        now = self._clock()
        grace = now if grace_until is None else grace_until
        with self._transaction() as conn:
            found = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(prefix=api_keys.c.prefix if new_prefix is None else new_prefix)
            ).rowcount
            if not found:
                return None
            conn.execute(
                update(api_key_secrets)
                .where(api_key_secrets.c.key_id == key_id,
                       or_(api_key_secrets.c.expires_at.is_(None),
                           api_key_secrets.c.expires_at > grace))
                .values(expires_at=grace)
            )
            conn.execute(insert(api_key_secrets).values(
                key_id=key_id, secret_hash=new_hash, created_at=now, expires_at=None))
            self._bump(conn)
            detail = {"grace_until": _iso(grace), "grace_seconds": (grace - now).total_seconds()}
            self._write_audit(conn, now, actor, "key.rotate", key_id, detail, client)
            return self._load(conn, key_id)

    def revision(self) -> int:
        """A number that grows with every change to keys, secrets or switches."""
        with self._connection() as conn:
            value = conn.scalar(select(store_revision.c.revision).where(store_revision.c.id == 1))
        return int(value or 0)

    def audit(
        self,
        actor: str,
        action: str,
        target: str | None,
        detail: Mapping[str, Any] | None,
        client: str | None,
    ) -> None:
        """Record an admin action that is not a key change (those audit themselves)."""
        with self._transaction() as conn:
            self._write_audit(conn, self._clock(), actor, action, target, detail, client)

    def audit_entries(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        """Newest first; pass the last id seen as ``before_id`` for the next page."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(audit_log.c.id < before_id)
        with self._connection() as conn:
            return [
                AuditEntry(r.id, r.at, r.actor, r.action, r.target,
                           None if r.detail is None else json.loads(r.detail), r.client)
                for r in conn.execute(query)
            ]

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        with unavailable_as_error(), self._engine.begin() as conn:
            yield conn

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        with unavailable_as_error(), self._engine.connect() as conn:
            yield conn

    @staticmethod
    def _bump(conn: Connection) -> None:
        conn.execute(
            update(store_revision)
            .where(store_revision.c.id == 1)
            .values(revision=store_revision.c.revision + 1)
        )

    @staticmethod
    def _write_audit(
        conn: Connection,
        at: datetime,
        actor: str,
        action: str,
        target: str | None,
        detail: Mapping[str, Any] | None,
        client: str | None,
    ) -> None:
        conn.execute(insert(audit_log).values(
            at=at, actor=actor, action=action, target=target,
            detail=None if detail is None else _dump(dict(detail)), client=client,
        ))

    @staticmethod
    def _load(conn: Connection, key_id: str) -> KeyRow | None:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one_or_none()
        if row is None:
            return None
        secrets = conn.execute(
            select(api_key_secrets.c.secret_hash, api_key_secrets.c.expires_at)
            .where(api_key_secrets.c.key_id == key_id)
            .order_by(api_key_secrets.c.id)
        )
        return _key_row(row, [SecretRow(h, e) for h, e in secrets])


def _key_row(row: Row[Any], secrets: Sequence[SecretRow]) -> KeyRow:
    routes = None if row.routes is None else tuple(json.loads(row.routes))
    return KeyRow(
        id=row.id, name=row.name, prefix=row.prefix, environment=row.environment,
        routes=routes, rpm=row.rpm, tpm=row.tpm, max_concurrency=row.max_concurrency,
        budget_usd=row.budget_usd, budget_period=row.budget_period,
        expires_at=row.expires_at, created_at=row.created_at, revoked_at=row.revoked_at,
        priority=row.priority, role=row.role, secrets=tuple(secrets),
        tools=None if row.tools is None else json.loads(row.tools),
    )


def _dump(value: object) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()
