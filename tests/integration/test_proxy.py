"""Non-streaming proxying: bodies pass through, the model is swapped, headers tell who answered."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx

from modelport import __version__
from modelport.api.app import GC_THRESHOLDS
from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream
from tests.gateway import InProcessGateway, basic_config, start_gateway

CHAT = {"model": "support-summary", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_completion_is_answered_by_the_routes_target(
    client: httpx.Client, upstream: FakeUpstream, gateway: InProcessGateway
) -> None:
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "Hello from the fake"
    assert r.headers["x-modelport-route"] == "support-summary"
    assert r.headers["x-modelport-target"] == "upstream-a/gpt-4o-mini"
    assert r.headers["x-modelport-config-version"] == gateway.settings.config_version
    assert len(r.headers["x-request-id"]) >= 16
    seen = upstream.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "gpt-4o-mini"
    assert seen.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_unknown_request_fields_pass_through_to_the_provider(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    body = {**CHAT, "temperature": 0.2, "x_vendor_flag": {"nested": [1, 2]}, "seed": 7}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    sent = upstream.requests[-1].body
    assert sent["x_vendor_flag"] == {"nested": [1, 2]}
    assert sent["temperature"] == 0.2 and sent["seed"] == 7
    assert sent["messages"] == CHAT["messages"]


def test_completions_and_embeddings_reach_their_upstream_paths(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    r = client.post("/v1/completions", json={"model": "support-summary", "prompt": "Say"})
    assert r.status_code == 200 and r.json()["object"] == "text_completion"
    assert upstream.requests[-1].path == "/v1/completions"
    r = client.post("/v1/embeddings", json={"model": "support-summary", "input": ["a", "b"]})
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    assert upstream.requests[-1].path == "/v1/embeddings"
    assert upstream.requests[-1].body["model"] == "gpt-4o-mini"


def test_models_lists_routes_with_their_owner(client: httpx.Client) -> None:
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    assert [(m["id"], m["owned_by"]) for m in data["data"]] == [
        ("support-summary", "support-team")
    ]
    assert client.get("/v1/models/support-summary").json()["id"] == "support-summary"
    missing = client.get("/v1/models/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_a_valid_request_id_is_kept_and_returned(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=CHAT, headers={"X-Request-ID": "trace-42"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42"


def test_request_ids_are_generated_unique_when_absent(client: httpx.Client) -> None:
    ids = {client.get("/health/live").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


def test_an_invalid_request_id_is_refused_with_a_fresh_one_returned(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=CHAT, headers={"X-Request-ID": "x" * 129})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "X-Request-ID"
    assert r.headers["x-request-id"] != "x" * 129


def test_an_empty_request_id_is_taken_as_none_and_one_is_made(client: httpx.Client) -> None:
    """The OpenAPI document allows an empty X-Request-ID; the server must too."""
    r = client.post("/v1/chat/completions", json=CHAT, headers={"X-Request-ID": ""})
    assert r.status_code == 200, r.text
    assert len(r.headers["x-request-id"]) >= 16


def test_an_idempotency_key_replays_the_first_answer(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/chat/completions", json=CHAT, headers=headers)
    again = client.post("/v1/chat/completions", json=CHAT, headers=headers)
    other = client.post("/v1/chat/completions", json=CHAT, headers={"Idempotency-Key": "x"})
    assert first.status_code == again.status_code == other.status_code == 200
    assert again.content == first.content
    assert again.headers["x-modelport-replayed"] == "true"
    assert "x-modelport-replayed" not in first.headers
    assert again.headers["x-modelport-target"] == first.headers["x-modelport-target"]
    assert len(upstream.requests) == 2  # the repeat never reached the provider


def test_concurrent_repeats_of_one_idempotency_key_call_the_provider_once(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.fakes.upstream import Reply

    upstream.enqueue(Reply(delay_s=0.3))

    def call(_: int) -> httpx.Response:
        return httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT,
                          headers={"Idempotency-Key": "same"}, timeout=10)

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(call, range(5)))
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert len(upstream.requests) == 1


def test_a_failed_answer_is_not_kept_for_an_idempotency_key(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    from tests.fakes.upstream import Reply

    upstream.enqueue(Reply(status=500, body={"error": {"message": "boom"}}))
    headers = {"Idempotency-Key": "retry-me"}
    assert client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 502
    assert client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 200
    bad = client.post("/v1/chat/completions", json=CHAT, headers={"Idempotency-Key": "\x01"})
    assert bad.status_code == 400


def test_a_prompt_too_long_for_every_target_is_a_400_without_calling_any(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    config = basic_config(upstream.base_url, sqlite_url)
    config["routes"]["support-summary"]["targets"][0]["context_window"] = 50
    gw = start_gateway(tmp_path, config, env)
    try:
        long = {**CHAT, "messages": [{"role": "user", "content": "word " * 400}]}
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=long)
        short = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT)
    finally:
        gw.stop()
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert short.status_code == 200
    assert len(upstream.requests) == 1


def test_providers_are_called_with_modelports_user_agent_unless_configured(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    gw = start_gateway(tmp_path, basic_config(upstream.base_url, sqlite_url), env)
    try:
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT).status_code == 200
    finally:
        gw.stop()
    assert user_agent(upstream) == [f"modelport/{__version__}"]

    config = basic_config(upstream.base_url, sqlite_url)
    config["providers"]["upstream-a"]["headers"] = {"user-agent": "acme-gateway/2"}
    gw = start_gateway(tmp_path, config, env)
    try:
        assert httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT).status_code == 200
    finally:
        gw.stop()
    assert user_agent(upstream) == ["acme-gateway/2"]


def user_agent(upstream: FakeUpstream) -> list[str]:
    """Every User-Agent the last request upstream carried, whatever its case."""
    return [v for k, v in upstream.requests[-1].headers.items() if k.lower() == "user-agent"]


def test_the_collector_runs_less_often_while_the_app_serves(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    original = gc.get_threshold()
    before = (777, 10, 10)  # known, whatever another gateway of this test run has set
    gc.set_threshold(*before)
    try:
        gw = start_gateway(tmp_path, basic_config(upstream.base_url, sqlite_url), env)
        try:
            assert gc.get_threshold() == GC_THRESHOLDS
        finally:
            gw.stop()
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*original)
