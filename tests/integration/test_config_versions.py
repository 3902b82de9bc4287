"""Config versions over HTTP: a config applied to a running server without a restart, kept as
a numbered version, compared and rolled back; a config that does not validate refused whole;
a request in flight finishing on its version; what is unchanged (providers, breakers, limits)
surviving a reload."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from modelport.api.services import LIVE_KEY, Services
from modelport.config import load_settings
from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import InProcessGateway, write_config

ADMIN_KEY = "admin-planted-secret-4c81e0aa"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
APP_KEY = "app-planted-secret-0b7d9e21"


def config(upstream: FakeUpstream, store_url: str, model: str = "m1",
           **route: Any) -> dict[str, Any]:
    return {
        "admin_key": "env:CV_ADMIN_KEY",
        "keys": {"app": {"key": "env:CV_APP_KEY"}},
        "store": {"url": store_url, "flush_interval_s": 0.05},
        "providers": {"p": {"kind": "openai", "base_url": upstream.base_url,
                            "api_key": "env:UPSTREAM_A_KEY"}},
        "routes": {
            "r1": {"targets": [{"provider": "p", "model": model}], **route},
            "r2": {"targets": [{"provider": "p", "model": "other"}]},
        },
    }


def text(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def gateway(tmp_path: Path, upstream: FakeUpstream, sqlite_url: str,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessGateway]:
    monkeypatch.setenv("UPSTREAM_A_KEY", UPSTREAM_KEY)
    monkeypatch.setenv("CV_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("CV_APP_KEY", APP_KEY)
    path = write_config(tmp_path / "modelport.yaml", config(upstream, sqlite_url))
    running = InProcessGateway(load_settings(path)).start()
    yield running
    running.stop()


def chat(gw: InProcessGateway, route: str = "r1") -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", timeout=10,
                      headers={"Authorization": f"Bearer {APP_KEY}"}, json={
        "model": route, "messages": [{"role": "user", "content": "hi"}]})


def put(gw: InProcessGateway, body: str, **params: str) -> httpx.Response:
    return httpx.put(f"{gw.url}/admin/config", content=body, params=params, timeout=10,
                     headers={**ADMIN, "Content-Type": "application/yaml"})


def services(gw: InProcessGateway) -> Services:
    current: Services = gw.server.lifespan.state[LIVE_KEY].current
    return current


def test_apply_diff_and_roll_back_restore_exactly_the_earlier_behaviour(
    gateway: InProcessGateway, upstream: FakeUpstream, sqlite_url: str
) -> None:
    first = chat(gateway)
    assert first.headers["x-modelport-target"] == "p/m1"
    v1 = first.headers["x-modelport-config-version"]

    applied = put(gateway, text(config(upstream, sqlite_url, model="m2")), reason="try m2")
    assert applied.status_code == 200, applied.text
    answer = applied.json()
    assert answer["applied"] and answer["version"]["number"] == 2
    assert answer["changes"]["routes"] == {"added": [], "removed": [], "changed": ["r1"]}
    second = chat(gateway)
    assert second.headers["x-modelport-target"] == "p/m2"
    v2 = second.headers["x-modelport-config-version"]
    assert v2 == answer["config_version"] != v1
    assert upstream.requests[-1].body["model"] == "m2"
    metrics = httpx.get(f"{gateway.url}/metrics", headers=ADMIN).text
    assert f'config_version="{v2}"' in metrics and f'config_version="{v1}"' not in metrics

    history = httpx.get(f"{gateway.url}/admin/config/versions", headers=ADMIN).json()
    assert history["current"] == 2
    assert [(v["number"], v["action"], v["config_version"], v["actor"], v["reason"])
            for v in history["data"]] == [(2, "apply", v2, "admin", "try m2"),
                                          (1, "start", v1, "modelport", "")]
    diff = httpx.get(f"{gateway.url}/admin/config/diff", params={"from": "1", "to": "2"},
                     headers=ADMIN).json()["diff"]
    assert "\n-      model: m1\n+      model: m2\n" in diff, diff
    assert diff.startswith(f"--- version 1 ({v1})\n+++ version 2 ({v2})\n")

    back = httpx.post(f"{gateway.url}/admin/config/rollback", headers=ADMIN,
                      json={"version": 1, "reason": "m2 is worse"})
    assert back.status_code == 200, back.text
    assert back.json()["version"]["restores"] == 1
    third = chat(gateway)
    assert third.headers["x-modelport-target"] == "p/m1"
    assert third.headers["x-modelport-config-version"] == v1  # the same hash as before
    rolled = httpx.get(f"{gateway.url}/admin/config/versions/3", headers=ADMIN).json()
    assert (rolled["action"], rolled["restores"], rolled["reason"]) == (
        "rollback", 1, "m2 is worse")
    assert rolled["text"] == httpx.get(f"{gateway.url}/admin/config/versions/1",
                                       headers=ADMIN).json()["text"]
    assert UPSTREAM_KEY not in rolled["text"] and ADMIN_KEY not in rolled["text"]
    by_hash = httpx.get(f"{gateway.url}/admin/config/versions/{v2[:8]}", headers=ADMIN)
    assert by_hash.json()["number"] == 2

    # the ledger names the version that served each request
    deadline = time.monotonic() + 5
    while True:
        rows = httpx.get(f"{gateway.url}/admin/requests", headers=ADMIN).json()["data"]
        if len(rows) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [r["config_version"] for r in rows[:3]] == [v1, v2, v1]
    audit = httpx.get(f"{gateway.url}/admin/audit", headers=ADMIN).json()["data"]
    assert {"config.start", "config.apply", "config.rollback"} <= {e["action"] for e in audit}


def test_a_config_that_does_not_validate_is_refused_whole_with_every_problem(
    gateway: InProcessGateway, upstream: FakeUpstream, sqlite_url: str
) -> None:
    before = chat(gateway).headers["x-modelport-config-version"]
    bad = config(upstream, sqlite_url, model="m2", fallback_routes=["r2"])
    bad["routes"]["r2"]["fallback_routes"] = ["r1"]  # a cycle
    bad["routes"]["r2"]["targets"][0]["canary"] = {"percent": 150}
    bad["routes"]["r3"] = {"targets": [{"provider": "nosuch", "model": "x"}]}
    refused = put(gateway, text(bad))
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "config_invalid"
    problems = "\n".join(error["problems"])
    assert "routes.r3.targets[0].provider" in problems or "routes.r3" in problems, problems
    assert "routes.r2.targets[0].canary.percent" in problems, problems
    after = chat(gateway)
    assert after.headers["x-modelport-config-version"] == before
    assert after.headers["x-modelport-target"] == "p/m1"  # nothing half-applied
    versions = httpx.get(f"{gateway.url}/admin/config/versions", headers=ADMIN).json()
    assert [v["number"] for v in versions["data"]] == [1]

    cycle = config(upstream, sqlite_url, fallback_routes=["r2"])
    cycle["routes"]["r2"]["fallback_routes"] = ["r1"]
    assert "cycle" in " ".join(put(gateway, text(cycle)).json()["error"]["problems"])
    assert put(gateway, "routes: [").json()["error"]["code"] == "config_invalid"
    assert put(gateway, "").status_code == 400


def test_what_only_a_restart_can_change_is_refused_by_name(
    gateway: InProcessGateway, upstream: FakeUpstream, tmp_path: Path
) -> None:
    moved = config(upstream, f"sqlite:///{tmp_path / 'other.db'}")
    refused = put(gateway, text(moved))
    assert refused.status_code == 400
    assert refused.json()["error"]["problems"] == [
        "store: differs from the running config, and takes a restart to change (the "
        "running config was kept)"]


def test_unchanged_and_dry_run_keep_no_version(
    gateway: InProcessGateway, upstream: FakeUpstream, sqlite_url: str
) -> None:
    same = put(gateway, text(config(upstream, sqlite_url))).json()
    assert same["unchanged"] and not same["applied"]
    dry = put(gateway, text(config(upstream, sqlite_url, model="m3")), dry_run="true").json()
    assert dry["dry_run"] and not dry["applied"]
    assert dry["changes"]["routes"]["changed"] == ["r1"]
    assert chat(gateway).headers["x-modelport-target"] == "p/m1"
    as_json = httpx.put(f"{gateway.url}/admin/config", headers=ADMIN, json={
        "text": text(config(upstream, sqlite_url, model="m3")), "reason": "json"})
    assert as_json.json()["version"]["reason"] == "json"
    assert chat(gateway).headers["x-modelport-target"] == "p/m3"


def test_the_admin_key_is_needed(gateway: InProcessGateway, upstream: FakeUpstream,
                                 sqlite_url: str) -> None:
    body = text(config(upstream, sqlite_url, model="m9"))
    assert httpx.put(f"{gateway.url}/admin/config", content=body).status_code == 401
    assert httpx.get(f"{gateway.url}/admin/config/versions").status_code == 401
    assert httpx.post(f"{gateway.url}/admin/config/rollback",
                      json={"version": 1}).status_code == 401
    assert chat(gateway).headers["x-modelport-target"] == "p/m1"
    missing = httpx.post(f"{gateway.url}/admin/config/rollback", headers=ADMIN,
                         json={"version": 99})
    assert missing.status_code == 404


def test_a_request_in_flight_finishes_on_the_version_it_started_with(
    gateway: InProcessGateway, upstream: FakeUpstream, sqlite_url: str
) -> None:
    v1 = chat(gateway).headers["x-modelport-config-version"]
    upstream.enqueue(Reply(delay_s=1.0))
    slow: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: slow.append(chat(gateway)))
    thread.start()
    time.sleep(0.3)
    assert put(gateway, text(config(upstream, sqlite_url, model="m2"))).status_code == 200
    fast = chat(gateway)
    thread.join(10)
    assert fast.headers["x-modelport-target"] == "p/m2"
    assert slow[0].status_code == 200
    assert slow[0].headers["x-modelport-config-version"] == v1
    assert slow[0].headers["x-modelport-target"] == "p/m1"


def test_unchanged_providers_breakers_and_limits_survive_a_reload(
    gateway: InProcessGateway, upstream: FakeUpstream, sqlite_url: str, tmp_path: Path
) -> None:
    limited = config(upstream, sqlite_url, rpm=3)
    limited["routes"]["r2"]["targets"][0]["breaker"] = {
        "failures": 2, "failure_rate": None, "cooldown_s": 60}
    applied = put(gateway, text(limited))
    assert applied.status_code == 200, applied.text
    provider = services(gateway).providers["p"]
    upstream.enqueue(Reply(status=500), Reply(status=500))
    assert chat(gateway, "r2").status_code >= 500
    assert chat(gateway, "r2").status_code >= 500
    assert chat(gateway, "r2").status_code == 503  # the breaker is open now
    for _ in range(3):
        assert chat(gateway, "r1").status_code == 200

    limited["routes"]["r3"] = {"targets": [{"provider": "p", "model": "new"}]}
    answer = put(gateway, text(limited)).json()
    assert answer["changes"]["routes"]["added"] == ["r3"]
    assert services(gateway).providers["p"] is provider  # its connection pool too
    assert chat(gateway, "r1").status_code == 429  # the minute's 3 requests are spent
    assert chat(gateway, "r2").status_code == 503  # still open
    assert chat(gateway, "r3").status_code == 200

    limited["routes"]["r2"]["targets"][0]["breaker"]["cooldown_s"] = 30
    put(gateway, text(limited))
    assert chat(gateway, "r2").status_code == 200  # a changed target starts afresh

    limited["providers"]["p"]["timeout_s"] = 30
    put(gateway, text(limited))
    fresh = services(gateway).providers["p"]
    assert fresh is not provider
    assert chat(gateway, "r3").status_code == 200
    deadline = time.monotonic() + 5
    while getattr(provider, "_session", None) is not None:  # closed once drained
        assert time.monotonic() < deadline, "the replaced provider was not closed"
        time.sleep(0.05)


def test_a_version_the_store_cannot_keep_is_not_applied(
    gateway: InProcessGateway, upstream: FakeUpstream, sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelport.errors import ServiceUnavailable

    def down(**_: Any) -> None:
        raise ServiceUnavailable("The store is unavailable.")

    store = services(gateway).config_store
    assert store is not None
    monkeypatch.setattr(store, "record", down)
    changed = config(upstream, sqlite_url, model="m2")
    changed["providers"]["q"] = {"kind": "openai", "base_url": upstream.base_url}
    refused = put(gateway, text(changed))
    assert refused.status_code == 503
    assert refused.json()["error"]["message"] == "The store is unavailable."
    assert chat(gateway).headers["x-modelport-target"] == "p/m1"
    assert "q" not in services(gateway).providers
