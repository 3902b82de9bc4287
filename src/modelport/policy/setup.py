"""Assembling the access policy at start-up: the key ring, its sync, limits and budgets.

Budgets are seeded from the ledger (what each key already spent this period), so that a
restart does not hand out a fresh budget. These reads happen once, here, never per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from modelport.config.settings import Settings
from modelport.policy.access import AccessPolicy
from modelport.policy.budgets import BudgetBook, period_start
from modelport.policy.keys import KeyRing
from modelport.policy.limits import Limiter
from modelport.policy.switches import Switchboard
from modelport.policy.sync import KeySync
from modelport.policy.tokens import TokenSigner
from modelport.store.keys import KeyStore
from modelport.store.switches import SwitchStore
from modelport.store.usage import UsageStore

log = logging.getLogger("modelport.keys")


def token_secret(settings: Settings) -> bytes:
    """``token_secret`` if set; else derived from the admin key (so every replica agrees);
    else random, and browser tokens are then valid only on the replica that minted them."""
    if settings.token_secret is not None:
        return settings.token_secret.reveal().encode()
    if settings.admin_key is not None:
        return hmac.new(settings.admin_key.reveal().encode(), b"modelport browser tokens",
                        hashlib.sha256).digest()
    return secrets.token_bytes(32)


def build_access(
    settings: Settings, key_store: KeyStore, prepare: Callable[[], None] | None = None,
    switches: tuple[SwitchStore, Switchboard] | None = None,
) -> tuple[AccessPolicy, KeySync]:
    ring = KeyRing(time.time)
    policy = AccessPolicy(
        ring,
        TokenSigner(token_secret(settings)),
        Limiter(time.monotonic),
        BudgetBook(time.time),
        settings.routes,
        auth_required=settings.auth_required,
        admin_key=settings.admin_key,
        metrics_token=settings.metrics_token,
    )
    return policy, KeySync(ring, key_store, settings.keys, prepare=prepare,
                           on_tick=policy.limiter.prune, switches=switches)


def access_for(previous: AccessPolicy, before: Settings, after: Settings) -> AccessPolicy:
    """The access policy of another config version: the same key ring, limiter state and
    budgets (limits in progress carry over); a new token signer only when its secret
    changed, so browser tokens stay valid across a reload that leaves it."""
    signer = previous.signer
    if (after.token_secret, after.admin_key) != (before.token_secret, before.admin_key):
        signer = TokenSigner(token_secret(after))
    return AccessPolicy(previous.keyring, signer, previous.limiter, previous.budgets,
                        after.routes, auth_required=after.auth_required,
                        admin_key=after.admin_key, metrics_token=after.metrics_token)


async def seed_budgets(policy: AccessPolicy, usage: UsageStore) -> None:
    """Load what each key with a budget has spent in its current period. Raises when the
    store cannot be read: ``KeySync`` calls it after its first successful read and tries
    again on its next tick."""
    now = time.time()
    spent = {
        period: await asyncio.to_thread(usage.spent_by_key, _utc(period_start(period, now)))
        for period in ("day", "month")
    }
    for principal in policy.keyring.principals():
        budget = principal.budget
        if budget is not None:
            policy.budgets.load(
                principal.key_id,
                period_start(budget.period, now),
                spent[budget.period].get(principal.key_id, 0.0),
            )


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
