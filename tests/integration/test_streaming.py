"""Streaming: events forwarded as they arrive, usage honoured, disconnects cancel upstream."""

from __future__ import annotations

import socket
import time

import httpx
import orjson

from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import InProcessGateway

STREAM = {"model": "support-summary", "stream": True,
          "messages": [{"role": "user", "content": "hi"}]}


def _events(text: str) -> list[str]:
    return [e.removeprefix("data: ") for e in text.strip().split("\n\n") if e]


def test_stream_ends_with_done_and_carries_every_chunk(client: httpx.Client) -> None:
    r = client.post("/v1/chat/completions", json=STREAM)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = _events(r.text)
    assert events[-1] == "[DONE]"
    text = "".join(orjson.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1])
    assert text == "Hello from the fake"


def test_usage_chunk_is_sent_only_when_the_client_asks(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    plain = _events(client.post("/v1/chat/completions", json=STREAM).text)
    assert upstream.requests[-1].body["stream_options"] == {"include_usage": True}
    assert all(orjson.loads(e).get("choices") for e in plain[:-1])

    asked = {**STREAM, "stream_options": {"include_usage": True}}
    events = _events(client.post("/v1/chat/completions", json=asked).text)
    usage = orjson.loads(events[-2])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 4


def test_chunks_are_forwarded_as_they_arrive_not_buffered(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(stream_chunks=["a", "b", "c"], chunk_interval_s=0.3))
    arrivals = []
    with client.stream("POST", "/v1/chat/completions", json=STREAM) as r:
        start = time.monotonic()
        for line in r.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 3
    assert arrivals[0] < 0.2, "the first chunk waited for later ones"
    assert arrivals[2] - arrivals[0] > 0.45


def test_completions_stream(client: httpx.Client) -> None:
    r = client.post("/v1/completions", json={"model": "support-summary", "prompt": "x",
                                             "stream": True})
    events = _events(r.text)
    assert events[-1] == "[DONE]" and orjson.loads(events[0])["choices"][0]["text"] == "Hello"


def test_an_upstream_failure_mid_stream_ends_with_an_error_event(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(stream_chunks=["a", "b", "c"], break_after=2))
    r = client.post("/v1/chat/completions", json=STREAM)
    events = _events(r.text)
    assert orjson.loads(events[0])["choices"][0]["delta"]["content"] == "a"
    error = orjson.loads(events[-1])["error"]
    assert error["code"] in ("upstream_bad_response", "upstream_unreachable")


def test_streaming_embeddings_is_a_400(client: httpx.Client) -> None:
    r = client.post("/v1/embeddings", json={"model": "support-summary", "input": "a",
                                            "stream": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "stream"


def test_client_disconnect_mid_stream_cancels_the_upstream_call(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(stream_chunks=["a", "b", "c"], stall_after=1))
    body = orjson.dumps(STREAM)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        received = b""
        while b"data: {" not in received:
            received += sock.recv(65536)
    assert upstream.stream_cancelled.wait(5), "the upstream stream kept running"
