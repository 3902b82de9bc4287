"""The key ring, browser tokens and the access decision, without a server."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from modelport.config.settings import KeySettings, LimitSettings, RouteSettings, Secret
from modelport.core.pricing import Price
from modelport.errors import AuthError, BudgetExceeded, Forbidden, RateLimited
from modelport.policy.access import AccessPolicy
from modelport.policy.budgets import BudgetBook
from modelport.policy.keys import KeyRing, from_config
from modelport.policy.limits import Limiter, Limits
from modelport.policy.secrets import display_prefix, hash_key, new_key
from modelport.policy.tokens import TokenSigner, narrower
from modelport.store.keys import KeyRow, SecretRow

NOW = 1_800_000_000.0
ROUTE = RouteSettings(name="r", targets=(), limits=LimitSettings(rpm=3))
OTHER = RouteSettings(name="o", targets=())


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def _row(key: str, **changes: object) -> KeyRow:
    values: dict[str, object] = dict(
        id="key_1", name="n", prefix=display_prefix(key), environment="prod", routes=None,
        rpm=None, tpm=None, max_concurrency=None, budget_usd=None, budget_period=None,
        expires_at=None, created_at=datetime.fromtimestamp(NOW, UTC), revoked_at=None,
        secrets=(SecretRow(hash_key(key), None),),
    )
    values.update(changes)
    return KeyRow(**values)  # type: ignore[arg-type]


def test_new_keys_are_long_random_and_recognisable() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(k.startswith("mpk_") and len(k) == 44 for k in keys)


def test_ring_authenticates_config_and_stored_keys_by_hash() -> None:
    ring, stored = KeyRing(Clock()), new_key()
    ring.load({"web": KeySettings(name="web", key=Secret("c" * 20))}, [_row(stored)])
    assert ring.authenticate("c" * 20).key_id == "cfg_web"
    assert ring.authenticate(stored).key_id == "key_1"
    with pytest.raises(AuthError):
        ring.authenticate(stored + "x")


def test_revocation_is_immediate_and_expiry_is_honoured() -> None:
    clock, stored = Clock(), new_key()
    ring = KeyRing(clock)
    expires = datetime.fromtimestamp(NOW + 10, UTC)
    ring.load({}, [_row(stored, expires_at=expires)])
    assert ring.authenticate(stored).key_id == "key_1"
    clock.now += 11
    with pytest.raises(AuthError):
        ring.authenticate(stored)
    clock.now = NOW
    ring.revoke("key_1")
    with pytest.raises(AuthError):
        ring.authenticate(stored)


def test_rotated_secret_lives_until_its_grace_ends() -> None:
    clock, old, new = Clock(), new_key(), new_key()
    ring = KeyRing(clock)
    grace = datetime.fromtimestamp(NOW + 5, UTC)
    ring.put(_row(old, secrets=(SecretRow(hash_key(old), grace), SecretRow(hash_key(new), None))))
    assert ring.authenticate(old).key_id == ring.authenticate(new).key_id
    clock.now += 6
    with pytest.raises(AuthError):
        ring.authenticate(old)
    assert ring.authenticate(new).key_id == "key_1"


def test_tokens_verify_and_refuse_tampering_and_expiry() -> None:
    signer = TokenSigner(b"k" * 32)
    token, expires = signer.mint("key_1", "r", 60, Limits(rpm=5), NOW)
    claims = signer.verify(token, NOW)
    assert (claims.parent_id, claims.route, claims.limits.rpm) == ("key_1", "r", 5)
    body, _, signature = token.partition(".")
    for forged in (body[:-2] + "AA." + signature, body + "." + signature[::-1], token + "x"):
        with pytest.raises(AuthError):
            signer.verify(forged, NOW)
    with pytest.raises(AuthError):
        signer.verify(token, expires)
    with pytest.raises(AuthError):
        TokenSigner(b"other" * 8).verify(token, NOW)


def test_token_limits_never_exceed_the_parents() -> None:
    assert narrower(Limits(rpm=50), Limits(rpm=5)).rpm == 5
    assert narrower(Limits(), Limits()) == Limits(rpm=20, tpm=20_000, max_concurrency=2)
    assert narrower(Limits(tpm=10), Limits(tpm=None)).tpm == 10


def _policy(ring: KeyRing, clock: Clock) -> AccessPolicy:
    return AccessPolicy(ring, TokenSigner(b"t" * 32), Limiter(clock), BudgetBook(clock),
                        {"r": ROUTE, "o": OTHER}, auth_required=True,
                        admin_key=Secret("a" * 20), clock=clock)


def test_access_refuses_the_admin_key_and_scopes_routes() -> None:
    clock, key = Clock(), new_key()
    ring = KeyRing(clock)
    ring.load({}, [_row(key, routes=("r",))])
    policy = _policy(ring, clock)
    with pytest.raises(AuthError):
        policy.authenticate(b"Bearer " + b"a" * 20)
    assert policy.is_admin(b"Bearer " + b"a" * 20)
    assert not policy.is_admin(f"Bearer {key}".encode())
    principal = policy.authenticate(f"Bearer {key}".encode())
    policy.authorize(principal, ROUTE)
    with pytest.raises(Forbidden):
        policy.authorize(principal, OTHER)


def test_route_limit_applies_and_budget_is_reserved_then_settled() -> None:
    clock, key = Clock(), new_key()
    ring = KeyRing(clock)
    ring.load({}, [_row(key, budget_usd=1.0, budget_period="month")])
    policy = _policy(ring, clock)
    principal = policy.authenticate(f"Bearer {key}".encode())
    price = Price(1_000_000.0, 0.0)  # a dollar a token
    tickets = [policy.admit(principal, ROUTE, price, lambda: (0, 0)) for _ in range(3)]
    with pytest.raises(RateLimited):
        policy.admit(principal, ROUTE, price, lambda: (0, 0))
    for t in tickets:
        assert t is not None
        t.finish(None, 0.4)
    with pytest.raises(BudgetExceeded):
        policy.admit(principal, OTHER, price, lambda: (0, 0))


def test_token_dies_with_its_parent() -> None:
    clock, key = Clock(), new_key()
    ring = KeyRing(clock)
    ring.load({}, [_row(key)])
    policy = _policy(ring, clock)
    token, _ = policy.signer.mint("key_1", "r", 60, Limits(rpm=2), clock.now)
    principal = policy.authenticate(f"Bearer {token}".encode())
    assert principal is not None and principal.routes == frozenset({"r"})
    with pytest.raises(Forbidden):
        policy.authorize(principal, OTHER)
    ring.revoke("key_1")
    with pytest.raises(AuthError):
        policy.authenticate(f"Bearer {token}".encode())


def test_a_reload_never_undoes_a_revocation() -> None:
    clock, key = Clock(), new_key()
    ring = KeyRing(clock)
    ring.load({}, [_row(key)])
    ring.revoke("key_1")
    ring.load({}, [_row(key)])  # rows read before the revocation reached the store
    with pytest.raises(AuthError):
        ring.authenticate(key)


def test_a_stream_cut_short_is_charged_its_estimate() -> None:
    clock, key = Clock(), new_key()
    ring = KeyRing(clock)
    ring.load({}, [_row(key, budget_usd=10.0, budget_period="day")])
    policy = _policy(ring, clock)
    principal = policy.authenticate(f"Bearer {key}".encode())
    assert principal is not None and principal.budget is not None
    price = Price(1_000_000.0, 1_000_000.0)
    ticket = policy.admit(principal, OTHER, price, lambda: (1, 2))
    assert ticket is not None
    ticket.finish(None, None, served=True)
    assert policy.budgets.spent("key_1", principal.budget) == pytest.approx(3.0)
    unserved = policy.admit(principal, OTHER, price, lambda: (1, 2))
    assert unserved is not None
    unserved.finish(None, None)
    assert policy.budgets.spent("key_1", principal.budget) == pytest.approx(3.0)


async def test_sync_drops_a_reload_that_raced_a_local_change() -> None:
    from modelport.policy.sync import KeySync

    key = new_key()

    class RacingStore:
        """Reads rows that predate a key created locally while the read was under way."""

        def __init__(self, ring: KeyRing) -> None:
            self.ring = ring
            self.rev = 1

        def revision(self) -> int:
            return self.rev

        def list_keys(self) -> list[KeyRow]:
            self.ring.put(_row(key))
            return []

    ring = KeyRing(Clock())
    sync = KeySync(ring, RacingStore(ring), {})  # type: ignore[arg-type]
    assert await sync.refresh()
    assert ring.authenticate(key).key_id == "key_1"


def test_a_config_version_swaps_the_configs_keys_and_leaves_the_stores() -> None:
    ring = KeyRing()
    old = {"a": KeySettings(name="a", key=Secret("cfg-secret-a-0000000000")),
           "b": KeySettings(name="b", key=Secret("cfg-secret-b-0000000000"))}
    ring.load(old, [])
    new = {"b": KeySettings(name="b", key=Secret("cfg-secret-b-rotated-000")),
           "c": KeySettings(name="c", key=Secret("cfg-secret-c-0000000000"))}
    ring.replace_config(old, new)
    for gone in ("cfg-secret-a-0000000000", "cfg-secret-b-0000000000"):
        with pytest.raises(AuthError):
            ring.authenticate(gone)
    assert ring.authenticate("cfg-secret-b-rotated-000").name == "b"
    assert ring.authenticate("cfg-secret-c-0000000000").name == "c"
    assert ring.principal(from_config(old["a"]).key_id) is None
