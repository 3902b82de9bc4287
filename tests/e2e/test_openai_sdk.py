"""``modelport serve`` as a subprocess, driven by the official OpenAI Python SDK."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import ServeProcess, basic_config, free_port, write_config

MESSAGES = [{"role": "user", "content": "Summarise: printer on fire"}]


@pytest.fixture
def served(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> Iterator[ServeProcess]:
    path = write_config(tmp_path / "modelport.yaml", basic_config(upstream.base_url, sqlite_url))
    proc = ServeProcess(path, env, tmp_path).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
def sdk(served: ServeProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)


def test_chat_completion_through_the_sdk(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model="support-summary", messages=MESSAGES, extra_body={"x_custom": 1})  # type: ignore[arg-type]
    result = raw.parse()
    assert result.choices[0].message.content == "Hello from the fake"
    assert result.usage is not None and result.usage.total_tokens == 10
    assert raw.headers["x-modelport-target"] == "upstream-a/gpt-4o-mini"
    assert upstream.requests[-1].body["x_custom"] == 1


def test_streaming_through_the_sdk_with_usage(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="support-summary", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the fake"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_completions_embeddings_and_models_through_the_sdk(sdk: openai.OpenAI) -> None:
    completion = sdk.completions.create(model="support-summary", prompt="Say hi")
    assert completion.choices[0].text == "Hello from the fake"
    embedding = sdk.embeddings.create(model="support-summary", input=["a", "b", "c"])
    assert len(embedding.data) == 3
    models = sdk.models.list()
    assert [(m.id, m.owned_by) for m in models.data] == [("support-summary", "support-team")]


def test_sdk_sees_typed_errors(sdk: openai.OpenAI, upstream: FakeUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="nope", messages=MESSAGES)  # type: ignore[arg-type]
    assert missing.value.code == "model_not_found"
    upstream.enqueue(Reply(status=503, body={"error": {"message": "down"}}))
    with pytest.raises(openai.APIStatusError) as failed:
        sdk.chat.completions.create(model="support-summary", messages=MESSAGES)  # type: ignore[arg-type]
    assert failed.value.status_code == 502


def test_disconnecting_mid_stream_cancels_the_upstream_call(
    sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(Reply(stream_chunks=["one", "two", "three"], stall_after=1))
    stream = sdk.chat.completions.create(
        model="support-summary", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    first = next(iter(stream))
    assert first.choices[0].delta.content == "one"
    stream.close()
    assert upstream.stream_cancelled.wait(5)


def test_no_secret_in_any_response_or_log_line(
    served: ServeProcess, sdk: openai.OpenAI, upstream: FakeUpstream
) -> None:
    upstream.enqueue(
        Reply(status=401, body={"error": {"message": f"bad key {UPSTREAM_KEY}"}}),
        Reply(status=400, body={"error": {"message": f"echo {UPSTREAM_KEY}", "code": "x"}}),
        Reply(status=500, body=f"trace with {UPSTREAM_KEY}"),
        Reply(stream_chunks=["a", "b"], break_after=1),
    )
    bodies = []
    with httpx.Client(base_url=served.url, timeout=10) as c:
        for body in ({"model": "support-summary", "messages": MESSAGES},) * 3 + (
            {"model": "support-summary", "messages": MESSAGES, "stream": True},
            {"model": "nope"}, {"bad": UPSTREAM_KEY},
        ):
            r = c.post("/v1/chat/completions", json=body)
            bodies.append(str(r.headers) + r.text)
        bodies.append(c.get("/metrics").text)
    time.sleep(0.3)
    log = served.stop()
    assert '"logger":"modelport.access"' in log
    assert UPSTREAM_KEY not in log
    for text in bodies:
        assert UPSTREAM_KEY not in text


def test_request_log_is_one_json_line_per_request(served: ServeProcess, sdk: openai.OpenAI) -> None:
    import json

    sdk.chat.completions.create(model="support-summary", messages=MESSAGES)  # type: ignore[arg-type]
    time.sleep(0.2)
    lines = [json.loads(line) for line in served.log().splitlines() if line.startswith("{")]
    access = [entry for entry in lines if entry["logger"] == "modelport.access"]
    assert len(access) == 1
    entry = access[0]
    for key in ("request_id", "route", "target", "status", "latency_ms", "prompt_tokens",
                "completion_tokens", "overhead_ms"):
        assert key in entry
    assert "messages" not in json.dumps(entry)


def test_bad_config_fails_before_binding_with_every_problem(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = write_config(tmp_path / "bad.yaml", {
        "providers": {"a": {"kind": "openai", "base_url": "http://x", "api_key": "env:NOPE_X",
                            "colour": "red"}},
        "routes": {"r": {"targets": [{"provider": "ghost", "model": "m"}]}},
    })
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", "serve", "--config", str(bad),
         "--port", str(port)], capture_output=True, text=True, timeout=30, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "providers.a.colour: unknown key" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1)


def test_request_log_can_be_turned_off(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    config = basic_config(upstream.base_url, sqlite_url)
    config["server"] = {"access_log": False}
    proc = ServeProcess(write_config(tmp_path / "modelport.yaml", config), env, tmp_path)
    proc.wait_ready()
    assert httpx.post(f"{proc.url}/v1/chat/completions",
                      json={"model": "support-summary", "messages": MESSAGES}).status_code == 200
    log = proc.stop()
    assert "Application shutdown complete" in log
    assert "modelport.access" not in log
