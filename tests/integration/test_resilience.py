"""Fault injection: each upstream failure ends in the right answer, from the right target,
after the right number of upstream calls, in bounded time.

Most tests use route ``r`` with two targets on two fake providers, tried in order with the
default retries (one attempt per target): ``a/m1`` first, ``b/m2`` second. A third provider
``c`` serves the fallback route ``safe``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.faults import FaultyUpstream, RawReply, not_http, truncated_body
from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import free_port, start_gateway

A, B, C = "a/m1", "b/m2", "c/m3"
Serve = Callable[..., httpx.Client]


def chat(content: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "r", "messages": [{"role": "user", "content": content}], **extra}


def error_reply(status: int, code: str | None = None, **headers: str) -> Reply:
    return Reply(status=status, headers=headers, body={"error": {
        "message": f"upstream says {status}", "type": "invalid_request_error", "param": None,
        "code": code}})


@pytest.fixture
def a() -> Iterator[FaultyUpstream]:
    fake = FaultyUpstream()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def b() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def c() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def serve(
    tmp_path: Path, sqlite_url: str, a: FaultyUpstream, b: FakeUpstream, c: FakeUpstream
) -> Iterator[Serve]:
    """Start a gateway with the given routes over providers a, b and c; ``a_url`` replaces
    provider a's address (a closed port, say), ``a_timeout_s`` its own timeout."""
    opened: list[tuple[Any, httpx.Client]] = []

    def start(
        routes: dict[str, Any], *, a_url: str | None = None, a_timeout_s: float = 10
    ) -> httpx.Client:
        urls = {"a": a_url or a.base_url, "b": b.base_url, "c": c.base_url}
        config: dict[str, Any] = {
            "store": {"url": sqlite_url, "flush_interval_s": 0.05},
            "providers": {name: {"kind": "openai", "base_url": url, "timeout_s": 10}
                          for name, url in urls.items()},
            "routes": routes,
        }
        config["providers"]["a"]["timeout_s"] = a_timeout_s
        gw = start_gateway(tmp_path, config, {})
        client = httpx.Client(base_url=gw.url, timeout=10)
        opened.append((gw, client))
        return client

    yield start
    for gw, client in opened:
        client.close()
        gw.stop()


def two_targets(a_extra: dict[str, Any] | None = None, **route: Any) -> dict[str, Any]:
    """Route ``r``: a/m1 then b/m2, ordered; plus ``safe`` on c/m3 for fallbacks."""
    return {
        "r": {"targets": [{"provider": "a", "model": "m1", **(a_extra or {})},
                          {"provider": "b", "model": "m2"}], **route},
        "safe": {"targets": [{"provider": "c", "model": "m3"}]},
    }


def one_target(a_extra: dict[str, Any] | None = None, **route: Any) -> dict[str, Any]:
    return {"r": {"targets": [{"provider": "a", "model": "m1", **(a_extra or {})}], **route}}


def timed_post(
    client: httpx.Client, body: dict[str, Any], **headers: str
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = client.post("/v1/chat/completions", json=body, headers=headers)
    return r, time.monotonic() - started


def check(r: httpx.Response, status: int, target: str, attempts: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["x-modelport-target"] == target
    assert r.headers["x-modelport-attempts"] == str(attempts)


def check_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return error


def calls(*fakes: FakeUpstream) -> list[int]:
    return [len(f.requests) for f in fakes]


def sse_events(text: str) -> list[str]:
    return [e.removeprefix("data: ") for e in text.strip().split("\n\n") if e]


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus scrape, or None when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        sample, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', sample))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


# --- one fault on the first target, the second one answers ---------------------------------

FAULTS = [
    # id, fault on a, status, target, attempts, calls to a, calls to b, seconds at most
    ("latency_under_the_timeout", Reply(delay_s=0.1), 200, A, 1, 1, 0, 1.0),
    ("timeout", Reply(delay_s=2), 200, B, 2, 1, 1, 1.5),
    ("429_with_retry_after", error_reply(429, **{"Retry-After": "5"}), 200, B, 2, 1, 1, 1.0),
    ("429_without_retry_after", error_reply(429), 200, B, 2, 1, 1, 1.0),
    ("500", error_reply(500), 200, B, 2, 1, 1, 1.0),
    ("503", error_reply(503), 200, B, 2, 1, 1, 1.0),
    ("401_our_key_refused", error_reply(401), 200, B, 2, 1, 1, 1.0),
    ("connection_reset", Reply(drop_connection=True), 200, B, 2, 1, 1, 1.0),
    ("truncated_body", truncated_body(), 200, B, 2, 1, 1, 1.0),
    ("not_http", not_http(), 200, B, 2, 1, 1, 1.0),
    ("context_length_exceeded", error_reply(400, "context_length_exceeded"), 200, B, 2, 1, 1,
     1.0),
]


@pytest.mark.parametrize(
    ("fault", "status", "target", "attempts", "a_calls", "b_calls", "max_s"),
    [pytest.param(*row[1:], id=row[0]) for row in FAULTS],
)
def test_a_fault_on_the_first_target_is_answered_by_the_right_target_in_bounded_time(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream, fault: Reply | RawReply, status: int,
    target: str, attempts: int, a_calls: int, b_calls: int, max_s: float,
) -> None:
    client = serve(two_targets(timeout_s=0.3))
    a.enqueue(fault)
    r, took = timed_post(client, chat())
    check(r, status, target, attempts)
    assert r.json()["choices"][0]["message"]["content"] == "Hello from the fake"
    assert r.json()["model"] == target.split("/")[1]
    assert calls(a, b) == [a_calls, b_calls]
    assert took < max_s


def test_latency_under_the_timeout_is_waited_for(serve: Serve, a: FaultyUpstream) -> None:
    client = serve(two_targets(timeout_s=0.5))
    a.enqueue(Reply(delay_s=0.2))
    r, took = timed_post(client, chat())
    check(r, 200, A, 1)
    assert 0.2 <= took < 0.5


def test_connection_refused_falls_over_to_the_second_target(
    serve: Serve, b: FakeUpstream
) -> None:
    client = serve(two_targets(), a_url=f"http://127.0.0.1:{free_port()}/v1")
    r, took = timed_post(client, chat())
    check(r, 200, B, 2)
    assert calls(b) == [1]
    assert took < 1.0


def test_a_200_whose_body_is_not_a_json_object_is_a_broken_response_that_falls_over(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    """docs/routing.md: a broken response goes to the next target, and counts as a failure."""
    client = serve(two_targets())
    for body in (b'{"id": "chatcmpl-x", "choices": [ {not json', b"[1, 2, 3]", b"", b"null"):
        a.enqueue(Reply(body=body, headers={"Content-Type": "application/json"}))
        r, took = timed_post(client, chat())
        check(r, 200, B, 2)
        assert r.json()["choices"][0]["message"]["content"] == "Hello from the fake"
        assert took < 1.0
    assert calls(a, b) == [4, 4]


def test_a_broken_200_on_the_only_target_is_502_upstream_bad_response(
    serve: Serve, a: FaultyUpstream
) -> None:
    client = serve(one_target())
    a.enqueue(Reply(body=b"<html>gateway hiccup</html>"))
    r, _ = timed_post(client, chat())
    assert r.status_code == 502, r.text
    assert r.json()["error"]["code"] == "upstream_bad_response"


def test_a_json_object_without_readable_usage_is_relayed_as_it_came(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets())
    body = b'{"id": "chatcmpl-x", "usage": "lots"}'
    a.enqueue(Reply(body=body, headers={"Content-Type": "application/json"}))
    r, _ = timed_post(client, chat())
    check(r, 200, A, 1)
    assert r.content == body
    assert calls(a, b) == [1, 0]


# --- streams ---------------------------------------------------------------------------------


def test_a_stream_cut_after_the_first_chunk_ends_with_an_error_event_and_no_retry(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets())
    a.enqueue(Reply(stream_chunks=["one", "two", "three"], break_after=1))
    r, took = timed_post(client, chat(stream=True))
    check(r, 200, A, 1)
    events = sse_events(r.text)
    assert len(events) == 2, events
    assert orjson.loads(events[0])["choices"][0]["delta"]["content"] == "one"
    error = orjson.loads(events[1])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"].startswith("upstream_")
    assert "[DONE]" not in r.text
    assert calls(a, b) == [1, 0]
    assert took < 1.0


def test_a_stalled_stream_ends_with_a_timeout_event_after_the_idle_timeout(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets(stream_idle_timeout_s=0.3))
    a.enqueue(Reply(stream_chunks=["one", "two"], stall_after=1))
    r, took = timed_post(client, chat(stream=True))
    check(r, 200, A, 1)
    events = sse_events(r.text)
    assert orjson.loads(events[0])["choices"][0]["delta"]["content"] == "one"
    assert orjson.loads(events[-1])["error"]["code"] == "upstream_timeout"
    assert len(events) == 2
    assert calls(a, b) == [1, 0]
    assert 0.3 <= took < 1.0
    assert a.stream_cancelled.wait(2), "the stalled upstream stream was never closed"


def test_the_idle_timeout_covers_the_wait_for_a_streams_first_byte(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    """A provider that never sends its headers is idle as much as one that stalls later: it
    is given up after stream_idle_timeout_s, not after the whole deadline."""
    client = serve(two_targets(stream_idle_timeout_s=0.3))
    a.enqueue(Reply(stream_chunks=["late"], delay_s=5))
    r, took = timed_post(client, chat(stream=True))
    check(r, 200, B, 2)
    assert calls(a, b) == [1, 1]
    assert 0.3 <= took < 1.5


def test_a_stream_that_fails_before_its_first_byte_falls_over(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets())
    a.enqueue(error_reply(503))
    r, _ = timed_post(client, chat(stream=True))
    check(r, 200, B, 2)
    assert sse_events(r.text)[-1] == "[DONE]"
    assert calls(a, b) == [1, 1]


# --- client errors with rules: context length, content policy ---------------------------------


def test_content_policy_refusal_fails_with_its_400_by_default(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream, c: FakeUpstream
) -> None:
    client = serve(two_targets(fallback_routes=["safe"]))
    a.enqueue(error_reply(400, "content_policy_violation"))
    r, took = timed_post(client, chat())
    check(r, 400, A, 1)
    check_error(r, 400, "content_policy_violation")
    assert calls(a, b, c) == [1, 0, 0]
    assert took < 1.0


def test_content_policy_refusal_goes_to_the_fallback_route_when_the_rule_says_so(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream, c: FakeUpstream
) -> None:
    client = serve(two_targets(fallback_routes=["safe"],
                               fallback_on={"content_policy": "fallback_routes"}))
    a.enqueue(error_reply(400, "content_policy_violation"))
    r, took = timed_post(client, chat())
    check(r, 200, C, 2)
    assert r.json()["model"] == "m3"
    assert calls(a, b, c) == [1, 0, 1]
    assert took < 1.0


def test_an_unclassified_400_is_passed_back_without_a_retry(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets())
    a.enqueue(error_reply(400, "invalid_value"))
    r, _ = timed_post(client, chat())
    check(r, 400, A, 1)
    check_error(r, 400, "invalid_value")
    assert calls(a, b) == [1, 0]


# --- retries, rules, Retry-After, deadlines -----------------------------------------------------


def test_retries_on_a_single_target_after_503s_succeed_on_the_third_attempt(
    serve: Serve, a: FaultyUpstream
) -> None:
    client = serve(one_target(retries=2, backoff_s=0.01, backoff_max_s=0.05))
    a.enqueue(error_reply(503), error_reply(503))
    r, took = timed_post(client, chat())
    check(r, 200, A, 3)
    assert calls(a) == [3]
    assert took < 1.0


def test_retries_run_out_with_the_last_error(serve: Serve, a: FaultyUpstream) -> None:
    client = serve(one_target(retries=1, backoff_s=0.01))
    a.enqueue(error_reply(503), error_reply(500), Reply())
    r, _ = timed_post(client, chat())
    check(r, 502, A, 2)
    check_error(r, 502, "upstream_server_error")
    assert calls(a) == [2]


def test_a_fail_rule_answers_502_after_one_attempt(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets(fallback_on={"server_error": "fail"}))
    a.enqueue(error_reply(500))
    r, took = timed_post(client, chat())
    check(r, 502, A, 1)
    check_error(r, 502, "upstream_server_error")
    assert calls(a, b) == [1, 0]
    assert took < 1.0


@pytest.mark.parametrize(
    ("retry_after", "cap_s", "wait_s"),
    [pytest.param("0.3", 10.0, 0.3, id="honoured"), pytest.param("30", 0.2, 0.2, id="capped")],
)
def test_retry_after_is_honoured_before_calling_the_same_target_again_up_to_the_cap(
    serve: Serve, a: FaultyUpstream, retry_after: str, cap_s: float, wait_s: float
) -> None:
    client = serve(one_target(retries=1, backoff_s=0.01, retry_after_max_s=cap_s))
    a.enqueue(error_reply(429, **{"Retry-After": retry_after}))
    r, took = timed_post(client, chat())
    check(r, 200, A, 2)
    assert calls(a) == [2]
    assert wait_s <= took < wait_s + 0.5


def test_the_request_deadline_cuts_a_slow_attempt_and_forbids_falling_over(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets())
    a.enqueue(Reply(delay_s=2))
    r, took = timed_post(client, chat(), **{"X-Request-Timeout": "0.3"})
    check(r, 504, A, 1)
    check_error(r, 504, "upstream_timeout")
    assert calls(a, b) == [1, 0]
    assert 0.3 <= took < 0.6


@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "100000"])
def test_an_invalid_request_timeout_is_400_before_any_upstream_call(
    serve: Serve, a: FaultyUpstream, value: str
) -> None:
    client = serve(two_targets())
    r, _ = timed_post(client, chat(), **{"X-Request-Timeout": value})
    error = check_error(r, 400, "invalid_request")
    assert error["param"] == "X-Request-Timeout"
    assert calls(a) == [0]


# --- selection: context windows, weights, fallback routes --------------------------------------


def test_a_target_whose_context_window_is_too_small_is_skipped_without_a_call(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets({"context_window": 10}))
    r, _ = timed_post(client, chat("x" * 400))
    check(r, 200, B, 1)
    assert calls(a, b) == [0, 1]
    r, _ = timed_post(client, chat("hi"))
    check(r, 200, A, 1)
    assert calls(a, b) == [1, 1]


def test_a_prompt_too_long_for_every_target_is_a_400_without_a_call(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve({"r": {"targets": [
        {"provider": "a", "model": "m1", "context_window": 10},
        {"provider": "b", "model": "m2", "context_window": 20}]}})
    r, _ = timed_post(client, chat("x" * 400))
    error = check_error(r, 400, "context_length_exceeded")
    assert error["param"] == "messages"
    assert r.headers["x-modelport-attempts"] == "0"
    assert calls(a, b) == [0, 0]


def test_after_a_context_length_error_only_a_target_with_a_larger_window_is_tried(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream, c: FakeUpstream
) -> None:
    client = serve({"r": {"targets": [
        {"provider": "a", "model": "m1", "context_window": 100},
        {"provider": "b", "model": "m2", "context_window": 50},
        {"provider": "c", "model": "m3", "context_window": 200}]}})
    a.enqueue(error_reply(400, "context_length_exceeded"))
    r, _ = timed_post(client, chat())
    check(r, 200, C, 2)
    assert calls(a, b, c) == [1, 0, 1]


def test_weighted_strategy_spreads_calls_by_weight(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    routes = two_targets({"weight": 3}, strategy="weighted")
    routes["r"]["targets"][1]["weight"] = 1
    client = serve(routes)
    answered = {A: 0, B: 0}
    for _ in range(200):
        r = client.post("/v1/chat/completions", json=chat())
        assert r.status_code == 200 and r.headers["x-modelport-attempts"] == "1"
        answered[r.headers["x-modelport-target"]] += 1
    assert calls(a, b) == [answered[A], answered[B]]
    # expected 150 / 50; the bounds are five standard deviations (6.1) either side
    assert 120 <= answered[A] <= 180


def test_fallback_routes_answer_after_every_target_failed(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream, c: FakeUpstream
) -> None:
    client = serve(two_targets(fallback_routes=["safe"]))
    a.enqueue(error_reply(500))
    b.enqueue(error_reply(503))
    r, took = timed_post(client, chat())
    check(r, 200, C, 3)
    assert r.json()["model"] == "m3"
    assert calls(a, b, c) == [1, 1, 1]
    assert took < 1.0


def test_without_fallback_routes_the_last_error_is_answered(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets())
    a.enqueue(error_reply(500))
    b.enqueue(Reply(drop_connection=True))
    r, _ = timed_post(client, chat())
    check(r, 502, B, 2)
    check_error(r, 502, "upstream_unreachable")


# --- circuit breakers ----------------------------------------------------------------------------


def test_an_open_breaker_stops_calls_to_a_dead_target_until_its_cooldown_has_passed(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    breaker = {"failures": 3, "cooldown_s": 1}
    client = serve(two_targets({"breaker": breaker}))
    a.enqueue(*[error_reply(500)] * 3)  # then it recovers: default answers
    for _ in range(3):
        r, _ = timed_post(client, chat())
        check(r, 200, B, 2)
    opened = time.monotonic()
    scrape = client.get("/metrics").text
    assert metric(scrape, "modelport_breaker_state", route="r", target=A) == 2
    assert metric(scrape, "modelport_breaker_state", route="r", target=B) == 0
    for _ in range(3):
        r, _ = timed_post(client, chat())
        check(r, 200, B, 1)
    assert time.monotonic() - opened < 1.0, "the checks of the open breaker took too long"
    assert calls(a, b) == [3, 6]

    time.sleep(max(0.0, opened + 1.05 - time.monotonic()))
    r, _ = timed_post(client, chat())
    check(r, 200, A, 1)
    assert calls(a, b) == [4, 6]
    scrape = client.get("/metrics").text
    assert metric(scrape, "modelport_breaker_state", route="r", target=A) == 0
    attempts = "modelport_upstream_attempts_total"
    assert metric(scrape, attempts, route="r", target=A, outcome="server_error") == 3
    assert metric(scrape, attempts, route="r", target=A, outcome="ok") == 1
    assert metric(scrape, attempts, route="r", target=B, outcome="ok") == 6


def test_a_breaker_opened_by_refused_connections_sends_all_calls_to_the_other_target(
    serve: Serve, b: FakeUpstream
) -> None:
    client = serve(two_targets({"breaker": {"failures": 2, "cooldown_s": 5}}),
                   a_url=f"http://127.0.0.1:{free_port()}/v1")
    for _ in range(2):
        check(timed_post(client, chat())[0], 200, B, 2)
    for _ in range(3):
        check(timed_post(client, chat())[0], 200, B, 1)
    scrape = client.get("/metrics").text
    assert metric(scrape, "modelport_breaker_state", route="r", target=A) == 2
    assert metric(scrape, "modelport_upstream_attempts_total", route="r", target=A,
                  outcome="connection") == 2


def test_a_single_target_with_an_open_breaker_is_503_with_retry_after_and_no_call(
    serve: Serve, a: FaultyUpstream
) -> None:
    client = serve(one_target({"breaker": {"failures": 2, "cooldown_s": 5}}))
    a.enqueue(error_reply(500), error_reply(500))
    for _ in range(2):
        check_error(timed_post(client, chat())[0], 502, "upstream_server_error")
    r, took = timed_post(client, chat())
    check(r, 503, A, 0)
    check_error(r, 503, "overloaded")
    assert 1 <= int(r.headers["retry-after"]) <= 5
    assert calls(a) == [2]
    assert took < 0.2


def test_a_failed_half_open_probe_opens_the_breaker_again(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets({"breaker": {"failures": 1, "cooldown_s": 0.3}}))
    a.enqueue(error_reply(500), error_reply(500))
    check(timed_post(client, chat())[0], 200, B, 2)
    check(timed_post(client, chat())[0], 200, B, 1)
    time.sleep(0.35)
    check(timed_post(client, chat())[0], 200, B, 2)  # the probe failed
    check(timed_post(client, chat())[0], 200, B, 1)  # open again
    assert calls(a) == [2]
    time.sleep(0.35)
    check(timed_post(client, chat())[0], 200, A, 1)
    assert calls(a) == [3]


# --- known bugs: each test states the documented behaviour (docs/routing.md) ------------------


def test_retry_after_is_honoured_when_the_attempts_wrap_around_to_the_same_target(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets(retries=2, backoff_s=0.01, retry_after_max_s=10))
    a.enqueue(error_reply(429, **{"Retry-After": "0.5"}))
    b.enqueue(error_reply(500))
    r, took = timed_post(client, chat())
    check(r, 200, A, 3)
    assert calls(a, b) == [2, 1]
    assert took >= 0.5


def test_a_target_that_keeps_cutting_its_streams_opens_its_breaker(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets({"breaker": {"failures": 2, "cooldown_s": 5}}))
    for _ in range(2):
        a.enqueue(Reply(stream_chunks=["one", "two"], break_after=1))
        r, _ = timed_post(client, chat(stream=True))
        assert orjson.loads(sse_events(r.text)[-1])["error"]["code"] == "upstream_bad_response"
    scrape = client.get("/metrics").text
    assert metric(scrape, "modelport_breaker_state", route="r", target=A) == 2
    check(timed_post(client, chat(stream=True))[0], 200, B, 1)


def test_a_stream_still_running_at_the_deadline_ends_with_a_timeout_event(
    serve: Serve, a: FaultyUpstream
) -> None:
    client = serve(two_targets())
    a.enqueue(Reply(stream_chunks=["1", "2", "3", "4", "5"], chunk_interval_s=0.3))
    r, took = timed_post(client, chat(stream=True), **{"X-Request-Timeout": "0.5"})
    assert orjson.loads(sse_events(r.text)[-1])["error"]["code"] == "upstream_timeout"
    assert took < 0.9


def test_the_route_timeout_holds_when_the_provider_timeout_is_a_little_longer(
    serve: Serve, a: FaultyUpstream, b: FakeUpstream
) -> None:
    client = serve(two_targets(timeout_s=0.3), a_timeout_s=1)
    a.enqueue(Reply(delay_s=2))
    r, took = timed_post(client, chat())
    check(r, 200, B, 2)
    assert took < 0.8
