"""Kill switches, end to end over HTTP: turned off with the admin API, effective on the next
request, answering as the operator chose (refuse, a fixed answer, a fallback route), audited,
measured, recorded, surviving a restart, and turned back on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.integration.access_setup import (
    ADMIN_KEY,
    KEY_ALL,
    KEY_R1,
    Keyed,
    access_config,
    bearer,
    keyed_gateway,
)

ADMIN = bearer(ADMIN_KEY)


def providers(base_url: str) -> dict[str, Any]:
    return {name: {"kind": "openai", "base_url": base_url, "api_key": "env:UPSTREAM_A_KEY"}
            for name in ("upstream-a", "upstream-b")}


def routes(base_url: str, store_url: str) -> dict[str, Any]:
    config = access_config(base_url, store_url)["routes"]
    config["ab"] = {"targets": [{"provider": "upstream-a", "model": "m1"},
                                {"provider": "upstream-b", "model": "m4"}]}
    return config  # type: ignore[no-any-return]


@pytest.fixture
def keyed(tmp_path: Path, upstream: FakeUpstream, sqlite_url: str) -> Iterator[Keyed]:
    yield from keyed_gateway(tmp_path, upstream, sqlite_url,
                             providers=providers(upstream.base_url),
                             routes=routes(upstream.base_url, sqlite_url))


def switch(keyed: Keyed, **spec: Any) -> httpx.Response:
    return keyed.client.post("/admin/switches", json=spec, headers=ADMIN)


def off(keyed: Keyed, **spec: Any) -> dict[str, Any]:
    reply = switch(keyed, state="off", **spec)
    assert reply.status_code == 201, reply.text
    return reply.json()  # type: ignore[no-any-return]


def metric_lines(keyed: Keyed) -> list[str]:
    text = keyed.client.get("/metrics", headers=ADMIN).text
    return [line for line in text.splitlines() if line.startswith("modelport_switch_off{")]


def ledger_row(keyed: Keyed, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        reply = keyed.client.get(f"/admin/requests/{request_id}", headers=ADMIN)
        if reply.status_code == 200 or time.monotonic() > deadline:
            assert reply.status_code == 200, reply.text
            return reply.json()  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_a_route_turned_off_refuses_its_next_request_with_the_message_then_comes_back(
    keyed: Keyed,
) -> None:
    made = off(keyed, scope="route", name="r1", message="Summaries are paused for a fix.",
               reason="wrong answers reported")
    assert (made["scope"], made["name"], made["state"], made["actor"]) == (
        "route", "r1", "off", "admin")
    calls = len(keyed.upstream.requests)
    started = time.monotonic()
    refused = keyed.client.post("/v1/chat/completions", headers={
        **bearer(KEY_ALL), "X-Request-ID": "switched-off-1"},
        json={"model": "r1", "messages": [{"role": "user", "content": "hi"}]})
    assert time.monotonic() - started < 0.1
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "disabled"
    assert refused.json()["error"]["message"] == "Summaries are paused for a fix."
    assert len(keyed.upstream.requests) == calls  # nothing went upstream
    assert keyed.call("r2", KEY_ALL).status_code == 200  # the other routes serve on
    listed = keyed.client.get("/admin/switches", headers=ADMIN).json()["data"]
    assert [(s["scope"], s["name"], s["reason"]) for s in listed] == [
        ("route", "r1", "wrong answers reported")]
    assert metric_lines(keyed) == ['modelport_switch_off{name="r1",scope="route"} 1.0']
    row = ledger_row(keyed, "switched-off-1")
    assert (row["status"], row["error_code"], row["route"]) == (503, "disabled", "r1")
    audit = keyed.client.get("/admin/audit", headers=ADMIN).json()["data"]
    assert audit[0]["action"] == "switch.off" and audit[0]["target"] == "route:r1"
    assert audit[0]["detail"]["reason"] == "wrong answers reported"

    back = switch(keyed, scope="route", name="r1", state="on", reason="fixed")
    assert back.status_code == 200 and back.json()["state"] == "on"
    assert keyed.call("r1", KEY_ALL).status_code == 200
    assert metric_lines(keyed) == []
    audit = keyed.client.get("/admin/audit", headers=ADMIN).json()["data"]
    assert (audit[0]["action"], audit[0]["detail"]["reason"]) == ("switch.on", "fixed")


def test_an_answering_switch_answers_its_text_to_the_official_sdk_whole_and_streamed(
    keyed: Keyed,
) -> None:
    off(keyed, scope="route", name="r1", behaviour="answer",
        message="The assistant is offline; a person will reply by e-mail.", reason="incident")
    client = openai.OpenAI(base_url=f"{keyed.gateway.url}/v1", api_key=KEY_ALL)
    calls = len(keyed.upstream.requests)
    whole = client.chat.completions.create(
        model="r1", messages=[{"role": "user", "content": "hi"}])
    assert whole.choices[0].message.content == (
        "The assistant is offline; a person will reply by e-mail.")
    assert whole.usage is not None and whole.usage.total_tokens == 0
    stream = client.chat.completions.create(
        model="r1", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "The assistant is offline; a person will reply by e-mail."
    completion = client.completions.create(model="r1", prompt="hi")
    assert completion.choices[0].text.startswith("The assistant is offline")
    with pytest.raises(openai.APIStatusError) as info:  # embeddings carry no text
        client.embeddings.create(model="r1", input="hi")
    assert info.value.status_code == 503
    assert len(keyed.upstream.requests) == calls


def test_a_falling_back_switch_serves_from_the_named_route_even_for_a_key_without_it(
    keyed: Keyed,
) -> None:
    off(keyed, scope="route", name="r1", behaviour="fallback", fallback_route="r2",
        reason="m1 misbehaves")
    reply = keyed.call("r1", KEY_R1)  # this key may call r1 only
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-modelport-target"] == "upstream-a/m2"
    assert keyed.upstream.requests[-1].body["model"] == "m2"
    off(keyed, scope="route", name="r2", reason="both off")
    refused = keyed.call("r1", KEY_R1)  # one hop only: the fallback is off too
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "disabled"


def test_a_provider_or_model_switch_takes_its_targets_out_of_every_route(
    keyed: Keyed,
) -> None:
    off(keyed, scope="provider", name="upstream-a", message="Vendor A is out.")
    served = keyed.call("ab", KEY_ALL)
    assert served.status_code == 200 and served.headers["x-modelport-target"] == "upstream-b/m4"
    refused = keyed.call("r1", KEY_ALL)  # its only target is on upstream-a
    assert refused.status_code == 503
    assert refused.json()["error"]["message"] == "Vendor A is out."
    switch(keyed, scope="provider", name="upstream-a", state="on")
    off(keyed, scope="model", name="m1", behaviour="answer", message="m1 is retired.")
    assert keyed.call("ab", KEY_ALL).headers["x-modelport-target"] == "upstream-b/m4"
    answered = keyed.call("r1", KEY_ALL)
    assert answered.json()["choices"][0]["message"]["content"] == "m1 is retired."


def test_a_key_switch_and_the_switch_for_everything(keyed: Keyed) -> None:
    off(keyed, scope="key", name="cfg_all-prod", message="Your access is paused.")
    assert keyed.call("r1", KEY_ALL).json()["error"]["message"] == "Your access is paused."
    assert keyed.call("r1", KEY_R1).status_code == 200
    off(keyed, scope="all", message="Maintenance until 14:00 UTC.")
    refused = keyed.call("r1", KEY_R1)
    assert refused.status_code == 503
    assert refused.json()["error"]["message"] == "Maintenance until 14:00 UTC."
    assert keyed.client.get("/admin/switches", headers=ADMIN).status_code == 200
    switch(keyed, scope="all", state="on")
    assert keyed.call("r1", KEY_R1).status_code == 200


def test_a_switch_does_not_tell_a_key_about_a_route_it_may_not_call(keyed: Keyed) -> None:
    off(keyed, scope="route", name="r2", message="paused")
    assert keyed.call("r2", KEY_R1).status_code == 403


@pytest.mark.parametrize(("spec", "param"), [
    ({"scope": "route", "name": "nosuch"}, "name"),
    ({"scope": "route"}, "name"),
    ({"scope": "all", "name": "r1"}, "name"),
    ({"scope": "provider", "name": "nosuch"}, "name"),
    ({"scope": "model", "name": "nosuch"}, "name"),
    ({"scope": "key", "name": "key_nosuch"}, "name"),
    ({"scope": "route", "name": "r1", "behaviour": "fallback"}, "fallback_route"),
    ({"scope": "route", "name": "r1", "behaviour": "fallback", "fallback_route": "nosuch"},
     "fallback_route"),
    ({"scope": "route", "name": "r1", "behaviour": "fallback", "fallback_route": "r1"},
     "fallback_route"),
    ({"scope": "route", "name": "r1", "behaviour": "answer"}, "message"),
])
def test_a_switch_that_cannot_be_set_is_a_400_naming_the_field(
    keyed: Keyed, spec: dict[str, Any], param: str
) -> None:
    reply = switch(keyed, state="off", **spec)
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param
    assert keyed.client.get("/admin/switches", headers=ADMIN).json()["data"] == []


@pytest.mark.parametrize("body", [
    {"scope": "galaxy", "state": "off"}, {"scope": "route", "name": "r1", "state": "dim"},
    {"scope": "route", "name": "r1", "state": "off", "colour": "red"}, [1, 2],
])
def test_a_malformed_switch_body_is_a_400(keyed: Keyed, body: Any) -> None:
    assert keyed.client.post("/admin/switches", json=body, headers=ADMIN).status_code == 400


def test_switches_need_the_admin_key(keyed: Keyed) -> None:
    for headers in ({}, bearer(KEY_ALL)):
        assert keyed.client.get("/admin/switches", headers=headers).status_code == 401
        assert keyed.client.post("/admin/switches", headers=headers, json={
            "scope": "all", "state": "off"}).status_code == 401


def test_a_switch_survives_a_restart(
    tmp_path: Path, upstream: FakeUpstream, sqlite_url: str
) -> None:
    config = {"providers": providers(upstream.base_url),
              "routes": routes(upstream.base_url, sqlite_url)}
    first = keyed_gateway(tmp_path, upstream, sqlite_url, **config)
    keyed = next(first)
    off(keyed, scope="route", name="r2", message="still paused")
    first.close()
    second = keyed_gateway(tmp_path, upstream, sqlite_url, **config)
    again = next(second)
    try:
        refused = again.call("r2", KEY_ALL)
        assert refused.status_code == 503 and refused.json()["error"]["message"] == (
            "still paused")
    finally:
        second.close()
