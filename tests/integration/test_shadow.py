"""Shadow traffic over HTTP: a share of a route's requests copied to another target after the
caller is answered, never returned, never delaying the caller, never charged to the caller's
key, within the shadows' own budget; each one a ledger row compared with the served answer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from tests.integration.access_setup import ADMIN_KEY, KEY_ALL, Keyed, bearer, keyed_gateway

ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
def shadow_upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def start(tmp_path: Path, upstream: FakeUpstream, shadow_upstream: FakeUpstream,
          sqlite_url: str) -> Iterator[Any]:
    opened: list[Iterator[Keyed]] = []

    def open_one(**shadow: Any) -> Keyed:
        settings = {"target": {"provider": "upstream-s", "model": "candidate",
                               "input_per_mtok": 1000.0, "output_per_mtok": 1000.0},
                    "percent": 100, "budget_usd": 10.0, **shadow}
        gen = keyed_gateway(tmp_path, upstream, sqlite_url, providers={
            "upstream-a": {"kind": "openai", "base_url": upstream.base_url,
                           "api_key": "env:UPSTREAM_A_KEY"},
            "upstream-s": {"kind": "openai", "base_url": shadow_upstream.base_url,
                           "api_key": "env:UPSTREAM_A_KEY"},
        }, routes={
            "r1": {"shadow": settings, "targets": [
                {"provider": "upstream-a", "model": "m1", "input_per_mtok": 2.0,
                 "output_per_mtok": 10.0}]},
            "r2": {"targets": [{"provider": "upstream-a", "model": "m2"}]},
        })
        opened.append(gen)
        return next(gen)

    yield open_one
    for gen in opened:
        gen.close()


def comparison(keyed: Keyed, shadows: int) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        found: dict[str, Any] = keyed.client.get("/admin/routes/r1/shadow",
                                                 headers=ADMIN).json()
        if found["shadows"] >= shadows or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_each_request_is_copied_after_the_answer_and_compared(
    start: Any, upstream: FakeUpstream, shadow_upstream: FakeUpstream
) -> None:
    keyed = start()
    shadow_upstream.enqueue(Reply(), Reply(body={
        "id": "x", "object": "chat.completion", "created": 1, "model": "candidate",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "other"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1}}), Reply(status=500))
    ids = []
    for _ in range(3):
        reply = keyed.call("r1", KEY_ALL)
        assert reply.status_code == 200 and reply.headers["x-modelport-target"] == (
            "upstream-a/m1")
        ids.append(reply.headers["x-request-id"])
    found = comparison(keyed, 3)
    assert (found["shadows"], found["matches"], found["differs"], found["errors"]) == (
        3, 1, 1, 1)
    assert found["target"] == "upstream-s/candidate" and found["match_rate"] == 0.5
    assert found["shadow"]["cost_usd"] > 0 and found["served"]["p50_ms"] is not None
    sent = [r.body for r in shadow_upstream.requests]
    assert [b["model"] for b in sent] == ["candidate"] * 3
    assert sent[0]["messages"] == upstream.requests[0].body["messages"]
    row = keyed.client.get(f"/admin/requests/{ids[0]}.shadow", headers=ADMIN).json()
    assert (row["shadow_of"], row["shadow_match"], row["key_id"]) == (ids[0], True, None)
    assert keyed.call("r2", KEY_ALL).status_code == 200
    time.sleep(0.3)
    assert len(shadow_upstream.requests) == 3  # a route without a shadow copies nothing
    metrics = keyed.client.get("/metrics", headers=ADMIN).text
    assert ('modelport_shadow_requests_total{outcome="match",route="r1",'
            'target="upstream-s/candidate"} 1.0') in metrics


def test_a_slow_shadow_leaves_the_callers_latency_alone(
    start: Any, shadow_upstream: FakeUpstream
) -> None:
    keyed = start()
    plain = []
    for _ in range(10):
        started = time.perf_counter()
        assert keyed.call("r2", KEY_ALL).status_code == 200
        plain.append(time.perf_counter() - started)
    shadow_upstream.enqueue(*(Reply(delay_s=1.0) for _ in range(10)))
    shadowed = []
    for _ in range(10):
        started = time.perf_counter()
        assert keyed.call("r1", KEY_ALL).status_code == 200
        shadowed.append(time.perf_counter() - started)
    assert statistics.median(shadowed) < statistics.median(plain) + 0.05
    assert max(shadowed) < 0.5  # no caller waited for its 1 s shadow


def test_shadows_stop_at_their_budget_and_never_charge_the_callers_key(
    start: Any, shadow_upstream: FakeUpstream
) -> None:
    keyed = start(budget_usd=0.000001)
    for _ in range(5):
        assert keyed.call("r1", KEY_ALL).status_code == 200
        time.sleep(0.05)
    assert len(shadow_upstream.requests) == 1  # the first one spent the budget
    metrics = keyed.client.get("/metrics", headers=ADMIN).text
    assert ('modelport_shadow_requests_total{outcome="over_budget",route="r1",'
            'target="upstream-s/candidate"} 4.0') in metrics
    usage = keyed.client.get("/admin/usage?by=key", headers=ADMIN).json()["data"]
    mine = next(u for u in usage if u["key"] == "cfg_all-prod")
    assert mine["requests"] == 5  # the shadows are nobody's requests


@pytest.mark.parametrize(("shadow", "expected"), [
    ({"percent": 0}, "routes.r1.shadow.percent"),
    ({"percent": 101}, "routes.r1.shadow.percent"),
    ({"budget_usd": -1}, "routes.r1.shadow.budget_usd"),
])
def test_bad_shadow_settings_are_named(tmp_path: Path, shadow: dict[str, Any],
                                       expected: str) -> None:
    from modelport.config import validate_file
    from tests.gateway import write_config

    path = write_config(tmp_path / "c.yaml", {
        "providers": {"p": {"kind": "openai", "base_url": "http://up/v1"}},
        "routes": {"r1": {"shadow": {"target": {"provider": "p", "model": "s"},
                                     "percent": 5, "budget_usd": 1, **shadow},
                          "targets": [{"provider": "p", "model": "m"}]}}})
    found = validate_file(path, {})
    assert any(p.startswith(expected) for p in found), found
