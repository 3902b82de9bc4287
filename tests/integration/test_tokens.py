"""Browser tokens over real HTTP: minted from a key, one route, limits never above the
parent's, signed, short-lived, and dead with their parent."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream
from tests.gateway import basic_config, start_gateway
from tests.integration.access_setup import ADMIN_KEY, KEY_ALL, KEY_R1, Keyed, bearer

DEFAULTS = {"rpm": 20, "tpm": 20_000, "max_concurrency": 2}


def mint(keyed: Keyed, key: str | None, **spec: Any) -> httpx.Response:
    return keyed.client.post("/v1/tokens", json=spec, headers=bearer(key))


def token_of(keyed: Keyed, key: str, **spec: Any) -> str:
    r = mint(keyed, key, **spec)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def flip(text: str, index: int) -> str:
    return text[:index] + ("B" if text[index] == "A" else "A") + text[index + 1:]


def test_minting_returns_a_token_for_one_route_with_default_limits(keyed: Keyed) -> None:
    before = time.time()
    r = mint(keyed, KEY_ALL, route="r1", ttl_s=60)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["object"] == "token" and body["route"] == "r1"
    assert body["token"].startswith("mpt_")
    expires = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert before + 58 <= expires <= time.time() + 60
    for name, default in DEFAULTS.items():
        assert body[name] <= default


def test_a_token_calls_its_route_and_no_other(keyed: Keyed) -> None:
    token = token_of(keyed, KEY_ALL, route="r1", ttl_s=60)
    ok = keyed.call("r1", token)
    assert ok.status_code == 200
    assert ok.headers["x-ratelimit-limit-requests"] == "20"  # the token's own default limit
    assert ok.headers["x-ratelimit-limit-tokens"] == "20000"
    for route in ("r2", "rdev"):
        r = keyed.call(route, token)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "permission_denied"
    assert len(keyed.upstream.requests) == 1


def test_a_token_cannot_mint_tokens(keyed: Keyed) -> None:
    token = token_of(keyed, KEY_ALL, route="r1")
    r = mint(keyed, token, route="r1")
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "permission_denied"


def test_ttl_outside_one_second_to_one_hour_is_a_400(keyed: Keyed) -> None:
    for ttl in (3601, 0, -5, "abc", 1.5, None):
        r = mint(keyed, KEY_ALL, route="r1", ttl_s=ttl)
        assert r.status_code == 400, (ttl, r.text)
        error = r.json()["error"]
        assert error["param"] == "ttl_s" and "ttl_s" in error["message"]
    assert mint(keyed, KEY_ALL, route="r1", ttl_s=3600).status_code == 201


def test_bad_token_requests_are_400_in_the_openai_shape(keyed: Keyed) -> None:
    for spec, param in (({}, "route"), ({"route": "r1", "scope": "all"}, "scope"),
                        ({"route": "r1", "rpm": 0}, "rpm"), ({"route": 1}, "route")):
        r = mint(keyed, KEY_ALL, **spec)
        assert r.status_code == 400, (spec, r.text)
        assert r.json()["error"]["param"] == param
    assert mint(keyed, KEY_ALL, route="nope").status_code == 404


def test_a_key_cannot_mint_for_a_route_it_may_not_call(keyed: Keyed) -> None:
    for key, route in ((KEY_R1, "r2"), (KEY_ALL, "rdev")):
        r = mint(keyed, key, route=route)
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "permission_denied"


def test_asking_above_the_parents_rpm_yields_the_parents_and_it_is_enforced(
    keyed: Keyed,
) -> None:
    parent = keyed.create_key(rpm=5)
    r = mint(keyed, parent["key"], route="r1", rpm=50)
    assert r.status_code == 201, r.text
    assert r.json()["rpm"] == 5
    token = r.json()["token"]
    assert [keyed.call("r1", token).status_code for _ in range(5)] == [200] * 5
    refused = keyed.call("r1", token)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert len(keyed.upstream.requests) == 5


def test_a_token_asked_with_a_lower_rpm_is_held_to_it_while_its_parent_goes_on(
    keyed: Keyed,
) -> None:
    r = mint(keyed, KEY_ALL, route="r1", rpm=2, max_concurrency=1)
    assert r.status_code == 201
    assert (r.json()["rpm"], r.json()["max_concurrency"]) == (2, 1)
    token = r.json()["token"]
    assert [keyed.call("r1", token).status_code for _ in range(3)] == [200, 200, 429]
    assert keyed.call("r1", KEY_ALL).status_code == 200


def test_calls_with_a_token_count_against_the_parents_limits(keyed: Keyed) -> None:
    parent = keyed.create_key(rpm=3)
    token = token_of(keyed, parent["key"], route="r1")
    assert keyed.call("r1", token).status_code == 200
    assert keyed.call("r1", token).status_code == 200
    assert keyed.call("r1", parent["key"]).status_code == 200
    assert keyed.call("r1", parent["key"]).status_code == 429


def test_calls_with_a_token_spend_the_parents_budget(keyed: Keyed) -> None:
    parent = keyed.create_key(budget_usd=0.00005)  # one r1 call of $0.000044
    token = token_of(keyed, parent["key"], route="r1")
    assert keyed.call("r1", token, max_tokens=3).status_code == 200
    r = keyed.call("r1", parent["key"], max_tokens=3)
    assert r.status_code == 429 and r.json()["error"]["code"] == "budget_exceeded"


@pytest.mark.parametrize("where", ["payload", "signature"])
def test_a_tampered_token_is_401(keyed: Keyed, where: str) -> None:
    token = token_of(keyed, KEY_ALL, route="r1")
    dot = token.index(".")
    index = len("mpt_") + 3 if where == "payload" else dot + 3
    r = keyed.call("r1", flip(token, index))
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert keyed.call("r1", token).status_code == 200


def test_a_token_signed_with_another_secret_is_401(keyed: Keyed) -> None:
    token = token_of(keyed, KEY_ALL, route="r1")
    body, _, _ = token.partition(".")
    forged = body + "." + "A" * 43  # the length of a base64url HMAC-SHA256
    assert keyed.call("r1", forged).status_code == 401
    assert keyed.call("r1", body).status_code == 401
    assert keyed.call("r1", "mpt_").status_code == 401


def test_an_expired_token_is_401(keyed: Keyed) -> None:
    token = token_of(keyed, KEY_ALL, route="r1", ttl_s=1)
    time.sleep(1.1)
    r = keyed.call("r1", token)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"


def test_a_token_lives_for_its_whole_ttl(keyed: Keyed) -> None:
    # mint mid-second, where the truncation is visible (about 0.25 s to 0.75 s short)
    while not 0.3 <= time.time() % 1 <= 0.6:
        time.sleep(0.02)
    before = time.time()
    r = mint(keyed, KEY_ALL, route="r1", ttl_s=60)
    expires = datetime.fromisoformat(r.json()["expires_at"]).timestamp()
    assert expires >= before + 60 - 0.05


def test_a_token_does_not_outlive_its_parent_key(keyed: Keyed) -> None:
    parent_expiry = datetime.now(UTC) + timedelta(seconds=30)
    parent = keyed.create_key(expires_at=parent_expiry.isoformat())
    r = mint(keyed, parent["key"], route="r1", ttl_s=3600)
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["expires_at"]) <= parent_expiry


def test_revoking_the_parent_key_kills_its_tokens_at_once(keyed: Keyed) -> None:
    parent = keyed.create_key()
    token = token_of(keyed, parent["key"], route="r1", ttl_s=600)
    assert keyed.call("r1", token).status_code == 200
    revoked = keyed.client.delete(f"/admin/keys/{parent['id']}", headers=bearer(ADMIN_KEY))
    assert revoked.status_code == 200
    assert keyed.call("r1", token).status_code == 401
    assert mint(keyed, parent["key"], route="r1").status_code == 401


def test_the_admin_key_cannot_mint_tokens(keyed: Keyed) -> None:
    r = mint(keyed, ADMIN_KEY, route="r1")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert mint(keyed, None, route="r1").status_code == 401


def test_tokens_are_a_400_in_open_mode(
    tmp_path: Path, upstream: FakeUpstream, sqlite_url: str
) -> None:
    gw = start_gateway(tmp_path, basic_config(upstream.base_url, sqlite_url),
                       {"UPSTREAM_A_KEY": UPSTREAM_KEY})
    try:
        r = httpx.post(f"{gw.url}/v1/tokens", json={"route": "support-summary"}, timeout=10)
    finally:
        gw.stop()
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert "key" in r.json()["error"]["message"]
