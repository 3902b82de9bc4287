"""What a hostile client can send before it is authenticated, and the clear 4xx it gets:
nesting too deep to forward, credentials that are not ASCII, headers too large, requests
sent too slowly, too many connections from one address, malformed HTTP, and, in open mode,
requests that a web page could make."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from modelport.protocol.json_body import MAX_DEPTH
from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream
from tests.gateway import InProcessGateway, basic_config, start_gateway
from tests.integration.access_setup import KEY_ALL, Keyed

CHAT = {"model": "support-summary", "messages": [{"role": "user", "content": "hi"}]}


def _error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code, error
    assert UPSTREAM_KEY not in r.text
    return error  # type: ignore[no-any-return]


def _nested(depth: int) -> bytes:
    inner = b"[" * (depth - 1) + b"]" * (depth - 1)
    return b'{"model": "support-summary", "messages": [], "x": ' + inner + b"}"


def _raw(port: int, request: bytes, *, timeout_s: float = 5) -> bytes:
    """Send bytes as they are and read the answer until the server closes or answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return _read_answer(sock)


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while b"\r\n\r\n" not in data or not _body_complete(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _body_complete(data: bytes) -> bool:
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def _status_and_error(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, orjson.loads(body)["error"]


# ------------------------------------------------------------------------- nesting depth


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 254, 255, 600, 1023, 1024, 5000])
def test_a_body_nested_deeper_than_the_limit_is_400_never_500(
    client: httpx.Client, upstream: FakeUpstream, depth: int
) -> None:
    r = client.post("/v1/chat/completions", content=_nested(depth),
                    headers={"content-type": "application/json"})
    _error(r, 400, "invalid_json")
    assert upstream.requests == []


def test_a_body_nested_to_the_limit_is_forwarded(
    client: httpx.Client, upstream: FakeUpstream
) -> None:
    r = client.post("/v1/chat/completions", content=_nested(MAX_DEPTH - 1),
                    headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert len(upstream.requests) == 1


# ----------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("path", ["/v1/models", "/v1/tokens", "/v1/chat/completions"])
@pytest.mark.parametrize("token", [b"mpt_x.\xff", b"mpt_\xc3\xa9.abc", b"mpk_\x80abc",
                                   b"\xff\xfe", b"mpt_.", b"mpt_\xe2\x80\x8b.abc"])
def test_a_malformed_credential_is_401_before_anything_else(
    keyed: Keyed, path: str, token: bytes
) -> None:
    method = "GET" if path == "/v1/models" else "POST"
    body = orjson.dumps({"model": "r1", "route": "r1", "messages": []})
    answer = _raw(keyed.gateway.port, (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode()
        + b"Authorization: Bearer " + token + b"\r\n\r\n" + body)
    status, error = _status_and_error(answer)
    assert status == 401, answer
    assert error["code"] == "invalid_api_key"
    assert keyed.upstream.requests == []


def test_a_good_key_still_works_beside_the_malformed_ones(keyed: Keyed) -> None:
    assert keyed.call("r1", KEY_ALL).status_code == 200


# ------------------------------------------------------------------- connections and HTTP


@pytest.fixture
def strict_gateway(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> Iterator[InProcessGateway]:
    config = basic_config(upstream.base_url, sqlite_url)
    config["server"] = {"max_header_bytes": 4096, "header_timeout_s": 0.5,
                        "body_timeout_s": 0.5, "max_connections_per_client": 4}
    gw = start_gateway(tmp_path, config, env)
    yield gw
    gw.stop()


def test_headers_over_the_limit_are_431_and_the_loop_stays_responsive(
    gateway: InProcessGateway, client: httpx.Client
) -> None:
    huge = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * (64 << 20)
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        started = time.monotonic()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(huge)
        # the gateway answers others while it refuses this one
        assert client.get("/v1/models").status_code == 200
        answer = _read_answer(sock)
    assert time.monotonic() - started < 5
    if answer:  # the refusal may be lost to the reset of a socket with unread bytes
        status, error = _status_and_error(answer)
        assert (status, error["code"]) == (431, "headers_too_large")


def test_headers_just_over_the_limit_are_431_and_a_large_body_is_not_counted(
    strict_gateway: InProcessGateway
) -> None:
    port = strict_gateway.port
    answer = _raw(port, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: "
                  + b"a" * 5000 + b"\r\n\r\n")
    assert _status_and_error(answer)[0] == 431
    body = orjson.dumps({**CHAT, "pad": "x" * 200_000})
    answer = _raw(port, (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_headers_sent_too_slowly_are_408(strict_gateway: InProcessGateway) -> None:
    with socket.create_connection(("127.0.0.1", strict_gateway.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer = _read_answer(sock)
    assert 0.4 < time.monotonic() - started < 3
    status, error = _status_and_error(answer)
    assert (status, error["code"]) == (408, "request_timeout")


def test_a_connection_that_sends_nothing_is_closed(strict_gateway: InProcessGateway) -> None:
    with socket.create_connection(("127.0.0.1", strict_gateway.port), timeout=5) as sock:
        started = time.monotonic()
        answer = _read_answer(sock)
    assert time.monotonic() - started < 3
    assert _status_and_error(answer)[0] == 408


def test_a_body_sent_too_slowly_is_408_and_recorded(
    strict_gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    with socket.create_connection(("127.0.0.1", strict_gateway.port), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        started = time.monotonic()
        answer = _read_answer(sock)
    assert time.monotonic() - started < 3
    status, error = _status_and_error(answer)
    assert (status, error["code"]) == (408, "request_timeout")
    assert upstream.requests == []


def test_keep_alive_requests_each_get_their_own_header_time(
    strict_gateway: InProcessGateway
) -> None:
    with httpx.Client(base_url=strict_gateway.url) as c:
        for _ in range(3):
            assert c.get("/v1/models").status_code == 200
            time.sleep(0.3)  # idle between requests is the keep-alive's business


def test_connections_over_the_per_client_limit_are_429(
    strict_gateway: InProcessGateway
) -> None:
    port = strict_gateway.port
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
            status, error = _status_and_error(_read_answer(extra))
        assert (status, error["code"]) == (429, "too_many_connections")
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    with httpx.Client(base_url=strict_gateway.url) as c:
        assert c.get("/v1/models").status_code == 200  # closed ones no longer count


def test_malformed_http_is_400_in_the_error_shape(gateway: InProcessGateway) -> None:
    status, error = _status_and_error(_raw(gateway.port, b"GARBAGE\x01 / HTTP/9\r\n\r\n"))
    assert (status, error["code"]) == (400, "invalid_request")


# ------------------------------------------------------------------------ open mode's web


@pytest.mark.parametrize("headers", [
    {"Host": "evil.example"},
    {"Host": "evil.example:4000"},
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "https://127.0.0.1.evil.example"},
])
def test_open_mode_refuses_what_a_web_page_could_send(
    client: httpx.Client, upstream: FakeUpstream, headers: dict[str, str]
) -> None:
    _error(client.post("/v1/chat/completions", json=CHAT, headers=headers), 403,
           "untrusted_origin")
    assert upstream.requests == []


@pytest.mark.parametrize("media", ["text/plain", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "TEXT/PLAIN;charset=utf-8"])
def test_open_mode_refuses_bodies_a_form_could_post(
    client: httpx.Client, upstream: FakeUpstream, media: str
) -> None:
    r = client.post("/v1/chat/completions", content=orjson.dumps(CHAT),
                    headers={"content-type": media})
    _error(r, 415, "unsupported_media_type")
    assert upstream.requests == []


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:4000"}, {"Origin": "http://localhost:4000"},
    {"Origin": "http://[::1]:4000"}, {"Host": "localhost:4000"}, {"Host": "[::1]:4000"},
])
def test_open_mode_serves_this_machine(client: httpx.Client, headers: dict[str, str]) -> None:
    assert client.post("/v1/chat/completions", json=CHAT, headers=headers).status_code == 200


def test_allowed_hosts_are_served_in_open_mode(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    config = basic_config(upstream.base_url, sqlite_url)
    config["server"] = {"allowed_hosts": ["gateway.internal"]}
    gw = start_gateway(tmp_path, config, env)
    try:
        with httpx.Client(base_url=gw.url) as c:
            ok = c.post("/v1/chat/completions", json=CHAT, headers={"Host": "gateway.internal"})
            assert ok.status_code == 200
            _error(c.post("/v1/chat/completions", json=CHAT, headers={"Host": "other.internal"}),
                   403, "untrusted_origin")
    finally:
        gw.stop()


def test_keyed_mode_checks_no_origin_without_allowed_hosts(keyed: Keyed) -> None:
    r = keyed.client.post("/v1/chat/completions",
                          json={"model": "r1", "messages": [{"role": "user", "content": "x"}]},
                          headers={"Authorization": f"Bearer {KEY_ALL}",
                                   "Origin": "https://app.example", "Host": "api.example"})
    assert r.status_code == 200, r.text
