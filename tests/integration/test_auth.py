"""Who may call what: the authorisation matrix, the admin boundary, scoped model lists."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.gateway import start_gateway
from tests.integration.access_setup import (
    ADMIN_KEY,
    KEY_ALL,
    KEY_DEV,
    KEY_R1,
    PLANTED,
    Keyed,
    access_config,
    access_env,
    bearer,
)

# (key, route) -> expected status for an inference call
MATRIX = {
    (KEY_ALL, "r1"): 200, (KEY_ALL, "r2"): 200, (KEY_ALL, "rdev"): 403,
    (KEY_R1, "r1"): 200, (KEY_R1, "r2"): 403, (KEY_R1, "rdev"): 403,
    (KEY_DEV, "r1"): 403, (KEY_DEV, "r2"): 403, (KEY_DEV, "rdev"): 200,
    (ADMIN_KEY, "r1"): 401, (ADMIN_KEY, "r2"): 401, (ADMIN_KEY, "rdev"): 401,
    (None, "r1"): 401, (None, "r2"): 401, (None, "rdev"): 401,
    ("mpk_" + "x" * 40, "r1"): 401, ("garbage", "r1"): 401,
}
ADMIN_MATRIX = {KEY_ALL: 401, KEY_R1: 401, KEY_DEV: 401, None: 401, "garbage": 401,
                ADMIN_KEY: 200}


@pytest.mark.parametrize(("key", "route"), list(MATRIX))
def test_inference_authorisation_matrix(keyed: Keyed, key: str | None, route: str) -> None:
    r = keyed.call(route, key)
    expected = MATRIX[(key, route)]
    assert r.status_code == expected, r.text
    if expected != 200:
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        for secret in PLANTED:
            assert secret not in r.text
        for other in ("r1", "r2", "rdev", "all-prod", "r1-only", "cfg_"):
            assert other not in error["message"]
    if expected == 401:
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["www-authenticate"] == "Bearer"
    if expected == 403:
        assert r.json()["error"]["code"] == "permission_denied"


@pytest.mark.parametrize("key", list(ADMIN_MATRIX))
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/admin/keys"), ("POST", "/admin/keys"), ("DELETE", "/admin/keys/key_x"),
    ("POST", "/admin/keys/key_x/rotate"), ("GET", "/admin/audit"), ("GET", "/admin/usage"),
])
def test_admin_endpoints_take_only_the_admin_key(
    keyed: Keyed, key: str | None, method: str, path: str
) -> None:
    body = {"name": "probe"} if method == "POST" and path == "/admin/keys" else None
    r = keyed.client.request(method, path, json=body, headers=bearer(key))
    if ADMIN_MATRIX[key] == 401:
        assert r.status_code == 401, r.text
    else:
        assert r.status_code in (200, 201, 404), r.text


def test_every_401_says_the_same_thing(keyed: Keyed) -> None:
    messages = {keyed.call("r1", k).json()["error"]["message"]
                for k in (None, "garbage", "mpk_" + "y" * 40, ADMIN_KEY)}
    assert len(messages) == 1


def test_models_list_only_what_the_key_may_call(keyed: Keyed) -> None:
    def ids(key: str) -> list[str]:
        r = keyed.client.get("/v1/models", headers=bearer(key))
        return sorted(m["id"] for m in r.json()["data"])

    assert ids(KEY_ALL) == ["r1", "r2"]
    assert ids(KEY_R1) == ["r1"]
    assert ids(KEY_DEV) == ["rdev"]
    assert keyed.client.get("/v1/models").status_code == 401
    hidden = keyed.client.get("/v1/models/r2", headers=bearer(KEY_R1))
    assert hidden.status_code == 404


def test_ledger_names_the_key_and_environment(keyed: Keyed) -> None:
    import time

    import sqlalchemy as sa

    r = keyed.client.post("/v1/chat/completions", headers={**bearer(KEY_R1),
                          "X-Request-ID": "keyed-1"},
                          json={"model": "r1", "messages": []})
    assert r.status_code == 200
    engine = sa.create_engine(keyed.store_url)
    deadline = time.monotonic() + 5
    row = None
    while row is None and time.monotonic() < deadline:
        with engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT key_id, environment, cost_usd FROM requests WHERE request_id='keyed-1'"
            )).first()
        time.sleep(0.05)
    engine.dispose()
    assert row is not None
    assert row.key_id == "cfg_r1-only" and row.environment == "prod"
    # fake usage: 7 prompt + 3 completion tokens at $2 / $10 per million
    assert row.cost_usd == pytest.approx((7 * 2.0 + 3 * 10.0) / 1e6)


def test_key_list_shows_usage_so_far_this_month(keyed: Keyed) -> None:
    import time

    made = keyed.client.post("/admin/keys", json={"name": "metered", "routes": ["r1"]},
                             headers=bearer(ADMIN_KEY)).json()
    for _ in range(2):
        assert keyed.call("r1", made["key"]).status_code == 200
    deadline = time.monotonic() + 5
    while True:
        listed = keyed.client.get("/admin/keys", headers=bearer(ADMIN_KEY)).json()["data"]
        (view,) = [k for k in listed if k["id"] == made["id"]]
        if view["usage_this_month"]["requests"] == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert view["usage_this_month"]["requests"] == 2
    assert view["usage_this_month"]["cost_usd"] == pytest.approx(2 * (7 * 2 + 3 * 10) / 1e6)
    assert view["last_used_at"] is not None and "key" not in view


METRICS_TOKEN = "metrics-token-for-prometheus-8c2f"


@pytest.mark.parametrize(("who", "status"), [
    (None, 401), (KEY_ALL, 401), (METRICS_TOKEN + "x", 401), (ADMIN_KEY, 200),
    (METRICS_TOKEN, 200),
])
def test_with_keys_metrics_take_the_admin_key_or_the_metrics_token(
    tmp_path: Path, upstream: FakeUpstream, sqlite_url: str, who: str | None, status: int
) -> None:
    """/metrics names every route, key id and budget: with keys, not for anyone."""
    env = {**access_env(), "METRICS_TOKEN": METRICS_TOKEN}
    config = access_config(upstream.base_url, sqlite_url, metrics_token="env:METRICS_TOKEN")
    gw = start_gateway(tmp_path, config, env)
    try:
        r = httpx.get(f"{gw.url}/metrics", headers=bearer(who))
        assert r.status_code == status, r.text
        if status == 200:
            assert "modelport_requests_total" in r.text or "modelport_info" in r.text
        else:
            assert r.json()["error"]["code"] == "invalid_api_key"
            assert METRICS_TOKEN not in r.text
    finally:
        gw.stop()


def test_in_open_mode_metrics_need_nothing(client: httpx.Client) -> None:
    assert client.get("/metrics").status_code == 200


def test_with_keys_the_server_is_not_ready_until_the_store_has_been_read(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """Keys created over the admin API and each key's spend live in the store: with the
    store unreadable at start, readiness says so, and turns ready once it answers."""
    db = tmp_path / "ledger.db"
    db.mkdir()  # SQLite cannot open a folder: the store is "down"
    gw = start_gateway(tmp_path, access_config(upstream.base_url, f"sqlite:///{db}"),
                       access_env())
    try:
        first = httpx.get(f"{gw.url}/health/ready")
        assert first.status_code == 503
        assert first.json()["status"] == "waiting for the store"
        db.rmdir()  # the store comes back
        deadline = time.monotonic() + 10
        while httpx.get(f"{gw.url}/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "never ready after the store came back"
            time.sleep(0.1)
        r = httpx.post(f"{gw.url}/admin/keys", json={"name": "late"}, headers=bearer(ADMIN_KEY))
        assert r.status_code == 201, r.text
    finally:
        gw.stop()
