"""Every failure is a clear error in OpenAI's shape, with the right status, and no secret."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from modelport.providers.openai import OpenAIProvider
from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import InProcessGateway, basic_config, free_port, start_gateway

CHAT = {"model": "support-summary", "messages": [{"role": "user", "content": "hi"}]}


def _error(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert UPSTREAM_KEY not in r.text
    return error


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"{not json", "invalid_json"), (b"[1, 2]", "invalid_json"), (b"", "invalid_json"),
     (b'"text"', "invalid_json"), (b'{"messages": []}', "invalid_request")],
)
def test_malformed_bodies_are_400(client: httpx.Client, body: bytes, code: str) -> None:
    r = client.post("/v1/chat/completions", content=body,
                    headers={"content-type": "application/json"})
    _error(r, 400, code)


def test_unknown_route_is_404_naming_the_model_param(client: httpx.Client) -> None:
    error = _error(client.post("/v1/chat/completions", json={**CHAT, "model": "nope"}),
                   404, "model_not_found")
    assert error["param"] == "model"


def test_unknown_path_and_wrong_method_use_the_error_shape(client: httpx.Client) -> None:
    _error(client.get("/v3/nothing"), 404, "not_found")
    not_allowed = client.get("/v1/chat/completions")
    _error(not_allowed, 405, "method_not_allowed")
    assert not_allowed.headers["allow"] == "POST"
    routed = client.delete("/v1/models/support-summary")  # a path with a parameter
    _error(routed, 405, "method_not_allowed")
    assert "GET" in routed.headers["allow"]


@pytest.fixture
def small_gateway(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> Iterator[InProcessGateway]:
    config = basic_config(upstream.base_url, sqlite_url)
    config["server"] = {"max_body_bytes": 1000}
    gw = start_gateway(tmp_path, config, env)
    yield gw
    gw.stop()


def test_body_over_the_limit_is_413_by_length_and_by_chunks(
    small_gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    big = {**CHAT, "pad": "x" * 2000}
    with httpx.Client(base_url=small_gateway.url) as c:
        _error(c.post("/v1/chat/completions", json=big), 413, "payload_too_large")

        def chunks() -> Iterator[bytes]:
            yield b'{"model": "support-summary", "pad": "'
            for _ in range(30):
                yield b"x" * 100
            yield b'"}'

        _error(c.post("/v1/chat/completions", content=chunks()), 413, "payload_too_large")
        assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert len(upstream.requests) == 1


def test_default_body_limit_is_ten_mebibytes(gateway: InProcessGateway) -> None:
    assert gateway.settings.server.max_body_bytes == 10 * 1024 * 1024


def test_unreachable_upstream_is_502(
    tmp_path: Path, env: dict[str, str], sqlite_url: str
) -> None:
    gw = start_gateway(tmp_path, basic_config(f"http://127.0.0.1:{free_port()}/v1", sqlite_url),
                       env)
    try:
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT)
        _error(r, 502, "upstream_unreachable")
        assert r.headers["x-modelport-target"] == "upstream-a/gpt-4o-mini"
    finally:
        gw.stop()


@pytest.mark.parametrize("status", [500, 502, 503])
def test_upstream_5xx_is_502(client: httpx.Client, upstream: FakeUpstream, status: int) -> None:
    upstream.enqueue(Reply(status=status, body={"error": {"message": "boom"}}))
    _error(client.post("/v1/chat/completions", json=CHAT), 502, "upstream_server_error")


def test_upstream_timeout_is_504(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    config = basic_config(upstream.base_url, sqlite_url)
    config["providers"]["upstream-a"]["timeout_s"] = 0.3
    gw = start_gateway(tmp_path, config, env)
    upstream.enqueue(Reply(delay_s=2))
    try:
        _error(httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT), 504, "upstream_timeout")
    finally:
        gw.stop()


def test_upstream_refusing_our_key_is_502_and_never_echoes_it(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(status=401, body={"error": {
        "message": f"Incorrect API key provided: {UPSTREAM_KEY}", "type": "auth"}}))
    error = _error(client.post("/v1/chat/completions", json=CHAT), 502, "upstream_auth_failed")
    assert "credentials" in str(error["message"])


def test_upstream_client_errors_pass_through_with_secrets_scrubbed(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(status=400, body={"error": {
        "message": f"context too long (key {UPSTREAM_KEY})", "type": "invalid_request_error",
        "param": "messages", "code": "context_length_exceeded"}}))
    r = client.post("/v1/chat/completions", json=CHAT)
    error = _error(r, 400, "context_length_exceeded")
    assert "***" in str(error["message"])


def _escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


@pytest.mark.parametrize("body", [
    '{"error": {"message": "bad key ' + _escaped(UPSTREAM_KEY) + '", "type": "x"}}',
    '{"error": {"message": "bad key sk-plan****************1e5b", "code": "invalid"}}',
    '{"error": {"message": "bad key ••••••••••9c1e5b"}}',
    '{"error": {"message": "bad", "param": {"sent": "' + UPSTREAM_KEY[3:] + '"}}}',
    '{"error": {"message": "key ends ' + _escaped(UPSTREAM_KEY[-12:]) + '"}}',
    "bad key " + UPSTREAM_KEY.replace("-", "%2D"),
    "bad key " + "".join(f"&#{ord(c)};" for c in UPSTREAM_KEY),
])
def test_a_provider_error_quoting_the_key_in_any_form_is_redacted(
    client: httpx.Client, upstream: FakeUpstream, body: str
) -> None:
    upstream.enqueue(Reply(status=400, body=body))
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    shown = orjson.dumps(error).decode() + str(orjson.loads(r.content))
    for piece in (UPSTREAM_KEY[i:i + 8] for i in range(len(UPSTREAM_KEY) - 7)):
        assert piece not in shown, (piece, shown)
    assert "plan****" not in shown and "9c1e5b" not in shown


def test_upstream_non_json_client_error_is_wrapped_in_the_error_shape(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(status=422, body="unprocessable thing"))
    error = _error(client.post("/v1/chat/completions", json=CHAT), 422, "upstream_rejected")
    assert error["message"] == "unprocessable thing"


def test_upstream_rate_limit_is_429(client: httpx.Client, upstream: FakeUpstream) -> None:
    upstream.enqueue(Reply(status=429, body={"error": {"message": "slow down"}}))
    r = client.post("/v1/chat/completions", json=CHAT)
    _error(r, 429, "upstream_rate_limited")
    assert "retry-after" not in r.headers


def test_the_providers_retry_after_reaches_the_client(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(status=429, headers={"Retry-After": "6.5"},
                           body={"error": {"message": "slow down"}}))
    r = client.post("/v1/chat/completions", json=CHAT)
    _error(r, 429, "upstream_rate_limited")
    assert r.headers["retry-after"] == "7"


def test_unexpected_exception_is_500_with_request_id_logged_once(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(self: OpenAIProvider, *args: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr(OpenAIProvider, "send", explode)
    with caplog.at_level(logging.ERROR):
        r = client.post("/v1/chat/completions", json=CHAT, headers={"X-Request-ID": "req-500"})
    error = _error(r, 500, "internal_error")
    assert "req-500" in str(error["message"]) and "kaboom" not in r.text
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert getattr(errors[0], "request_id", None) == "req-500"


def test_a_target_that_refused_our_key_is_not_called_again(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    config = basic_config(upstream.base_url, sqlite_url)
    config["routes"]["support-summary"]["retries"] = 3
    config["routes"]["support-summary"]["backoff_s"] = 0.01
    gw = start_gateway(tmp_path, config, env)
    upstream.enqueue(*[Reply(status=401, body={"error": {"message": "no"}})] * 4)
    try:
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT)
    finally:
        gw.stop()
    _error(r, 502, "upstream_auth_failed")
    assert r.headers["x-modelport-attempts"] == "1"
    assert len(upstream.requests) == 1


def test_a_context_length_refusal_is_not_retried_on_the_same_target(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    config = basic_config(upstream.base_url, sqlite_url)
    config["routes"]["support-summary"]["retries"] = 3
    gw = start_gateway(tmp_path, config, env)
    refusal = {"error": {"message": "too long", "type": "invalid_request_error",
                         "param": "messages", "code": "context_length_exceeded"}}
    upstream.enqueue(*[Reply(status=400, body=refusal)] * 4)
    try:
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT)
    finally:
        gw.stop()
    _error(r, 400, "context_length_exceeded")
    assert len(upstream.requests) == 1
