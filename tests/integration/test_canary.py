"""Canaries over HTTP: a share of traffic to the canary, a canary that fails 30% of its calls
rolled back within its window by itself (and stays back after a restart) while a healthy one
keeps its share, callers kept on one side when sticky, and the operator's promote, abort and
resume."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream, Reply
from tests.integration.access_setup import (
    ADMIN_KEY,
    KEY_ALL,
    KEY_R1,
    Keyed,
    bearer,
    keyed_gateway,
)

ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
def canary_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


def config(stable: FakeUpstream, canary: FakeUpstream, **canary_settings: Any
           ) -> dict[str, Any]:
    settings = {"percent": 50, "window_s": 30, "slo": {"max_error_rate": 0.1,
                                                       "min_requests": 10},
                **canary_settings}
    return {
        "providers": {
            "upstream-a": {"kind": "openai", "base_url": stable.base_url,
                           "api_key": "env:UPSTREAM_A_KEY"},
            "upstream-c": {"kind": "openai", "base_url": canary.base_url,
                           "api_key": "env:UPSTREAM_A_KEY"},
        },
        "routes": {"r1": {"targets": [
            {"provider": "upstream-a", "model": "stable"},
            {"provider": "upstream-c", "model": "candidate", "canary": settings},
        ]}},
    }


@pytest.fixture
def start(tmp_path: Path, upstream: FakeUpstream, canary_upstream: FakeUpstream,
          sqlite_url: str) -> Iterator[Any]:
    opened: list[Iterator[Keyed]] = []

    def open_one(**canary_settings: Any) -> Keyed:
        gen = keyed_gateway(tmp_path, upstream, sqlite_url,
                            **config(upstream, canary_upstream, **canary_settings))
        opened.append(gen)
        return next(gen)

    yield open_one
    for gen in opened:
        gen.close()


def canary_view(keyed: Keyed) -> dict[str, Any]:
    routes = keyed.client.get("/admin/routes", headers=ADMIN).json()["data"]
    view: dict[str, Any] = next(r for r in routes if r["route"] == "r1")["canary"]
    return view


def test_a_canary_failing_30_percent_is_rolled_back_within_its_window(
    start: Any, canary_upstream: FakeUpstream
) -> None:
    canary_upstream.enqueue(*(Reply(status=500) if i % 10 < 3 else Reply()
                              for i in range(400)))
    keyed = start()
    started = time.monotonic()
    replies = [keyed.call("r1", KEY_ALL) for _ in range(80)]
    assert all(r.status_code == 200 for r in replies)  # a failed canary call falls over
    view = canary_view(keyed)
    assert view["state"] == "rolled_back", view
    assert "error rate" in view["reason"] and time.monotonic() - started < 30
    reached = len(canary_upstream.requests)
    for _ in range(30):
        assert keyed.call("r1", KEY_ALL).headers["x-modelport-target"] == "upstream-a/stable"
    assert len(canary_upstream.requests) == reached  # no traffic after the rollback
    metrics = keyed.client.get("/metrics", headers=ADMIN).text
    assert ('modelport_canary_rollbacks_total{route="r1",target="upstream-c/candidate"} 1.0'
            in metrics)
    assert 'modelport_canary_state{route="r1",target="upstream-c/candidate"} 1.0' in metrics
    deadline = time.monotonic() + 5
    while not [e for e in keyed.client.get("/admin/audit", headers=ADMIN).json()["data"]
               if e["action"] == "canary.rolled_back"]:
        assert time.monotonic() < deadline, "the rollback was not audited"
        time.sleep(0.05)


def test_a_rolled_back_canary_stays_back_after_a_restart(
    start: Any, canary_upstream: FakeUpstream
) -> None:
    canary_upstream.enqueue(*(Reply(status=500) for _ in range(100)))
    first = start()
    for _ in range(40):
        first.call("r1", KEY_ALL)
    assert canary_view(first)["state"] == "rolled_back"
    deadline = time.monotonic() + 5
    while not [e for e in first.client.get("/admin/audit", headers=ADMIN).json()["data"]
               if e["action"] == "canary.rolled_back"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first.gateway.stop()
    second = start()
    assert canary_view(second)["state"] == "rolled_back"
    reached = len(canary_upstream.requests)
    for _ in range(20):
        second.call("r1", KEY_ALL)
    assert len(canary_upstream.requests) == reached


def test_a_healthy_canary_keeps_its_share(start: Any, upstream: FakeUpstream,
                                         canary_upstream: FakeUpstream) -> None:
    keyed = start()
    targets = [keyed.call("r1", KEY_ALL).headers["x-modelport-target"] for _ in range(100)]
    assert canary_view(keyed)["state"] == "running"
    share = targets.count("upstream-c/candidate") / len(targets)
    assert 0.3 <= share <= 0.7, share  # 50% asked; a binomial draw of 100
    assert canary_view(keyed)["canary"]["requests"] == targets.count("upstream-c/candidate")


def test_a_sticky_canary_keeps_each_caller_on_one_side(start: Any) -> None:
    keyed = start(sticky="header X-User")
    sides = {}
    for user in range(20):
        seen = {keyed.client.post("/v1/chat/completions", headers={
            **bearer(KEY_ALL), "X-User": f"user-{user}"}, json={
            "model": "r1", "messages": [{"role": "user", "content": "hi"}],
        }).headers["x-modelport-target"] for _ in range(4)}
        assert len(seen) == 1, seen
        sides[user] = seen.pop()
    assert len(set(sides.values())) == 2  # both sides have callers
    by_key = start(sticky="key", percent=50)
    for key in (KEY_ALL, KEY_R1):
        assert len({by_key.call("r1", key).headers["x-modelport-target"]
                    for _ in range(6)}) == 1


def test_the_operator_aborts_promotes_and_resumes_a_canary(start: Any) -> None:
    keyed = start()

    def act(action: str) -> dict[str, Any]:
        reply = keyed.client.post("/admin/routes/r1/canary", headers=ADMIN,
                                  json={"action": action, "reason": f"by hand: {action}"})
        assert reply.status_code == 200, reply.text
        return reply.json()  # type: ignore[no-any-return]

    def targets() -> set[str]:
        return {keyed.call("r1", KEY_ALL).headers["x-modelport-target"] for _ in range(20)}

    assert act("abort")["state"] == "aborted"
    assert targets() == {"upstream-a/stable"}
    assert act("promote")["state"] == "promoted"
    assert targets() == {"upstream-c/candidate"}
    assert act("resume")["state"] == "running"
    assert targets() == {"upstream-a/stable", "upstream-c/candidate"}
    audit = [e["action"] for e in keyed.client.get("/admin/audit", headers=ADMIN).json()["data"]]
    assert audit[:3] == ["canary.running", "canary.promoted", "canary.aborted"]
    bad = keyed.client.post("/admin/routes/r1/canary", headers=ADMIN, json={"action": "x"})
    assert bad.status_code == 400
    none = keyed.client.post("/admin/routes/nosuch/canary", headers=ADMIN,
                             json={"action": "abort"})
    assert none.status_code == 400 and none.json()["error"]["param"] == "route"


def test_the_canary_settings_are_checked_with_their_key_paths(tmp_path: Path) -> None:
    from modelport.config import validate_file
    from tests.gateway import write_config

    def problems(targets: list[dict[str, Any]]) -> list[str]:
        path = write_config(tmp_path / "c.yaml", {
            "providers": {"p": {"kind": "openai", "base_url": "http://up/v1"}},
            "routes": {"r": {"targets": targets}}})
        return validate_file(path, {"UPSTREAM_A_KEY": UPSTREAM_KEY})

    stable = {"provider": "p", "model": "s"}
    for percent in (0, 150):
        found = problems([stable, {"provider": "p", "model": "c",
                                   "canary": {"percent": percent}}])
        assert any(p.startswith("routes.r.targets[1].canary.percent") for p in found), found
    assert "routes.r.targets[0].canary: a canary needs a stable target beside it in the " \
           "route" in problems([{"provider": "p", "model": "c", "canary": {"percent": 5}}])
    two = problems([stable, {"provider": "p", "model": "c", "canary": {"percent": 5}},
                    {"provider": "p", "model": "d", "canary": {"percent": 5}}])
    assert "routes.r.targets[2].canary: a route has one canary at a time" in two
    sticky = problems([stable, {"provider": "p", "model": "c",
                                "canary": {"percent": 5, "sticky": "cookie"}}])
    assert any(p.startswith("routes.r.targets[1].canary.sticky") for p in sticky), sticky


def test_no_request_is_lost_while_the_canary_is_judged(start: Any,
                                                       canary_upstream: FakeUpstream) -> None:
    """Concurrent callers while a failing canary is rolled back: every answer is a 200."""
    import concurrent.futures

    canary_upstream.enqueue(*(Reply(status=503) for _ in range(200)))
    keyed = start()
    url = f"{keyed.gateway.url}/v1/chat/completions"

    def call(_: int) -> int:
        return httpx.post(url, headers=bearer(KEY_ALL), json={
            "model": "r1", "messages": [{"role": "user", "content": "hi"}]}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(call, range(120)))
    assert statuses == [200] * 120
    assert canary_view(keyed)["state"] == "rolled_back"
