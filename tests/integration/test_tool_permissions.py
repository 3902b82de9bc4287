"""Tool permissions over HTTP: a tool a route or key does not allow is refused with 403
before any call (or stripped where the route says so), and an answer that calls a tool the
request did not declare, or one that is denied, is a broken contract (repaired, then 502)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport.config import load_settings
from tests.fakes.upstream import FakeUpstream, Reply, chat_answer
from tests.gateway import InProcessGateway, write_config

ADMIN_KEY = "admin-planted-secret-2b8e6f13"
APP_KEY = "app-planted-secret-c41d0a97"
LIMITED_KEY = "limited-planted-secret-6a09e2f5"


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def calling(name: str) -> Reply:
    return chat_answer(None, tool_calls=[{"id": "call_1", "type": "function",
                                           "function": {"name": name, "arguments": "{}"}}])


@pytest.fixture
def gateway(tmp_path: Path, upstream: FakeUpstream, sqlite_url: str
            ) -> Iterator[InProcessGateway]:
    config = {
        "admin_key": "env:TP_ADMIN",
        "store": {"url": sqlite_url, "flush_interval_s": 0.05},
        "keys": {"app": {"key": "env:TP_APP"},
                 "limited": {"key": "env:TP_LIMITED", "tools": {"deny": ["refund"]}}},
        "providers": {"p": {"kind": "openai", "base_url": upstream.base_url}},
        "routes": {
            "agent": {"targets": [{"provider": "p", "model": "m"}],
                      "tools": {"allow": ["lookup_order", "refund"], "deny": ["delete_user"]}},
            "lenient": {"targets": [{"provider": "p", "model": "m"}],
                        "tools": {"deny": ["delete_user"], "on_denied": "strip"}},
        },
    }
    path = write_config(tmp_path / "modelport.yaml", config)
    env = {"TP_ADMIN": ADMIN_KEY, "TP_APP": APP_KEY, "TP_LIMITED": LIMITED_KEY}
    running = InProcessGateway(load_settings(path, env)).start()
    yield running
    running.stop()


def chat(gw: InProcessGateway, route: str, tools: list[str], key: str = APP_KEY,
         **extra: Any) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", timeout=10,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": route, "tools": [tool(n) for n in tools],
                            "messages": [{"role": "user", "content": "Where is order 7?"}],
                            **extra})


def test_a_tool_the_route_or_key_does_not_allow_is_refused_before_any_call(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    for route, tools, key, name in (("agent", ["lookup_order", "send_email"], APP_KEY,
                                     "send_email"),
                                    ("agent", ["delete_user"], APP_KEY, "delete_user"),
                                    ("agent", ["refund"], LIMITED_KEY, "refund")):
        refused = chat(gateway, route, tools, key)
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("tool_not_allowed", "tools")
        assert name in error["message"]
    assert upstream.requests == []
    upstream.enqueue(calling("lookup_order"))
    assert chat(gateway, "agent", ["lookup_order", "refund"]).status_code == 200


def test_a_route_that_strips_sends_only_the_allowed_tools(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.enqueue(calling("lookup_order"))
    reply = chat(gateway, "lenient", ["lookup_order", "delete_user"],
                 tool_choice={"type": "function", "function": {"name": "delete_user"}})
    assert reply.status_code == 200
    sent = upstream.requests[-1].body
    assert [t["function"]["name"] for t in sent["tools"]] == ["lookup_order"]
    assert "tool_choice" not in sent
    upstream.enqueue(calling("lookup_order"))
    chat(gateway, "lenient", ["delete_user"])
    assert "tools" not in upstream.requests[-1].body


def test_a_call_to_an_undeclared_or_denied_tool_breaks_the_contract(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.enqueue(calling("refund"), calling("lookup_order"))
    repaired = chat(gateway, "agent", ["lookup_order"])
    assert repaired.status_code == 200
    assert repaired.headers["x-modelport-validation"] == "repaired"
    assert "calls the tool 'refund'" in upstream.requests[-1].body["messages"][-1]["content"]
    upstream.enqueue(calling("delete_user"), calling("delete_user"))
    failed = chat(gateway, "agent", ["lookup_order"])
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "invalid_output"


def test_a_buffered_stream_keeps_the_tool_calls(gateway: InProcessGateway,
                                                upstream: FakeUpstream) -> None:
    upstream.enqueue(calling("lookup_order"))
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", timeout=10,
                      headers={"Authorization": f"Bearer {APP_KEY}"},
                      json={"model": "agent", "stream": True, "tools": [tool("lookup_order")],
                            "messages": [{"role": "user", "content": "?"}]}) as response:
        body = response.read().decode()
    assert '"tool_calls":[{' in body and '"name":"lookup_order"' in body
    assert body.rstrip().endswith("data: [DONE]")


def test_a_key_made_over_the_admin_api_carries_its_tool_permissions(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    made = httpx.post(f"{gateway.url}/admin/keys", headers={
        "Authorization": f"Bearer {ADMIN_KEY}"}, json={
        "name": "bot", "tools": {"deny": ["refund"]}})
    assert made.status_code == 201, made.text
    assert made.json()["tools"] == {"allow": None, "deny": ["refund"]}
    refused = chat(gateway, "agent", ["refund"], key=made.json()["key"])
    assert refused.status_code == 403 and "refund" in refused.json()["error"]["message"]
    upstream.enqueue(calling("lookup_order"))
    assert chat(gateway, "agent", ["lookup_order"], key=made.json()["key"]).status_code == 200
