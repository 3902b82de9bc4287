"""Overload: a target's concurrency cap and bounded queue answer a spike at once, in priority
order and fairly between callers, and leave the gateway healthy afterwards.

Every test sends truly concurrent requests (each on its own connection) to route ``r``, whose
target ``a/m1`` sits on one fake provider.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import start_gateway

A = "a/m1"
KA, KB = "cfgkey-tenant-a-61f0d2", "cfgkey-tenant-b-93c7e4"
Timed = tuple[httpx.Response, float]
Send = tuple[str, dict[str, str]]  # the message's content, the request's headers
Serve = Callable[..., str]


@pytest.fixture
def serve(tmp_path: Path, sqlite_url: str, upstream: FakeUpstream) -> Iterator[Serve]:
    """Start a gateway whose route ``r`` has target a/m1 with ``target`` settings (plus any
    ``extra_targets``); ``keys`` turns authentication on with keys ka and kb. Returns its URL."""
    started = []

    def start(target: dict[str, Any], *, extra_targets: list[dict[str, Any]] | None = None,
              providers: dict[str, str] | None = None, keys: bool = False) -> str:
        urls = {"a": upstream.base_url, **(providers or {})}
        config: dict[str, Any] = {
            "store": {"url": sqlite_url, "flush_interval_s": 0.05},
            "providers": {name: {"kind": "openai", "base_url": url} for name, url in urls.items()},
            "routes": {"r": {"targets": [{"provider": "a", "model": "m1", **target},
                                         *(extra_targets or [])]}},
        }
        if keys:
            config["keys"] = {"ka": {"key": "env:KA"}, "kb": {"key": "env:KB"}}
        gw = start_gateway(tmp_path, config, {"KA": KA, "KB": KB})
        started.append(gw)
        return gw.url

    yield start
    for gw in started:
        gw.stop()


def chat(content: str = "hi") -> dict[str, Any]:
    return {"model": "r", "messages": [{"role": "user", "content": content}]}


async def _timed(client: httpx.AsyncClient, content: str, headers: dict[str, str]) -> Timed:
    started = time.monotonic()
    r = await client.post("/v1/chat/completions", json=chat(content), headers=headers)
    return r, time.monotonic() - started


def send_all(url: str, sends: list[Send], gap_s: float = 0.0) -> list[Timed]:
    """Send every request concurrently, ``gap_s`` apart (0: all at once), each on its own
    connection; the responses and times in the order sent."""

    async def run() -> list[Timed]:
        limits = httpx.Limits(max_connections=len(sends), max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=15, limits=limits) as client:
            tasks = []
            for content, headers in sends:
                tasks.append(asyncio.create_task(_timed(client, content, headers)))
                if gap_s:
                    await asyncio.sleep(gap_s)
            return list(await asyncio.gather(*tasks))

    return asyncio.run(run())


def refused(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-modelport-attempts"] == "0"


def contents(fake: FakeUpstream) -> list[str]:
    return [seen.body["messages"][0]["content"] for seen in fake.requests]


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        sample, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', sample))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def test_a_spike_of_20_on_2_slots_and_2_queue_places_serves_4_and_refuses_16_at_once(
    serve: Serve, upstream: FakeUpstream
) -> None:
    url = serve({"max_concurrency": 2, "max_queue": 2})
    upstream.enqueue(*[Reply(delay_s=0.5)] * 20)
    results = send_all(url, [("spike", {})] * 20)

    served = [(r, t) for r, t in results if r.status_code == 200]
    refusals = [(r, t) for r, t in results if r.status_code != 200]
    assert len(served) == 4 and len(refusals) == 16
    for r, took in refusals:
        code = "over_share" if r.status_code == 429 else "overloaded"
        refused(r, r.status_code, code)
        assert took < 0.1, f"a refusal took {took:.3f}s"
    waves = sorted(round(t / 0.5) for _, t in served)
    assert waves == [1, 1, 2, 2], [t for _, t in served]  # two ran at once, two queued
    assert len(upstream.requests) == 4

    with httpx.Client(base_url=url, timeout=5) as client:
        assert client.get("/health/ready").status_code == 200
        r = client.post("/v1/chat/completions", json=chat())
        assert r.status_code == 200 and r.headers["x-modelport-target"] == A
        scrape = client.get("/metrics").text
    assert metric(scrape, "modelport_queue_depth", route="r", target=A) == 0
    assert metric(scrape, "modelport_target_in_flight", route="r", target=A) == 0
    assert metric(scrape, "modelport_queue_wait_seconds_count", route="r", target=A) == 2
    waited = metric(scrape, "modelport_queue_wait_seconds_sum", route="r", target=A)
    assert waited is not None and 0.8 < waited < 1.5  # two waits of about 0.5 s


def test_interactive_requests_queued_after_batch_ones_are_served_first(
    serve: Serve, upstream: FakeUpstream
) -> None:
    url = serve({"max_concurrency": 1, "max_queue": 5})
    upstream.enqueue(Reply(delay_s=0.4))
    batch, interactive = {"X-Priority": "batch"}, {"X-Priority": "interactive"}
    results = send_all(url, [("hold", {}), ("batch-1", batch), ("batch-2", batch),
                             ("interactive-1", interactive), ("interactive-2", interactive)],
                       gap_s=0.05)
    assert [r.status_code for r, _ in results] == [200] * 5
    assert contents(upstream) == ["hold", "interactive-1", "interactive-2", "batch-1", "batch-2"]


def test_an_unknown_priority_is_400_before_any_upstream_call(
    serve: Serve, upstream: FakeUpstream
) -> None:
    url = serve({"max_concurrency": 1})
    r = httpx.post(f"{url}/v1/chat/completions", json=chat(), headers={"X-Priority": "urgent"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and error["param"] == "X-Priority"
    assert upstream.requests == []


def test_a_caller_over_its_fair_share_of_a_full_queue_gets_429_and_others_503(
    serve: Serve, upstream: FakeUpstream
) -> None:
    url = serve({"max_concurrency": 1, "max_queue": 4}, keys=True)
    upstream.enqueue(Reply(delay_s=0.4))
    ka, kb = {"Authorization": f"Bearer {KA}"}, {"Authorization": f"Bearer {KB}"}
    results = send_all(url, [("a-run", ka), ("a-1", ka), ("a-2", ka), ("a-3", ka),
                             ("b-1", kb), ("a-extra", ka), ("b-extra", kb)], gap_s=0.04)
    (a_extra, a_took), (b_extra, b_took) = results[5], results[6]
    refused(a_extra, 429, "over_share")
    refused(b_extra, 503, "overloaded")
    assert a_took < 0.1 and b_took < 0.1
    assert [r.status_code for r, _ in results[:5]] == [200] * 5
    # the queue is served in turns between callers: b's one request does not wait for a's three
    assert contents(upstream) == ["a-run", "a-1", "b-1", "a-2", "a-3"]


def test_a_request_whose_expected_wait_outlasts_its_deadline_is_refused_at_once(
    serve: Serve, upstream: FakeUpstream
) -> None:
    url = serve({"max_concurrency": 1, "max_queue": 5})
    upstream.enqueue(Reply(delay_s=0.3), Reply(delay_s=0.3))
    with httpx.Client(base_url=url, timeout=5) as client:  # one release teaches the hold time
        assert client.post("/v1/chat/completions", json=chat()).status_code == 200
    results = send_all(url, [("hold", {}), ("hurried", {"X-Request-Timeout": "0.2"}),
                             ("patient", {"X-Request-Timeout": "5"})], gap_s=0.05)
    (hold, _), (hurried, took), (patient, _) = results
    refused(hurried, 503, "overloaded")
    assert took < 0.1
    assert hold.status_code == 200 and patient.status_code == 200
    assert contents(upstream) == ["hi", "hold", "patient"]


def test_a_waiter_not_served_within_the_queue_timeout_gets_503(
    serve: Serve, upstream: FakeUpstream
) -> None:
    url = serve({"max_concurrency": 1, "max_queue": 1, "queue_timeout_s": 0.2})
    upstream.enqueue(Reply(delay_s=0.6))
    (hold, _), (waiter, took) = send_all(url, [("hold", {}), ("waiter", {})], gap_s=0.05)
    assert hold.status_code == 200
    refused(waiter, 503, "overloaded")
    assert 0.2 <= took < 0.4
    assert contents(upstream) == ["hold"]


def test_a_target_whose_gate_refuses_is_skipped_for_the_next_one(
    serve: Serve, upstream: FakeUpstream
) -> None:
    other = FakeUpstream().start()
    try:
        url = serve({"max_concurrency": 1}, providers={"b": other.base_url},
                    extra_targets=[{"provider": "b", "model": "m2"}])
        upstream.enqueue(Reply(delay_s=0.3))
        (first, _), (second, took) = send_all(url, [("first", {}), ("second", {})], gap_s=0.05)
    finally:
        other.stop()
    assert first.headers["x-modelport-target"] == A
    assert second.status_code == 200 and second.headers["x-modelport-target"] == "b/m2"
    assert second.headers["x-modelport-attempts"] == "1"
    assert took < 0.2
    assert contents(upstream) == ["first"] and contents(other) == ["second"]


def test_a_batch_key_cannot_jump_the_queue_with_an_interactive_header(
    tmp_path: Path, sqlite_url: str
) -> None:
    from tests.integration.access_setup import ADMIN_KEY, access_config, access_env, bearer

    slow = FakeUpstream().start()
    try:
        config = access_config(slow.base_url, sqlite_url)
        config["routes"]["r2"]["targets"][0].update({"max_concurrency": 1, "max_queue": 5})
        gw = start_gateway(tmp_path, config, access_env())
        try:
            with httpx.Client(base_url=gw.url, timeout=10) as c:
                batch = c.post("/admin/keys", headers=bearer(ADMIN_KEY),
                               json={"name": "nightly", "priority": "batch"}).json()
                assert batch["priority"] == "batch"
                online = c.post("/admin/keys", headers=bearer(ADMIN_KEY),
                                json={"name": "web"}).json()
            slow.enqueue(*[Reply(delay_s=0.3) for _ in range(4)])
            order: list[str] = []

            def call(who: str, key: str, pause: float) -> None:
                time.sleep(pause)
                r = httpx.post(f"{gw.url}/v1/chat/completions", timeout=10,
                               json={"model": "r2", "messages": []},
                               headers={**bearer(key), "X-Priority": "interactive"})
                assert r.status_code == 200
                order.append(who)

            with ThreadPoolExecutor(4) as pool:
                jobs = [pool.submit(call, "first", online["key"], 0.0),
                        pool.submit(call, "batch", batch["key"], 0.1),
                        pool.submit(call, "batch", batch["key"], 0.12),
                        pool.submit(call, "online", online["key"], 0.2)]
                for job in jobs:
                    job.result()
        finally:
            gw.stop()
    finally:
        slow.stop()
    assert order[0] == "first" and order[1] == "online", order
