"""Rate limits over real HTTP: requests and tokens per minute, concurrency, per key and per
route; refusals carry OpenAI's headers and never reach the provider.

Also home to two helpers the other access tests share: ``burst`` (N truly concurrent calls
through ``httpx.AsyncClient``) and ``eventually`` (poll until a condition holds).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from tests.integration.access_setup import (
    KEY_ALL,
    KEY_R1,
    Keyed,
    access_config,
    bearer,
    chat,
    keyed_gateway,
)

T = TypeVar("T")
DURATION = re.compile(r"^(\d+h)?(\d+m)?(\d+(\.\d+)?s|\d+ms)$")  # "20ms", "6s", "1m0s"


def burst(url: str, n: int, key: str | None, route: str = "r1",
          **extra: Any) -> list[httpx.Response]:
    """``n`` chat calls sent at the same time, each on its own connection."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=15, limits=limits) as client:
            return await asyncio.gather(*(
                client.post("/v1/chat/completions", json=chat(route, **extra),
                            headers=bearer(key))
                for _ in range(n)))

    return asyncio.run(run())


def eventually(probe: Callable[[], T | None], timeout_s: float = 5.0) -> T:
    """The first non-None answer of ``probe``, polled until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(0.05)


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in responses:
        out[r.status_code] = out.get(r.status_code, 0) + 1
    return out


def assert_rate_limited(r: httpx.Response, what: str) -> None:
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "rate_limit_exceeded"
    assert error["type"] == "rate_limit_error"
    assert what in error["message"]
    assert int(r.headers["retry-after"]) >= 1


@pytest.fixture
def limited_route(tmp_path: Path, upstream: FakeUpstream, sqlite_url: str) -> Iterator[Keyed]:
    """The keyed gateway with routes.r2.rpm = 3."""
    routes = access_config(upstream.base_url, sqlite_url)["routes"]
    routes["r2"]["rpm"] = 3
    yield from keyed_gateway(tmp_path, upstream, sqlite_url, routes=routes)


def test_rpm_10_admits_exactly_10_of_100_concurrent_requests(keyed: Keyed) -> None:
    key = keyed.create_key(rpm=10)["key"]
    responses = burst(keyed.gateway.url, 100, key)
    assert statuses(responses) == {200: 10, 429: 90}
    for r in responses:
        if r.status_code == 429:
            assert_rate_limited(r, "requests per minute")
            assert int(r.headers["retry-after"]) <= 6  # one request refills in 60/10 s
            assert r.headers["x-ratelimit-limit-requests"] == "10"
            assert r.headers["x-ratelimit-remaining-requests"] == "0"
            assert DURATION.match(r.headers["x-ratelimit-reset-requests"])
    assert len(keyed.upstream.requests) == 10, "a refused request reached the upstream"


def test_successful_responses_carry_ratelimit_headers_counting_down(keyed: Keyed) -> None:
    key = keyed.create_key(rpm=10)["key"]
    first, second = keyed.call("r1", key), keyed.call("r1", key)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "10"
    assert first.headers["x-ratelimit-remaining-requests"] == "9"
    assert second.headers["x-ratelimit-remaining-requests"] == "8"
    assert DURATION.match(first.headers["x-ratelimit-reset-requests"])
    assert "x-ratelimit-limit-tokens" not in first.headers  # no tpm on this key


def test_unlimited_key_gets_no_ratelimit_headers(keyed: Keyed) -> None:
    r = keyed.call("r1", KEY_ALL)
    assert r.status_code == 200
    assert not [h for h in r.headers if h.startswith("x-ratelimit-")]


def test_route_rpm_is_shared_by_every_key_calling_the_route(limited_route: Keyed) -> None:
    made = limited_route.create_key(name="other")["key"]
    got = [limited_route.call("r2", key).status_code for key in (KEY_ALL, made, KEY_ALL)]
    assert got == [200, 200, 200]
    for key in (made, KEY_ALL):
        r = limited_route.call("r2", key)
        assert_rate_limited(r, "requests per minute")
        assert "route" in r.json()["error"]["message"]
        assert r.headers["x-ratelimit-limit-requests"] == "3"
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
    # another route is not affected
    assert limited_route.call("r1", KEY_R1).status_code == 200
    assert len(limited_route.upstream.requests) == 4


def test_a_refusal_by_the_route_takes_nothing_from_the_keys_own_limits(
    limited_route: Keyed,
) -> None:
    key = limited_route.create_key(rpm=5)["key"]
    for _ in range(3):
        assert limited_route.call("r2", key).status_code == 200
    for _ in range(3):
        assert limited_route.call("r2", key).status_code == 429  # the route's rpm of 3
    # the key used 3 of its 5: two more calls on another route, then its own limit
    assert limited_route.call("r1", key).headers["x-ratelimit-remaining-requests"] == "1"
    assert limited_route.call("r1", key).status_code == 200
    r = limited_route.call("r1", key)
    assert_rate_limited(r, "requests per minute")
    assert "key" in r.json()["error"]["message"]


def test_max_concurrency_2_admits_2_of_6_and_releases_the_slots(keyed: Keyed) -> None:
    key = keyed.create_key(max_concurrency=2)["key"]
    keyed.upstream.enqueue(Reply(delay_s=0.5), Reply(delay_s=0.5))
    responses = burst(keyed.gateway.url, 6, key)
    assert statuses(responses) == {200: 2, 429: 4}
    for r in responses:
        if r.status_code == 429:
            assert_rate_limited(r, "concurrent requests")
    assert len(keyed.upstream.requests) == 2
    after = keyed.call("r1", key)
    assert after.status_code == 200, "the slots were not released"
    assert statuses(burst(keyed.gateway.url, 2, key)) == {200: 2}


def test_a_failed_upstream_call_releases_its_concurrency_slot(keyed: Keyed) -> None:
    key = keyed.create_key(max_concurrency=1)["key"]
    boom = Reply(status=500, body={"error": {"message": "boom"}})
    keyed.upstream.enqueue(boom, boom)
    assert keyed.call("r1", key).status_code >= 500
    assert keyed.call("r1", key, stream=True).status_code >= 500
    assert keyed.call("r1", key).status_code == 200


def test_a_stream_settles_tpm_with_the_usage_it_reported(keyed: Keyed) -> None:
    key = keyed.create_key(tpm=300)["key"]
    r = keyed.call("r1", key, stream=True, max_tokens=200)  # estimated 207
    assert r.status_code == 200 and r.headers["x-ratelimit-remaining-tokens"] == "93"
    # the fake stream reports 5 + 4 = 9 tokens: 300 - 9 - 207, plus a moment's refill
    after = keyed.call("r1", key, max_tokens=200)
    assert after.status_code == 200
    assert 84 <= int(after.headers["x-ratelimit-remaining-tokens"]) <= 87


def test_tokens_in_flight_count_against_tpm_and_refusals_carry_token_headers(
    keyed: Keyed,
) -> None:
    key = keyed.create_key(tpm=300)["key"]
    keyed.upstream.enqueue(Reply(delay_s=0.5))
    with ThreadPoolExecutor(1) as pool:
        # estimate: "hello there" is 11 chars -> 2 + 4 per message + 1 = 7; plus 200
        slow = pool.submit(keyed.call, "r1", key, max_tokens=200)
        eventually(lambda: keyed.upstream.requests or None)
        refused = keyed.call("r1", key, max_tokens=200)
        first = slow.result()
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "300"
    assert first.headers["x-ratelimit-remaining-tokens"] == "93"
    assert_rate_limited(refused, "tokens per minute")
    assert refused.headers["x-ratelimit-limit-tokens"] == "300"
    assert 93 <= int(refused.headers["x-ratelimit-remaining-tokens"]) < 207
    assert DURATION.match(refused.headers["x-ratelimit-reset-tokens"])
    assert len(keyed.upstream.requests) == 1, "a refused request reached the upstream"


def test_tpm_is_settled_to_the_actual_usage_not_the_estimate(keyed: Keyed) -> None:
    key = keyed.create_key(tpm=300)["key"]
    first = keyed.call("r1", key, max_tokens=200)  # estimated 207, used 7 + 3 = 10
    assert first.headers["x-ratelimit-remaining-tokens"] == "93"
    second = keyed.call("r1", key, max_tokens=200)
    assert second.status_code == 200, "the first estimate was never given back"
    # 300 - 10 actual - 207 estimated for this one, plus a moment's refill (5 tokens/s)
    assert 83 <= int(second.headers["x-ratelimit-remaining-tokens"]) <= 86


def test_an_estimate_above_tpm_passes_only_on_a_full_bucket(keyed: Keyed) -> None:
    key = keyed.create_key(tpm=300)["key"]
    big = keyed.call("r1", key, max_tokens=1000)
    assert big.status_code == 200, "a full bucket must admit one oversized request"
    again = keyed.call("r1", key, max_tokens=1000)
    assert_rate_limited(again, "tokens per minute")
    # 10 tokens were used; they come back at 300/60 per second
    assert again.headers["retry-after"] == "2"
    assert 290 <= int(again.headers["x-ratelimit-remaining-tokens"]) <= 292
    assert keyed.call("r1", key, max_tokens=100).status_code == 200
    assert len(keyed.upstream.requests) == 2


def test_a_stream_holds_its_concurrency_slot_until_it_ends(keyed: Keyed) -> None:
    key = keyed.create_key(max_concurrency=1)["key"]
    keyed.upstream.enqueue(Reply(stream_chunks=["a", "b", "c"], chunk_interval_s=0.15))
    with keyed.client.stream("POST", "/v1/chat/completions", json=chat("r1", stream=True),
                             headers=bearer(key)) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data: {"))
        assert_rate_limited(keyed.call("r1", key), "concurrent requests")
        rest = list(lines)
    assert "data: [DONE]" in rest
    assert keyed.call("r1", key).status_code == 200, "the stream kept its slot"
    assert len(keyed.upstream.requests) == 2


def test_a_stream_the_client_abandons_releases_its_slot(keyed: Keyed) -> None:
    key = keyed.create_key(max_concurrency=1)["key"]
    keyed.upstream.enqueue(Reply(stream_chunks=["a", "b", "c"], stall_after=1))
    with keyed.client.stream("POST", "/v1/chat/completions", json=chat("r1", stream=True),
                             headers=bearer(key)) as stream:
        lines = stream.iter_lines()  # held: dropping the iterator would close the connection
        assert next(line for line in lines if line.startswith("data: {"))
        assert keyed.call("r1", key).status_code == 429
    # the client hung up mid-stream; the slot comes back once the gateway notices
    eventually(lambda: keyed.call("r1", key).status_code == 200 or None, timeout_s=3)
