"""The key admin API over real HTTP: a secret shown once and stored only as its SHA-256,
revocation and rotation taking effect on the very next request, strict validation, expiry,
environment scoping, and an audit log that names who did what and never holds a secret."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.fakes.upstream import FakeUpstream
from tests.integration.access_setup import (
    ADMIN_KEY,
    KEY_ALL,
    PLANTED,
    Keyed,
    bearer,
    keyed_gateway,
)

ADMIN = bearer(ADMIN_KEY)


def admin(keyed: Keyed, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return keyed.client.request(method, path, headers=ADMIN, **kwargs)


def listed(keyed: Keyed) -> dict[str, dict[str, Any]]:
    r = admin(keyed, "GET", "/admin/keys")
    assert r.status_code == 200, r.text
    return {k["id"]: k for k in r.json()["data"]}


def rows_of(store_url: str, table: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    finally:
        engine.dispose()


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    """One gateway for the tests that change nothing (validation only)."""
    tmp = tmp_path_factory.mktemp("admin-validation")
    upstream = FakeUpstream().start()
    try:
        yield from keyed_gateway(tmp, upstream, f"sqlite:///{tmp}/ledger.db")
    finally:
        upstream.stop()


def test_create_shows_the_key_once_and_lists_only_its_prefix(keyed: Keyed) -> None:
    made = keyed.create_key(name="ci", rpm=7)
    key = made["key"]
    assert key.startswith("mpk_") and len(key) == 44
    assert made["id"].startswith("key_") and made["prefix"] == key[:12]
    assert made["rpm"] == 7 and made["environment"] == "prod" and made["revoked_at"] is None
    r = admin(keyed, "GET", "/admin/keys")
    assert key not in r.text and key[12:] not in r.text
    entry = listed(keyed)[made["id"]]
    assert "key" not in entry
    assert entry["prefix"] == key[:12] and entry["name"] == "ci"


def test_the_store_holds_only_the_sha256_of_a_key(keyed: Keyed) -> None:
    made = keyed.create_key(name="hashed")
    key = made["key"]
    assert keyed.call("r1", key).status_code == 200  # the ledger has a row for it too
    for table in ("api_keys", "api_key_secrets", "audit_log", "requests"):
        for row in rows_of(keyed.store_url, table):
            assert not any(key in str(value) or key[4:] in str(value) for value in row), table
    hashes = [row[2] for row in rows_of(keyed.store_url, "api_key_secrets")]
    assert hashlib.sha256(key.encode()).hexdigest() in hashes
    raw = Path(keyed.store_url.removeprefix("sqlite:///")).read_bytes()
    assert key.encode() not in raw


def test_a_new_key_works_at_once(keyed: Keyed) -> None:
    key = keyed.create_key()["key"]
    r = keyed.call("r1", key)
    assert r.status_code == 200, r.text


def test_a_key_limited_to_routes_calls_only_those(keyed: Keyed) -> None:
    key = keyed.create_key(routes=["r1"])["key"]
    assert keyed.call("r1", key).status_code == 200
    assert keyed.call("r2", key).status_code == 403


def test_a_dev_key_calls_only_dev_routes(keyed: Keyed) -> None:
    key = keyed.create_key(environment="dev")["key"]
    assert keyed.call("rdev", key).status_code == 200
    for route in ("r1", "r2"):
        r = keyed.call(route, key)
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied"


def test_revoking_a_key_fails_its_very_next_request(keyed: Keyed) -> None:
    made = keyed.create_key()
    assert keyed.call("r1", made["key"]).status_code == 200
    r = admin(keyed, "DELETE", f"/admin/keys/{made['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == made["id"] and r.json()["revoked_at"] is not None
    after = keyed.call("r1", made["key"])
    assert after.status_code == 401 and after.json()["error"]["code"] == "invalid_api_key"
    again = admin(keyed, "DELETE", f"/admin/keys/{made['id']}")
    assert again.status_code == 200
    assert again.json()["revoked_at"] == r.json()["revoked_at"]
    assert listed(keyed)[made["id"]]["revoked_at"] == r.json()["revoked_at"]
    assert keyed.call("r1", made["key"]).status_code == 401


def test_revoking_an_unknown_key_is_404(keyed: Keyed) -> None:
    r = admin(keyed, "DELETE", "/admin/keys/key_0000000000000000")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_rotation_with_grace_keeps_the_old_key_for_the_grace_period(keyed: Keyed) -> None:
    made = keyed.create_key()
    r = admin(keyed, "POST", f"/admin/keys/{made['id']}/rotate", json={"grace_seconds": 1})
    assert r.status_code == 200, r.text
    new = r.json()["key"]
    assert new.startswith("mpk_") and new != made["key"] and r.json()["id"] == made["id"]
    assert r.json()["previous_key_valid_until"]
    assert keyed.call("r1", made["key"]).status_code == 200
    assert keyed.call("r1", new).status_code == 200
    time.sleep(1.1)
    assert keyed.call("r1", made["key"]).status_code == 401
    assert keyed.call("r1", new).status_code == 200


def test_rotation_without_a_body_ends_the_old_key_at_once(keyed: Keyed) -> None:
    made = keyed.create_key()
    r = admin(keyed, "POST", f"/admin/keys/{made['id']}/rotate")
    assert r.status_code == 200, r.text
    assert keyed.call("r1", made["key"]).status_code == 401
    assert keyed.call("r1", r.json()["key"]).status_code == 200
    assert hashlib.sha256(r.json()["key"].encode()).hexdigest() in [
        row[2] for row in rows_of(keyed.store_url, "api_key_secrets")]


def test_rotation_shows_the_new_secrets_prefix(keyed: Keyed) -> None:
    made = keyed.create_key()
    r = admin(keyed, "POST", f"/admin/keys/{made['id']}/rotate")
    new = r.json()["key"]
    assert r.json()["prefix"] == new[:12]
    assert listed(keyed)[made["id"]]["prefix"] == new[:12]


def test_rotating_a_revoked_or_unknown_key_is_404(keyed: Keyed) -> None:
    made = keyed.create_key()
    assert admin(keyed, "DELETE", f"/admin/keys/{made['id']}").status_code == 200
    r = admin(keyed, "POST", f"/admin/keys/{made['id']}/rotate")
    assert r.status_code == 404, r.text
    assert keyed.call("r1", made["key"]).status_code == 401
    assert admin(keyed, "POST", "/admin/keys/key_0000000000000000/rotate").status_code == 404


def test_config_keys_cannot_be_revoked_or_rotated_here(keyed: Keyed) -> None:
    for method, path in (("DELETE", "/admin/keys/cfg_all-prod"),
                         ("POST", "/admin/keys/cfg_all-prod/rotate")):
        r = admin(keyed, method, path)
        assert r.status_code == 400, r.text
        assert "config" in r.json()["error"]["message"]
    assert keyed.call("r1", KEY_ALL).status_code == 200


def test_a_key_works_until_it_expires(keyed: Keyed) -> None:
    made = keyed.create_key(expires_at=iso_in(1.2))
    assert made["expires_at"] is not None
    assert keyed.call("r1", made["key"]).status_code == 200
    time.sleep(max(0.0, datetime.fromisoformat(made["expires_at"]).timestamp()
                   - time.time()) + 0.05)
    r = keyed.call("r1", made["key"])
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_audit_lists_key_changes_newest_first_with_actor_target_and_client(
    keyed: Keyed,
) -> None:
    made = keyed.create_key(name="audited")
    rotated = admin(keyed, "POST", f"/admin/keys/{made['id']}/rotate",
                    json={"grace_seconds": 5}).json()
    admin(keyed, "DELETE", f"/admin/keys/{made['id']}")
    r = admin(keyed, "GET", "/admin/audit")
    assert r.status_code == 200, r.text
    entries = [e for e in r.json()["data"] if e["target"] == made["id"]]
    assert [e["action"] for e in entries] == ["key.revoke", "key.rotate", "key.create"]
    for entry in entries:
        assert entry["actor"] == "admin" and entry["client"] == "127.0.0.1"
    ids = [e["id"] for e in r.json()["data"]]
    assert ids == sorted(ids, reverse=True)
    ats = [e["at"] for e in entries]
    assert ats == sorted(ats, reverse=True)
    for secret in (made["key"], rotated["key"], *PLANTED):
        assert secret not in r.text


INVALID: list[tuple[str, Any, str | None]] = [
    ("negative rpm", {"rpm": -1}, "rpm"),
    ("zero rpm", {"rpm": 0}, "rpm"),
    ("rpm as a string", {"rpm": "10"}, "rpm"),
    ("rpm as a float", {"rpm": 10.5}, "rpm"),
    ("rpm as a bool", {"rpm": True}, "rpm"),
    ("huge rpm", {"rpm": 10**12}, "rpm"),
    ("negative tpm", {"tpm": -5}, "tpm"),
    ("zero max_concurrency", {"max_concurrency": 0}, "max_concurrency"),
    ("negative budget", {"budget_usd": -1}, "budget_usd"),
    ("budget as a string", {"budget_usd": "5"}, "budget_usd"),
    ("unknown budget period", {"budget_usd": 5, "budget_period": "week"}, "budget_period"),
    ("unknown environment", {"environment": "staging"}, "environment"),
    ("unknown field", {"scopes": ["all"]}, "scopes"),
    ("empty name", {"name": ""}, "name"),
    ("missing name", {"name": None}, "name"),
    ("expires_at in the past", {"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
    ("expires_at not a date", {"expires_at": "tomorrow"}, "expires_at"),
    ("unknown route", {"routes": ["nope"]}, "routes"),
    ("routes not a list", {"routes": "r1"}, "routes"),
    ("prod key on a dev route", {"routes": ["rdev"]}, "routes"),
    ("dev key on a prod route", {"environment": "dev", "routes": ["r1"]}, "routes"),
]


@pytest.mark.parametrize(("spec", "param"), [(s, p) for _, s, p in INVALID],
                         ids=[name for name, _, _ in INVALID])
def test_invalid_key_specs_are_400_naming_the_field(
    shared: Keyed, spec: dict[str, Any], param: str
) -> None:
    body = {"name": "bad", **spec}
    if body["name"] is None:
        del body["name"]
    r = admin(shared, "POST", "/admin/keys", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"].startswith(f"{param}: ") and len(error["message"]) > len(param) + 4
    assert listed(shared) == {}, "an invalid key was stored"


def test_an_expiry_beyond_the_calendar_in_utc_is_a_400_not_a_500(keyed: Keyed) -> None:
    r = admin(keyed, "POST", "/admin/keys",
              json={"name": "far", "expires_at": "9999-12-31T23:59:59-23:59"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "expires_at"


@pytest.mark.parametrize(("content", "needle"), [
    (b'[{"name": "x"}]', "JSON object"),
    (b'{"name": "x"', "not valid JSON"),
    (b"", "empty"),
])
def test_a_body_that_is_not_a_json_object_is_400(
    shared: Keyed, content: bytes, needle: str
) -> None:
    r = shared.client.post("/admin/keys", content=content,
                           headers={**ADMIN, "content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert needle in error["message"] and error["type"] == "invalid_request_error"


def test_invalid_rotation_bodies_are_400_and_change_nothing(keyed: Keyed) -> None:
    made = keyed.create_key()
    for body in ({"grace_seconds": -1}, {"grace_seconds": "5"}, {"grace_seconds": 1.5},
                 {"grace": 5}, [5]):
        r = admin(keyed, "POST", f"/admin/keys/{made['id']}/rotate", json=body)
        assert r.status_code == 400, (body, r.text)
    assert keyed.call("r1", made["key"]).status_code == 200, "a refused rotation changed the key"
    assert [e["action"] for e in admin(keyed, "GET", "/admin/audit").json()["data"]
            if e["target"] == made["id"]] == ["key.create"]
