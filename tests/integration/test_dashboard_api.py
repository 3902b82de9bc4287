"""The dashboard's server side: signing in and out, the session cookie and what it opens
(the admin API, changes only with the dashboard's header), the page's security headers, and
the admin endpoints it plots (``/admin/stats``, ``/admin/routes``) checked against known
traffic."""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport.api.services import LIVE_KEY, Services
from modelport.dashboard.headers import CONTENT_SECURITY_POLICY
from modelport.dashboard.sessions import MAX_SESSIONS, SESSION_COOKIE
from modelport.dashboard.throttle import MAX_FAILURES
from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import InProcessGateway, basic_config, start_gateway
from tests.integration.access_setup import (
    ADMIN_KEY,
    KEY_ALL,
    Keyed,
    access_config,
    access_env,
    bearer,
    chat,
)

ADMIN = bearer(ADMIN_KEY)
DASHBOARD = {"X-Modelport-Dashboard": "1"}


def _login(client: httpx.Client, key: str = ADMIN_KEY, **headers: str) -> httpx.Response:
    return _forgetting(client, client.post("/dashboard/login", json={"key": key},
                                           headers=headers))


def _forgetting(client: httpx.Client, reply: httpx.Response) -> httpx.Response:
    """The reply, its cookie kept out of the client's jar: these tests send cookies only
    when they say so."""
    client.cookies.clear()
    return reply


def _session(client: httpx.Client) -> str:
    reply = _login(client)
    assert reply.status_code == 200, reply.text
    return _cookie(reply)[SESSION_COOKIE].value


def _cookie(reply: httpx.Response) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    jar.load(reply.headers["set-cookie"])
    return jar


def _with(session: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={session}"}


def _services(gateway: InProcessGateway) -> Services:
    services: Services = gateway.server.lifespan.state[LIVE_KEY].current
    return services


def _ledger(client: httpx.Client, count: int) -> list[dict[str, Any]]:
    """The ledger's rows once it holds ``count`` (it is written in the background)."""
    deadline = time.monotonic() + 10
    while True:
        rows = client.get("/admin/requests", params={"limit": 500}, headers=ADMIN).json()["data"]
        if len(rows) >= count or time.monotonic() > deadline:
            assert len(rows) == count, rows
            return rows  # type: ignore[no-any-return]
        time.sleep(0.05)


# --- signing in and out ------------------------------------------------------------------


def test_the_admin_key_signs_in_with_a_strict_http_only_cookie(keyed: Keyed) -> None:
    reply = _login(keyed.client)
    assert reply.status_code == 200
    assert reply.json() == {"object": "session", "signed_in": True, "expires_in_s": 43200,
                            "role": "admin"}
    raw = reply.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in raw.split(";")[1:]}
    assert attributes == {"max-age", "path", "httponly", "samesite"}  # no Secure over http
    morsel = _cookie(reply)[SESSION_COOKIE]
    assert morsel["max-age"] == "43200" and morsel["path"] == "/"
    assert morsel["samesite"] == "Strict" and morsel["httponly"] is True
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", morsel.value)
    assert _session(keyed.client) != morsel.value
    assert reply.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("headers", [{"X-Forwarded-Proto": "https"},
                                     {"X-Forwarded-Proto": "HTTPS, http"}])
def test_over_https_the_cookie_is_secure(keyed: Keyed, headers: dict[str, str]) -> None:
    reply = _login(keyed.client, **headers)
    assert reply.status_code == 200
    assert "; Secure" in reply.headers["set-cookie"]


def test_a_form_post_signs_in_and_goes_back_to_the_page(keyed: Keyed) -> None:
    reply = _forgetting(keyed.client, keyed.client.post("/dashboard/login",
                                                        data={"key": ADMIN_KEY}))
    assert reply.status_code == 303 and reply.headers["location"] == "/dashboard"
    session = _cookie(reply)[SESSION_COOKIE].value
    assert keyed.client.get("/admin/keys", headers=_with(session)).status_code == 200


@pytest.mark.parametrize("body", [{"key": "wrong"}, {"key": ADMIN_KEY + "x"}, {"key": ""},
                                  {"key": KEY_ALL}, {"key": None}, {}, {"key": ["x"]}])
def test_anything_but_the_admin_key_is_the_same_401_without_a_cookie(
    keyed: Keyed, body: dict[str, Any]
) -> None:
    reply = keyed.client.post("/dashboard/login", json=body)
    assert reply.status_code == 401
    assert "set-cookie" not in reply.headers
    assert reply.json()["error"]["message"] == "Sign-in failed."
    assert reply.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    form = keyed.client.post("/dashboard/login", data={"key": "wrong"})
    assert form.status_code == 401 and form.json() == reply.json()
    assert not keyed.client.cookies


def test_repeated_failures_pause_sign_in_from_the_address(keyed: Keyed) -> None:
    for _ in range(MAX_FAILURES - 1):
        assert _login(keyed.client, "wrong").status_code == 401
    assert _login(keyed.client).status_code == 200  # a success forgets the failures
    for _ in range(MAX_FAILURES):
        assert _login(keyed.client, "wrong").status_code == 401
    refused = _login(keyed.client)  # the right key too, until the window has passed
    assert refused.status_code == 429, refused.text
    assert "set-cookie" not in refused.headers
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    # the API itself, with the admin key as a bearer token, is not affected
    assert keyed.client.get("/admin/keys", headers=ADMIN).status_code == 200


def test_logout_ends_the_session(keyed: Keyed) -> None:
    session = _session(keyed.client)
    assert keyed.client.get("/dashboard/session", headers=_with(session)).json()["signed_in"]
    forged = keyed.client.post("/dashboard/logout", headers=_with(session))  # a cross-site form
    assert forged.status_code == 403 and "set-cookie" not in forged.headers
    assert keyed.client.get("/admin/keys", headers=_with(session)).status_code == 200
    reply = _forgetting(keyed.client, keyed.client.post("/dashboard/logout",
                                                        headers={**_with(session), **DASHBOARD}))
    assert reply.status_code == 200 and reply.json()["signed_in"] is False
    assert _cookie(reply)[SESSION_COOKIE]["max-age"] == "0"
    assert keyed.client.get("/admin/keys", headers=_with(session)).status_code == 401
    assert not keyed.client.get("/dashboard/session", headers=_with(session)).json()["signed_in"]


def test_an_expired_or_unknown_session_is_refused(keyed: Keyed) -> None:
    session, other = _session(keyed.client), _session(keyed.client)
    table = _services(keyed.gateway).dashboard_sessions
    table[session] = time.monotonic() - 1
    assert keyed.client.get("/admin/keys", headers=_with(session)).status_code == 401
    assert session not in table  # forgotten once seen expired
    assert keyed.client.get("/admin/keys", headers=_with(other)).status_code == 200
    forged = other[:-1] + ("A" if other[-1] != "A" else "B")
    assert keyed.client.get("/admin/keys", headers=_with(forged)).status_code == 401
    assert keyed.client.get("/admin/keys", headers={"Cookie": f"{SESSION_COOKIE}="}
                            ).status_code == 401


def test_sessions_are_capped_and_the_oldest_goes_first(keyed: Keyed) -> None:
    first = _session(keyed.client)
    later = [_session(keyed.client) for _ in range(MAX_SESSIONS)]
    assert len(_services(keyed.gateway).dashboard_sessions) == MAX_SESSIONS
    assert keyed.client.get("/admin/keys", headers=_with(first)).status_code == 401
    for session in (later[0], later[-1]):
        assert keyed.client.get("/admin/keys", headers=_with(session)).status_code == 200


# --- what a session opens ----------------------------------------------------------------


def test_the_session_cookie_opens_the_admin_api_uncached(keyed: Keyed) -> None:
    assert keyed.client.get("/admin/keys").status_code == 401
    session = _session(keyed.client)
    # Among other cookies, as a browser sends them.
    cookies = {"Cookie": f"theme=dark; {SESSION_COOKIE}={session}; x=1"}
    for path in ("/admin/keys", "/admin/usage?by=key", "/admin/requests", "/admin/feedback",
                 "/admin/stats", "/admin/routes"):
        reply = keyed.client.get(path, headers=cookies)
        assert reply.status_code == 200, (path, reply.text)
        assert reply.headers["cache-control"] == "no-store"
    assert keyed.client.get("/admin/keys", headers=ADMIN).headers["cache-control"] == "no-store"
    assert keyed.client.get("/admin/keys").headers["cache-control"] == "no-store"


def test_a_change_with_a_session_needs_the_dashboard_header(keyed: Keyed) -> None:
    made = keyed.create_key(routes=["r1"])
    session = _session(keyed.client)
    refused = keyed.client.delete(f"/admin/keys/{made['id']}", headers=_with(session))
    assert refused.status_code == 403
    assert "X-Modelport-Dashboard" in refused.json()["error"]["message"]
    wrong = keyed.client.delete(f"/admin/keys/{made['id']}",
                                headers={**_with(session), "X-Modelport-Dashboard": "yes"})
    assert wrong.status_code == 403
    assert keyed.call("r1", made["key"]).status_code == 200  # not revoked
    created = keyed.client.post("/admin/keys", json={"name": "no"}, headers=_with(session))
    assert created.status_code == 403
    revoked = keyed.client.delete(f"/admin/keys/{made['id']}",
                                  headers={**_with(session), **DASHBOARD})
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert keyed.call("r1", made["key"]).status_code == 401
    audit = keyed.client.get("/admin/audit", headers=ADMIN).json()["data"]
    assert [e["actor"] for e in audit if e["action"] == "key.revoke"] == ["dashboard"]
    # The header alone opens nothing.
    assert keyed.client.delete(f"/admin/keys/{made['id']}", headers=DASHBOARD
                               ).status_code == 401


# --- the page --------------------------------------------------------------------------


def test_the_page_and_its_files_carry_the_security_headers(keyed: Keyed) -> None:
    expected = {"content-security-policy": CONTENT_SECURITY_POLICY,
                "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
                "cache-control": "no-store"}
    page = keyed.client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    for path, content_type in (("/dashboard/static/app.js", "text/javascript"),
                               ("/dashboard/static/charts.js", "text/javascript"),
                               ("/dashboard/static/style.css", "text/css"),
                               ("/dashboard/static/uplot/uPlot.iife.min.js", "text/javascript"),
                               ("/dashboard/static/uplot/uPlot.min.css", "text/css")):
        reply = keyed.client.get(path)
        assert reply.status_code == 200, path
        assert reply.headers["content-type"].startswith(content_type)
        assert {k: reply.headers[k] for k in expected} == expected
    for missing in ("/dashboard/static/index.html", "/dashboard/static/nope.js",
                    "/dashboard/static/%2e%2e/pages.py", "/dashboard/static/uplot%2f..%2fx",
                    "/dashboard/static/..%2fsessions.py"):
        reply = keyed.client.get(missing)
        assert reply.status_code == 404, missing
        assert "import" not in reply.text and "function" not in reply.text
    assert keyed.client.get("/dashboard/static/nope.js").headers["x-content-type-options"] \
        == "nosniff"
    assert {k: page.headers[k] for k in expected} == expected
    assert keyed.client.get("/dashboard/").headers["location"] == "/dashboard"


def test_the_page_has_no_inline_script_or_style_and_no_html_from_data(keyed: Keyed) -> None:
    html = keyed.client.get("/dashboard").text
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, re.S)
    assert scripts and all('src="/dashboard/static/' in attrs and not body.strip()
                           for attrs, body in scripts)
    assert "<style" not in html and " style=" not in html and "javascript:" not in html
    assert re.search(r'<form id="login-form" method="post" action="/dashboard/login"', html)
    for name in ("app.js", "charts.js"):
        script = keyed.client.get(f"/dashboard/static/{name}").text
        assert "innerHTML" not in script and "insertAdjacentHTML" not in script
        assert "eval(" not in script and "localStorage" not in script


# --- open mode ---------------------------------------------------------------------------


@pytest.fixture
def open_gateway(tmp_path: Path, upstream: FakeUpstream, env: dict[str, str],
                 sqlite_url: str) -> Iterator[httpx.Client]:
    gw = start_gateway(tmp_path, basic_config(upstream.base_url, sqlite_url), env)
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            yield client
    finally:
        gw.stop()


def test_in_open_mode_the_dashboard_signs_in_without_a_key_on_loopback_only(
    open_gateway: httpx.Client
) -> None:
    client = open_gateway
    assert client.get("/dashboard/session").json() == {
        "object": "session", "signed_in": False, "open_mode": True, "role": None}
    assert client.get("/admin/stats").status_code == 401  # the admin API itself stays shut
    session = _cookie(_forgetting(client, client.post("/dashboard/login", json={}))
                      )[SESSION_COOKIE].value
    assert client.get("/admin/stats", headers=_with(session)).status_code == 200
    for host in ("localhost:4000", "[::1]:4000", "127.0.0.1"):
        reply = _forgetting(client, client.post("/dashboard/login", json={},
                                                headers={"Host": host}))
        assert reply.status_code == 200, host
    for host in ("attacker.example", "attacker.example:4000", "127.0.0.1.nip.io", ""):
        refused = client.post("/dashboard/login", json={}, headers={"Host": host})
        assert refused.status_code == 403, host  # open mode serves loopback host names only
        assert refused.json()["error"]["code"] == "untrusted_origin"


# --- /admin/stats and /admin/routes --------------------------------------------------------


@pytest.fixture
def traffic_gateway(tmp_path: Path, upstream: FakeUpstream) -> Iterator[Keyed]:
    """r1 priced; r2's target opens its breaker on one failure and lets one request in at
    a time, with a queue."""
    store_url = f"sqlite:///{tmp_path}/ledger.db"
    config = access_config(upstream.base_url, store_url)
    config["routes"]["r1"]["targets"][0]["version"] = "m1-2026-01"
    config["routes"]["r2"]["targets"][0].update(
        max_concurrency=1, max_queue=4,
        breaker={"failures": 1, "failure_rate": None, "cooldown_s": 600})
    gw = start_gateway(tmp_path, config, access_env())
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            yield Keyed(gw, client, upstream, store_url)
    finally:
        gw.stop()


def _nearest_rank(ordered: list[float], q: float) -> float | None:
    return ordered[math.ceil(q * len(ordered)) - 1] if ordered else None


def _figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the ledger's inference requests among ``rows`` add up to."""
    rows = [r for r in rows if r["operation"] is not None]
    latencies = sorted(r["latency_ms"] for r in rows)
    errors = sum(r["status"] >= 400 for r in rows)
    return {"requests": len(rows), "errors": errors,
            "error_rate": errors / len(rows) if rows else None,
            "p50_ms": _nearest_rank(latencies, 0.5), "p99_ms": _nearest_rank(latencies, 0.99),
            "cost_usd": pytest.approx(sum(r["cost_usd"] or 0 for r in rows))}


def test_stats_count_known_traffic_in_time_buckets(traffic_gateway: Keyed) -> None:
    keyed = traffic_gateway
    for _ in range(5):
        assert keyed.call("r1", KEY_ALL, max_tokens=10).status_code == 200
    keyed.upstream.enqueue(Reply(status=500, body={"error": {"message": "boom"}}))
    assert keyed.call("r1", KEY_ALL).status_code == 502
    assert keyed.call("r1", "not-a-key").status_code == 401  # in the ledger, not inference
    rows = _ledger(keyed.client, 7)
    assert sum(r["cost_usd"] or 0 for r in rows) > 0
    assert [r["status"] for r in rows if r["operation"] is None] == [401]

    stats = keyed.client.get("/admin/stats", headers=ADMIN).json()
    assert stats["object"] == "stats" and stats["window"] == "1h"
    assert stats["bucket_s"] == 60 and stats["truncated"] is False
    assert 60 <= len(stats["data"]) <= 61
    assert stats["totals"] == _figures(rows)
    assert (stats["totals"]["requests"], stats["totals"]["errors"]) == (6, 1)
    busy = [b for b in stats["data"] if b["requests"]]
    assert sum(b["requests"] for b in busy) == 6 and sum(b["errors"] for b in busy) == 1
    assert sum(b["cost_usd"] for b in busy) == pytest.approx(stats["totals"]["cost_usd"])
    assert all(b["p50_ms"] is None and b["cost_usd"] == 0 for b in stats["data"]
               if not b["requests"])
    starts = [b["start"] for b in stats["data"]]
    assert starts == sorted(starts) and all(s.endswith(":00+00:00") for s in starts)
    assert set(stats["data"][0]) == {"start", "requests", "errors", "error_rate", "p50_ms",
                                     "p99_ms", "cost_usd"}
    for window, bucket_s, count in (("24h", 900, 96), ("7d", 3600, 168)):
        wide = keyed.client.get(f"/admin/stats?since={window}", headers=ADMIN).json()
        assert wide["bucket_s"] == bucket_s and count <= len(wide["data"]) <= count + 1
        assert wide["totals"] == stats["totals"]
    for bad in ("since=2h", "since=1h&since=24h", "until=1h"):
        assert keyed.client.get(f"/admin/stats?{bad}", headers=ADMIN).status_code == 400
    assert keyed.client.get("/admin/stats").status_code == 401


def test_routes_show_live_state_and_the_last_hour_per_target(traffic_gateway: Keyed) -> None:
    keyed = traffic_gateway
    for _ in range(3):
        assert keyed.call("r1", KEY_ALL).status_code == 200
    keyed.upstream.enqueue(Reply(status=500, body={"error": {"message": "boom"}}))
    assert keyed.call("r1", KEY_ALL).status_code == 502
    rows = _ledger(keyed.client, 4)

    routes = keyed.client.get("/admin/routes", headers=ADMIN).json()
    assert routes["object"] == "list" and routes["truncated"] is False
    by_name = {r["route"]: r for r in routes["data"]}
    assert set(by_name) == {"r1", "r2", "rdev"}
    r1 = by_name["r1"]
    assert (r1["owner"], r1["environment"], r1["strategy"]) == ("team-1", "prod", "ordered")
    (target,) = r1["targets"]
    assert target["target"] == "upstream-a/m1" and target["model_version"] == "m1-2026-01"
    assert (target["breaker"], target["in_flight"], target["queued"]) == ("closed", 0, 0)
    expected = _figures([r for r in rows if r["target"] == "upstream-a/m1"])
    assert {k: target[k] for k in expected} == expected
    assert target["requests"] == 4 and target["error_rate"] == 0.25
    assert {k: r1[k] for k in expected} == _figures(rows)
    quiet = by_name["rdev"]["targets"][0]
    assert (quiet["requests"], quiet["p50_ms"], quiet["error_rate"]) == (0, None, None)
    assert by_name["rdev"]["targets"][0]["model_version"] == "m3"


def test_routes_show_requests_in_flight_queued_and_an_open_breaker(
    traffic_gateway: Keyed
) -> None:
    keyed = traffic_gateway
    keyed.upstream.enqueue(Reply(delay_s=1.5), Reply(delay_s=0))
    replies: list[int] = []

    def call() -> None:
        with httpx.Client(base_url=keyed.gateway.url, timeout=10) as client:
            replies.append(client.post("/v1/chat/completions", json=chat("r2"),
                                       headers=bearer(KEY_ALL)).status_code)

    callers = [threading.Thread(target=call) for _ in range(2)]
    for caller in callers:
        caller.start()
    deadline = time.monotonic() + 5
    while True:
        (target,) = _route(keyed, "r2")["targets"]
        if (target["in_flight"], target["queued"]) == (1, 1) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert (target["in_flight"], target["queued"]) == (1, 1)
    assert target["max_concurrency"] == 1 and target["max_queue"] == 4
    for caller in callers:
        caller.join(10)
    assert replies == [200, 200]

    keyed.upstream.enqueue(Reply(status=500, body={"error": {"message": "boom"}}))
    assert keyed.call("r2", KEY_ALL).status_code == 502
    (target,) = _route(keyed, "r2")["targets"]
    assert (target["breaker"], target["in_flight"], target["queued"]) == ("open", 0, 0)
    assert 590 < target["retry_in_s"] <= 600


def _route(keyed: Keyed, name: str) -> dict[str, Any]:
    routes = keyed.client.get("/admin/routes", headers=ADMIN).json()["data"]
    return next(r for r in routes if r["route"] == name)  # type: ignore[no-any-return]
