"""Tensor models over the V2 protocol, driven by NVIDIA's own ``tritonclient`` and by raw
HTTP, against a real server with real ONNX Runtime and scikit-learn workers."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from tests.fakes import models
from tests.gateway import InProcessGateway, write_config

pytest.importorskip("onnxruntime", reason="the tensor runtime needs modelport[tensor]")
pytest.importorskip("sklearn", reason="the tensor runtime needs modelport[tensor]")
httpclient = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http]")
InferenceServerException = pytest.importorskip("tritonclient.utils").InferenceServerException

from modelport.config import load_settings  # noqa: E402

FEATURES, OUTPUTS = 4, 3


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    models.write_iris(root)
    models.write_onnx(root, "linear", models.linear_onnx(FEATURES, OUTPUTS),
                      config="max_batch_size: 16\nmax_batch_delay_ms: 5\n"
                             "version_policy: {latest: 2}\n")
    models.write_onnx(root, "linear", models.linear_onnx(FEATURES, OUTPUTS, seed=1), version=2)
    models.write_onnx(root, "pinned", models.linear_onnx(FEATURES, OUTPUTS),
                      config="version_policy: {specific: [1]}\nmax_batch_size: 0\n")
    models.write_onnx(root, "pinned", models.linear_onnx(FEATURES, OUTPUTS), version=2)
    models.write_onnx(root, "broken", b"this is not an onnx file")
    models.write_crashy(root)
    outside = tmp_path_factory.mktemp("elsewhere") / "model.joblib"
    outside.write_bytes(b"not even read")
    (root / "escape" / "1").mkdir(parents=True)
    os.symlink(outside, root / "escape" / "1" / "model.joblib")
    (root / "badconfig" / "1").mkdir(parents=True)
    (root / "badconfig" / "1" / "model.onnx").write_bytes(models.linear_onnx(FEATURES, OUTPUTS))
    (root / "badconfig" / "config.yaml").write_text("max_batch_size: -3\nsurprise: 1\n")
    return root


@pytest.fixture(scope="module")
def gateway(repository: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("gw")
    path = write_config(tmp / "modelport.yaml", {
        "store": {"url": f"sqlite:///{tmp}/mp.db"},
        "model_repository": str(repository),
    })
    gw = InProcessGateway(load_settings(path, {})).start(timeout_s=180)
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: InProcessGateway):
    c = httpclient.InferenceServerClient(url=gateway.url.removeprefix("http://"))
    yield c
    c.close()


def _infer_iris(client, rows: np.ndarray, binary: bool = True):
    tensor = httpclient.InferInput("input-0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32), binary_data=binary)
    out = httpclient.InferRequestedOutput("predict", binary_data=binary)
    return client.infer("iris", [tensor], outputs=[out])


def test_server_and_model_metadata(client):
    assert client.is_server_live()
    assert client.get_server_metadata()["name"] == "modelport"
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    assert client.is_model_ready("iris") and client.is_model_ready("linear", "2")
    meta = client.get_model_metadata("linear")
    assert meta["versions"] == ["2", "1"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, FEATURES]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, OUTPUTS]}]
    iris = client.get_model_metadata("iris")
    assert iris["platform"] == "sklearn_joblib"
    assert iris["outputs"][0] == {"name": "predict", "datatype": "INT64", "shape": [-1]}
    config = client.get_model_config("linear")
    assert config["max_batch_size"] == 16 and config["input"][0]["dims"] == [FEATURES]


def test_iris_with_binary_and_json_tensors(client):
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    for binary in (True, False):
        result = _infer_iris(client, rows, binary)
        assert result.as_numpy("predict").tolist() == [0, 2]


def test_onnx_versions_answer_with_their_own_weights(client):
    x = np.random.default_rng(5).standard_normal((3, FEATURES)).astype(np.float32)
    tensor = httpclient.InferInput("x", [3, FEATURES], "FP32")
    tensor.set_data_from_numpy(x)
    for version, seed in (("1", 0), ("2", 1)):
        result = client.infer("linear", [tensor], model_version=version)
        expected = models.onnx_reference(x, FEATURES, OUTPUTS, seed=seed)
        np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5, atol=1e-5)
    latest = client.infer("linear", [tensor])
    assert latest.get_response()["model_version"] == "2"


def test_version_policy_serves_only_the_chosen_versions(client):
    assert client.get_model_metadata("pinned")["versions"] == ["1"]
    with pytest.raises(InferenceServerException, match="no version '2'"):
        client.get_model_metadata("pinned", "2")


def test_concurrent_requests_are_batched(gateway):
    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            bodies = [{"inputs": [{"name": "x", "shape": [1, FEATURES], "datatype": "FP32",
                                   "data": [float(i)] * FEATURES}]} for i in range(64)]
            return await asyncio.gather(
                *(http.post("/v2/models/linear/infer", json=b) for b in bodies))

    before = _batch_counts(gateway, "linear")
    replies = asyncio.run(run())
    assert all(r.status_code == 200 for r in replies)
    for i, reply in enumerate(replies):
        expected = models.onnx_reference(np.full((1, FEATURES), float(i), np.float32),
                                         FEATURES, OUTPUTS, seed=1)
        np.testing.assert_allclose(reply.json()["outputs"][0]["data"], expected.ravel(),
                                   rtol=1e-5)
    calls, rows = (a - b for a, b in zip(_batch_counts(gateway, "linear"), before, strict=True))
    assert rows == 64 and calls < 64


def _batch_counts(gateway: InProcessGateway, runtime: str) -> tuple[float, float]:
    text = httpx.get(f"{gateway.url}/metrics").text
    count = re.search(rf'modelport_runtime_batch_size_count{{runtime="{runtime}"}} (\S+)', text)
    total = re.search(rf'modelport_runtime_batch_size_sum{{runtime="{runtime}"}} (\S+)', text)
    return (float(count.group(1)) if count else 0.0, float(total.group(1)) if total else 0.0)


@pytest.mark.parametrize(("body", "message"), [
    ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
     "shape"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]},
     "must be FP32"),
    ({"inputs": [{"name": "z", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
     "no input 'z'"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
      "outputs": [{"name": "nope"}]}, "no output 'nope'"),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2]}]},
     "4"),
    ({"inputs": []}, "input"),
])
def test_bad_tensors_are_400_in_the_protocol_shape(gateway, body, message):
    reply = httpx.post(f"{gateway.url}/v2/models/linear/infer", json=body)
    assert reply.status_code == 400, reply.text
    assert set(reply.json()) == {"error"} and message in reply.json()["error"]


def test_malformed_and_unknown_requests(gateway):
    bad_json = httpx.post(f"{gateway.url}/v2/models/linear/infer", content=b"{nope")
    assert bad_json.status_code == 400 and "error" in bad_json.json()
    framing = httpx.post(f"{gateway.url}/v2/models/linear/infer", content=b"{}",
                         headers={"Inference-Header-Content-Length": "99"})
    assert framing.status_code == 400
    assert httpx.get(f"{gateway.url}/v2/models/nosuch").status_code == 404
    assert httpx.get(f"{gateway.url}/v2/models/linear/versions/9").status_code == 404
    assert httpx.get(f"{gateway.url}/v2/models/linear/infer").status_code == 405


def test_tritonclient_sees_errors(client):
    tensor = httpclient.InferInput("x", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException, match="shape"):
        client.infer("linear", [tensor])
    with pytest.raises(InferenceServerException):
        client.infer("nosuch", [tensor])


def test_models_that_cannot_load_leave_the_server_up_with_a_reason(client, gateway):
    index = {(m["name"], m.get("version")): m for m in client.get_model_repository_index()}
    assert index[("iris", "1")]["state"] == "READY"
    for name in ("broken", "escape", "badconfig"):
        assert not client.is_model_ready(name)
        meta = httpx.get(f"{gateway.url}/v2/models/{name}").json()
        assert meta["state"] == "UNAVAILABLE"
    assert "outside the model repository" in httpx.get(
        f"{gateway.url}/v2/models/escape").json()["reason"]
    assert "max_batch_size" in httpx.get(f"{gateway.url}/v2/models/badconfig").json()["reason"]
    reply = httpx.post(f"{gateway.url}/v2/models/broken/infer", json={
        "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]})
    assert reply.status_code == 503 and "not ready" in reply.json()["error"]


def test_unload_and_load_through_the_repository_api(client):
    client.unload_model("pinned")
    assert not client.is_model_ready("pinned")
    client.load_model("pinned")
    assert client.is_model_ready("pinned")


def test_a_crashing_model_answers_retryably_and_is_restarted(gateway):
    def call(value: float) -> httpx.Response:
        return httpx.post(f"{gateway.url}/v2/models/crashy/infer", json={"inputs": [
            {"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [value, 1.0]}]},
            timeout=30)

    assert call(1.0).json()["outputs"][0]["data"] == [2.0]
    crashed = call(666.0)
    assert crashed.status_code == 502 and "crashed" in crashed.json()["error"]
    after = call(2.0)
    assert after.status_code in (200, 503)
    for _ in range(100):
        if call(2.0).status_code == 200:
            break
        asyncio.run(asyncio.sleep(0.1))
    assert call(2.0).json()["outputs"][0]["data"] == [3.0]
    metrics = httpx.get(f"{gateway.url}/metrics").text
    assert 'modelport_runtime_restarts_total{runtime="crashy"} 1.0' in metrics


def test_binary_output_framing_over_raw_http(gateway):
    header = orjson.dumps({"inputs": [{"name": "x", "shape": [1, FEATURES], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 16}}],
                           "outputs": [{"name": "y", "parameters": {"binary_data": True}}]})
    payload = np.ones((1, FEATURES), np.float32).tobytes()
    reply = httpx.post(f"{gateway.url}/v2/models/linear/versions/1/infer",
                       content=header + payload,
                       headers={"Inference-Header-Content-Length": str(len(header))})
    assert reply.status_code == 200
    length = int(reply.headers["inference-header-content-length"])
    meta = orjson.loads(reply.content[:length])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 4 * OUTPUTS
    y = np.frombuffer(reply.content[length:], np.float32)
    np.testing.assert_allclose(y, models.onnx_reference(np.ones((1, FEATURES), np.float32),
                                                        FEATURES, OUTPUTS).ravel(), rtol=1e-5)
