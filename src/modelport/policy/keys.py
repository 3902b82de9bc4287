"""Principals and the key ring: every key Modelport knows, held in memory.

Keys come from the config file (``keys:``) and from the store (created over the admin API or
the CLI). Requests are authenticated against the ring only, never against the database: the
presented key is hashed (SHA-256) and looked up by its hash. The lookup reveals nothing about
the secret through timing (finding a key whose hash shares a prefix means finding a
pre-image), and the admin key, which is not hashed, is compared with ``hmac.compare_digest``.
Revocation replaces the ring's entry at once: the next request with that key gets 401.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from modelport.config.settings import KeySettings, LimitSettings
from modelport.config.tools import ToolPolicy, tool_policy
from modelport.errors import AuthError
from modelport.policy.budgets import Budget
from modelport.policy.limits import Limits
from modelport.policy.secrets import hash_key
from modelport.store.keys import KeyRow

CONFIG_KEY_PREFIX = "cfg_"
INTERACTIVE, BATCH = 1, 0
PRIORITIES = {"interactive": INTERACTIVE, "batch": BATCH}
_UNKNOWN = "The API key is missing, unknown, expired or revoked."


def limits_of(settings: LimitSettings) -> Limits:
    return Limits(rpm=settings.rpm, tpm=settings.tpm, max_concurrency=settings.max_concurrency)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a key (or a browser token minted from one) and what it may do."""

    key_id: str
    name: str
    environment: str
    routes: frozenset[str] | None
    limits: Limits
    budget: Budget | None = None
    expires_at: float | None = None
    revoked: bool = False
    scopes: tuple[tuple[str, Limits], ...] = ()
    priority: int = INTERACTIVE  # the highest admission priority it may ask for
    role: str = "caller"  # reviewer: may decide reviews (/admin/reviews) and call nothing
    tools: ToolPolicy | None = None  # which tools its requests may declare (config keys)

    def may_call(self, route: str, environment: str) -> bool:
        if environment != self.environment or self.role != "caller":
            return False
        return self.routes is None or route in self.routes

    def alive(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


def _principal(
    key_id: str,
    name: str,
    environment: str,
    routes: Iterable[str] | None,
    limits: Limits,
    budget: Budget | None,
    expires_at: float | None,
    revoked: bool = False,
    priority: str = "interactive",
    role: str = "caller",
    tools: ToolPolicy | None = None,
) -> Principal:
    return Principal(
        key_id=key_id,
        name=name,
        environment=environment,
        routes=frozenset(routes) if routes is not None else None,
        limits=limits,
        budget=budget,
        expires_at=expires_at,
        revoked=revoked,
        scopes=() if limits.is_unlimited() else ((f"key:{key_id}", limits),),
        priority=PRIORITIES[priority],
        role=role,
        tools=tools,
    )


def from_config(settings: KeySettings) -> Principal:
    budget = None
    if settings.budget_usd is not None:
        budget = Budget(limit_usd=settings.budget_usd, period=settings.budget_period)  # type: ignore[arg-type]
    return _principal(CONFIG_KEY_PREFIX + settings.name, settings.name, settings.environment,
                      settings.routes, limits_of(settings.limits), budget, settings.expires_at,
                      priority=settings.priority, role=settings.role, tools=settings.tools)


def from_row(row: KeyRow) -> Principal:
    budget = None
    if row.budget_usd is not None:
        budget = Budget(limit_usd=row.budget_usd, period=row.budget_period or "month")  # type: ignore[arg-type]
    limits = Limits(rpm=row.rpm, tpm=row.tpm, max_concurrency=row.max_concurrency)
    return _principal(row.id, row.name, row.environment, row.routes, limits, budget,
                      _epoch(row.expires_at), revoked=row.revoked_at is not None,
                      priority=row.priority, role=row.role,
                      tools=None if row.tools is None else tool_policy(
                          row.tools.get("allow"), row.tools.get("deny") or [], "refuse"))


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


@dataclass(frozen=True, slots=True)
class _Entry:
    key_id: str
    secret_expires_at: float | None


class KeyRing:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._by_hash: dict[str, _Entry] = {}
        self._by_id: dict[str, Principal] = {}
        self._revoked: set[str] = set()  # revocation is final: no reload may undo it
        self.mutations = 0  # bumped by put and revoke, so a reload read before them is dropped

    def __len__(self) -> int:
        return len(self._by_id)

    def load(self, config_keys: Mapping[str, KeySettings], rows: Iterable[KeyRow]) -> None:
        """Replace the whole ring: the config's keys and the store's, in one step."""
        by_hash: dict[str, _Entry] = {}
        by_id: dict[str, Principal] = {}
        for settings in config_keys.values():
            principal = from_config(settings)
            by_id[principal.key_id] = principal
            by_hash[hash_key(settings.key.reveal())] = _Entry(principal.key_id, None)
        for row in rows:
            principal = from_row(row)
            if row.id in self._revoked:
                principal = replace(principal, revoked=True)
            by_id[row.id] = principal
            for secret in row.secrets:
                by_hash[secret.secret_hash] = _Entry(row.id, _epoch(secret.expires_at))
        self._by_hash, self._by_id = by_hash, by_id

    def replace_config(self, before: Mapping[str, KeySettings],
                       after: Mapping[str, KeySettings]) -> None:
        """Swap the config's keys for another config version's in one step; the store's
        keys stay as they are."""
        self.mutations += 1
        by_hash, by_id = dict(self._by_hash), dict(self._by_id)
        for settings in before.values():
            by_id.pop(from_config(settings).key_id, None)
            by_hash.pop(hash_key(settings.key.reveal()), None)
        for settings in after.values():
            principal = from_config(settings)
            by_id[principal.key_id] = principal
            by_hash[hash_key(settings.key.reveal())] = _Entry(principal.key_id, None)
        self._by_hash, self._by_id = by_hash, by_id

    def put(self, row: KeyRow) -> None:
        """Add or refresh one stored key (after create or rotate) without a reload."""
        self.mutations += 1
        self._by_id[row.id] = from_row(row)
        stale = [h for h, e in self._by_hash.items() if e.key_id == row.id]
        for h in stale:
            del self._by_hash[h]
        for secret in row.secrets:
            self._by_hash[secret.secret_hash] = _Entry(row.id, _epoch(secret.expires_at))

    def revoke(self, key_id: str) -> None:
        self.mutations += 1
        self._revoked.add(key_id)
        principal = self._by_id.get(key_id)
        if principal is not None:
            self._by_id[key_id] = replace(principal, revoked=True)

    def principal(self, key_id: str) -> Principal | None:
        return self._by_id.get(key_id)

    def principals(self) -> list[Principal]:
        return list(self._by_id.values())

    def authenticate(self, key: str) -> Principal:
        entry = self._by_hash.get(hash_key(key))
        if entry is None:
            raise AuthError(_UNKNOWN)
        now = self._clock()
        if entry.secret_expires_at is not None and now >= entry.secret_expires_at:
            raise AuthError(_UNKNOWN)
        principal = self._by_id.get(entry.key_id)
        if principal is None or not principal.alive(now):
            raise AuthError(_UNKNOWN)
        return principal
