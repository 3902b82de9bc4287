"""KeyStore: keys, their secret hashes, the audit log and the store revision, on SQLite and
(where MODELPORT_TEST_POSTGRES_URL is set) PostgreSQL."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.schema import CreateSchema, DropSchema

from modelport.errors import ConfigError, ServiceUnavailable
from modelport.store.engine import make_engine
from modelport.store.keys import KeyStore

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def isolated_database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL to an empty database: a fresh SQLite file, or a fresh PostgreSQL schema (dropped
    afterwards) so that tests never see each other's rows or the other suites' tables."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    base = request.getfixturevalue("postgres_url")  # skips, saying why, when unset
    schema = f"mp_test_{secrets.token_hex(6)}"
    admin = make_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(CreateSchema(schema))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.begin() as conn:
            conn.execute(DropSchema(schema, cascade=True))
    finally:
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from isolated_database(request.param, tmp_path, request)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(store_url: str, clock: Clock) -> Iterator[KeyStore]:
    with KeyStore.open(store_url, clock=clock) as opened:
        yield opened


def create(store: KeyStore, key_id: str = "key_a", **changes: Any) -> Any:
    values: dict[str, Any] = {
        "key_id": key_id, "name": f"name of {key_id}", "prefix": "mpk_AbCdEfGh",
        "secret_hash": f"hash-of-{key_id}", "environment": "prod", "routes": None,
        "rpm": None, "tpm": None, "max_concurrency": None, "budget_usd": None,
        "budget_period": None, "expires_at": None, "actor": "cli:alice", "client": "host-1",
    }
    values.update(changes)
    return store.create(**values)


# Schema


def test_open_migrates_the_keys_audit_and_revision_tables_and_the_ledger_columns(
    store_url: str,
) -> None:
    with KeyStore.open(store_url) as store:
        assert store.revision() == 0
    engine = make_engine(store_url)
    try:
        inspector = inspect(engine)
        assert {"api_keys", "api_key_secrets", "audit_log", "store_revision", "requests"} <= set(
            inspector.get_table_names())
        ledger_columns = {c["name"] for c in inspector.get_columns("requests")}
        assert {"key_id", "environment", "cost_usd"} <= ledger_columns
        ledger_indexes = {i["name"] for i in inspector.get_indexes("requests")}
        assert "ix_requests_key_id_created_at" in ledger_indexes
        secret_uniques = inspector.get_unique_constraints("api_key_secrets")
        assert [u["column_names"] for u in secret_uniques] == [["secret_hash"]]
    finally:
        engine.dispose()


def test_opening_twice_migrates_once_and_keeps_the_data(store_url: str) -> None:
    with KeyStore.open(store_url) as store:
        create(store)
    with KeyStore.open(store_url) as store:
        assert [k.id for k in store.list_keys()] == ["key_a"]
        assert store.revision() == 1


def test_open_refuses_an_unusable_url_as_a_config_error_naming_store_url() -> None:
    with pytest.raises(ConfigError) as caught:
        KeyStore.open("nosuchdb://x")
    assert caught.value.problems[0].startswith("store.url:")


def test_an_unreachable_database_is_service_unavailable(tmp_path: Path) -> None:
    # A SQLite "database" that is a directory: every connection fails.
    with pytest.raises(ServiceUnavailable, match="the store is unavailable"):
        KeyStore.open(f"sqlite:///{tmp_path}")


# create, get, list


def test_create_stores_the_key_with_its_hash_audits_it_and_bumps_the_revision(
    store: KeyStore,
) -> None:
    row = create(store, routes=["support-summary", "search"], rpm=60, tpm=10_000,
                 max_concurrency=4, budget_usd=12.5, budget_period="month",
                 expires_at=T0 + timedelta(days=30))

    assert row == store.get("key_a")
    assert (row.id, row.name, row.prefix, row.environment) == (
        "key_a", "name of key_a", "mpk_AbCdEfGh", "prod")
    assert row.routes == ("support-summary", "search")
    assert (row.rpm, row.tpm, row.max_concurrency) == (60, 10_000, 4)
    assert (row.budget_usd, row.budget_period) == (12.5, "month")
    assert row.expires_at == T0 + timedelta(days=30)
    assert row.created_at == T0 and row.revoked_at is None
    assert [(s.secret_hash, s.expires_at) for s in row.secrets] == [("hash-of-key_a", None)]
    assert store.revision() == 1
    [entry] = store.audit_entries()
    assert (entry.action, entry.target, entry.actor, entry.client) == (
        "key.create", "key_a", "cli:alice", "host-1")
    assert entry.detail is not None and entry.detail["routes"] == ["support-summary", "search"]
    assert "hash-of-key_a" not in str(entry.detail)


def test_routes_none_means_every_route_and_is_kept_apart_from_an_empty_choice(
    store: KeyStore,
) -> None:
    assert create(store, "key_all", routes=None).routes is None
    assert create(store, "key_none", secret_hash="h1", routes=()).routes == ()
    assert create(store, "key_one", secret_hash="h2", routes=["r"]).routes == ("r",)


def test_get_returns_none_for_an_unknown_key(store: KeyStore) -> None:
    assert store.get("key_missing") is None


def test_list_keys_is_oldest_first_with_each_keys_own_secrets(
    store: KeyStore, clock: Clock
) -> None:
    create(store, "key_b")
    clock.now = T0 + timedelta(minutes=1)
    create(store, "key_a")

    rows = store.list_keys()

    assert [r.id for r in rows] == ["key_b", "key_a"]
    assert [[s.secret_hash for s in r.secrets] for r in rows] == [["hash-of-key_b"],
                                                                  ["hash-of-key_a"]]


def test_timestamps_in_any_zone_come_back_as_the_same_instant_in_utc(store: KeyStore) -> None:
    paris = timezone(timedelta(hours=2))
    row = create(store, expires_at=datetime(2030, 6, 1, 14, 0, tzinfo=paris))

    assert row.expires_at == datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    assert row.expires_at is not None and row.expires_at.utcoffset() == timedelta(0)
    assert row.created_at.tzinfo is not None


def test_naive_datetimes_are_refused_rather_than_guessed(store: KeyStore) -> None:
    with pytest.raises(StatementError, match="naive datetime"):
        create(store, expires_at=datetime(2030, 1, 1))
    assert store.list_keys() == []


def test_a_failed_create_leaves_no_key_no_audit_entry_and_the_revision_unchanged(
    store: KeyStore,
) -> None:
    create(store, "key_a", secret_hash="same")

    with pytest.raises(IntegrityError):
        create(store, "key_b", secret_hash="same")

    assert [k.id for k in store.list_keys()] == ["key_a"]
    assert len(store.audit_entries()) == 1
    assert store.revision() == 1


def test_create_refuses_an_unknown_budget_period(store: KeyStore) -> None:
    with pytest.raises(ValueError, match="budget_period"):
        create(store, budget_usd=1.0, budget_period="week")


# revoke


def test_revoke_sets_revoked_at_audits_and_bumps_the_revision(
    store: KeyStore, clock: Clock
) -> None:
    create(store)
    clock.now = T0 + timedelta(hours=1)

    row = store.revoke("key_a", actor="admin:bob", client="10.0.0.1")

    assert row is not None and row.revoked_at == T0 + timedelta(hours=1)
    assert store.get("key_a") == row
    assert store.revision() == 2
    entry = store.audit_entries()[0]
    assert (entry.action, entry.target, entry.actor, entry.client, entry.detail) == (
        "key.revoke", "key_a", "admin:bob", "10.0.0.1", None)


def test_revoking_twice_keeps_the_first_time_and_does_not_bump_the_revision(
    store: KeyStore, clock: Clock
) -> None:
    create(store)
    store.revoke("key_a", actor="a", client=None)
    clock.now = T0 + timedelta(days=1)

    row = store.revoke("key_a", actor="a", client=None)

    assert row is not None and row.revoked_at == T0
    assert store.revision() == 2
    assert store.audit_entries()[0].detail == {"already_revoked": True}


def test_revoking_an_unknown_key_returns_none_and_changes_nothing(store: KeyStore) -> None:
    assert store.revoke("key_missing", actor="a", client=None) is None
    assert store.revision() == 0
    assert store.audit_entries() == []


# rotate


def test_rotate_with_grace_keeps_the_old_secret_until_then_and_adds_the_new_one(
    store: KeyStore, clock: Clock
) -> None:
    create(store)
    clock.now = T0 + timedelta(hours=1)
    grace = T0 + timedelta(hours=2)

    row = store.rotate("key_a", new_hash="new-hash", grace_until=grace, actor="a", client=None)

    assert row is not None
    assert [(s.secret_hash, s.expires_at) for s in row.secrets] == [
        ("hash-of-key_a", grace), ("new-hash", None)]
    assert row.secrets[0].valid_at(grace - timedelta(seconds=1))
    assert not row.secrets[0].valid_at(grace)
    assert store.revision() == 2
    entry = store.audit_entries()[0]
    assert entry.action == "key.rotate" and entry.target == "key_a"
    assert entry.detail == {"grace_until": grace.isoformat(), "grace_seconds": 3600.0}


def test_rotate_without_grace_ends_the_old_secrets_at_once(
    store: KeyStore, clock: Clock
) -> None:
    create(store)
    clock.now = T0 + timedelta(hours=1)

    row = store.rotate("key_a", new_hash="new-hash", grace_until=None, actor="a", client=None)

    assert row is not None
    old, new = row.secrets
    assert old.expires_at == clock.now and not old.valid_at(clock.now)
    assert new.expires_at is None and new.valid_at(clock.now)


def test_rotate_never_extends_a_secret_already_ending_earlier(
    store: KeyStore, clock: Clock
) -> None:
    create(store)
    first_grace = T0 + timedelta(minutes=10)
    store.rotate("key_a", new_hash="second", grace_until=first_grace, actor="a", client=None)

    row = store.rotate("key_a", new_hash="third", grace_until=T0 + timedelta(hours=5),
                       actor="a", client=None)

    assert row is not None
    assert [(s.secret_hash, s.expires_at) for s in row.secrets] == [
        ("hash-of-key_a", first_grace), ("second", T0 + timedelta(hours=5)), ("third", None)]


def test_rotate_replaces_the_displayed_prefix_when_given_one(store: KeyStore) -> None:
    create(store)

    row = store.rotate("key_a", new_hash="h2", new_prefix="mpk_NewPrefx", grace_until=None,
                       actor="a", client=None)

    assert row is not None and row.prefix == "mpk_NewPrefx"


def test_rotate_refuses_unknown_and_revoked_keys_without_any_change(store: KeyStore) -> None:
    create(store)
    store.revoke("key_a", actor="a", client=None)
    revision, entries = store.revision(), len(store.audit_entries())

    assert store.rotate("key_a", new_hash="h2", grace_until=None, actor="a", client=None) is None
    assert store.rotate("key_x", new_hash="h3", grace_until=None, actor="a", client=None) is None

    row = store.get("key_a")
    assert row is not None and [s.secret_hash for s in row.secrets] == ["hash-of-key_a"]
    assert (store.revision(), len(store.audit_entries())) == (revision, entries)


# audit


def test_audit_records_other_admin_actions_with_their_json_detail(store: KeyStore) -> None:
    store.audit("admin:bob", "usage.read", None, {"by": "route", "period": "day"}, "10.0.0.2")

    [entry] = store.audit_entries()
    assert (entry.actor, entry.action, entry.target, entry.client) == (
        "admin:bob", "usage.read", None, "10.0.0.2")
    assert entry.detail == {"by": "route", "period": "day"}
    assert entry.at == T0
    assert store.revision() == 0  # not a key change


def test_audit_entries_are_newest_first_and_page_backwards_with_before_id(
    store: KeyStore,
) -> None:
    for i in range(5):
        store.audit("a", f"action.{i}", None, None, None)

    first = store.audit_entries(limit=2)
    second = store.audit_entries(limit=2, before_id=first[-1].id)
    rest = store.audit_entries(limit=10, before_id=second[-1].id)

    assert [e.action for e in first + second + rest] == [f"action.{i}" for i in range(4, -1, -1)]
