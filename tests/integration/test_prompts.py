"""A route's versioned prompt over HTTP: put before the request's messages (or prompt text)
as the provider receives it, filled from the request's metadata and the declared defaults,
named in x-modelport-prompt-version, the ledger and the metrics; a missing variable is a 400."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.integration.access_setup import ADMIN_KEY, KEY_ALL, Keyed, bearer, keyed_gateway

ADMIN = bearer(ADMIN_KEY)
PROMPT = {
    "version": "summary-v3",
    "variables": {"team": "support", "customer": None},
    "messages": [
        {"role": "system", "content": "You summarise tickets for the {{ team }} team."},
        {"role": "system", "content": "The customer is {{ customer | upper }}."},
    ],
}


@pytest.fixture
def keyed(tmp_path: Path, upstream: FakeUpstream, sqlite_url: str) -> Iterator[Keyed]:
    yield from keyed_gateway(tmp_path, upstream, sqlite_url, routes={
        "r1": {"prompt": PROMPT, "targets": [{"provider": "upstream-a", "model": "m1"}]},
        "plain": {"targets": [{"provider": "upstream-a", "model": "m2"}]},
    })


def test_the_prompt_goes_before_the_messages_filled_from_metadata_and_defaults(
    keyed: Keyed,
) -> None:
    client = openai.OpenAI(base_url=f"{keyed.gateway.url}/v1", api_key=KEY_ALL)
    raw = client.chat.completions.with_raw_response.create(
        model="r1", messages=[{"role": "user", "content": "Ticket 42: refund late."}],
        metadata={"customer": "acme"})
    assert raw.headers["x-modelport-prompt-version"] == "summary-v3"
    sent = keyed.upstream.requests[-1].body["messages"]
    assert sent == [
        {"role": "system", "content": "You summarise tickets for the support team."},
        {"role": "system", "content": "The customer is ACME."},
        {"role": "user", "content": "Ticket 42: refund late."},
    ]
    reply = keyed.call("r1", KEY_ALL, metadata={"customer": "x", "team": "billing"})
    assert reply.status_code == 200
    assert keyed.upstream.requests[-1].body["messages"][0]["content"] == (
        "You summarise tickets for the billing team.")
    plain = keyed.call("plain", KEY_ALL)
    assert "x-modelport-prompt-version" not in plain.headers
    assert keyed.upstream.requests[-1].body["messages"] == [
        {"role": "user", "content": "hello there"}]


def test_a_completion_gets_the_prompt_text_before_its_own(keyed: Keyed) -> None:
    reply = keyed.client.post("/v1/completions", headers=bearer(KEY_ALL), json={
        "model": "r1", "prompt": "Ticket 7", "metadata": {"customer": "zed"}})
    assert reply.status_code == 200, reply.text
    assert keyed.upstream.requests[-1].body["prompt"] == (
        "You summarise tickets for the support team.\n\nThe customer is ZED.\n\nTicket 7")


@pytest.mark.parametrize(("body", "param"), [
    ({}, "metadata.customer"),
    ({"metadata": {"customer": 7}}, "metadata.customer"),
    ({"metadata": {"customer": "x" * 9000}}, "metadata.customer"),
])
def test_a_missing_or_malformed_variable_is_a_400_naming_it(
    keyed: Keyed, body: dict[str, object], param: str
) -> None:
    calls = len(keyed.upstream.requests)
    reply = keyed.call("r1", KEY_ALL, **body)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == param
    assert len(keyed.upstream.requests) == calls


def test_embeddings_on_a_route_with_a_prompt_are_refused(keyed: Keyed) -> None:
    reply = keyed.client.post("/v1/embeddings", headers=bearer(KEY_ALL),
                              json={"model": "r1", "input": "hi"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "model"


def test_the_prompt_version_is_in_the_ledger_the_log_line_and_the_metrics(
    keyed: Keyed,
) -> None:
    reply = keyed.client.post("/v1/chat/completions", headers={
        **bearer(KEY_ALL), "X-Request-ID": "prompted-1"}, json={
        "model": "r1", "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"customer": "acme"}})
    assert reply.status_code == 200
    deadline = time.monotonic() + 5
    while (row := keyed.client.get("/admin/requests/prompted-1", headers=ADMIN)
           ).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert row.json()["prompt_version"] == "summary-v3"
    metrics = keyed.client.get("/metrics", headers=ADMIN).text
    assert ('modelport_prompt_requests_total{prompt_version="summary-v3",route="r1",'
            'status_class="2xx"} 1.0') in metrics
