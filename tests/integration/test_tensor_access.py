"""Keys on tensor models: a key calls a model as if it were a route, the repository API is the
admin key's, and errors keep the V2 shape."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fakes import models
from tests.gateway import InProcessGateway, write_config

pytest.importorskip("onnxruntime", reason="the tensor runtime needs modelport[tensor]")

from modelport.config import load_settings

ADMIN = "admin-key-for-tensor-tests-51e2"
IRIS_KEY = "key-for-iris-only-77c1a9e4"
OTHER_KEY = "key-for-other-only-3f0b2d18"
DEV_KEY = "key-for-dev-envs-9a8e7d6c"
BROKE_KEY = "key-with-no-budget-5d2c1b0a"
LINEAR = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                      "data": [1.0, 2.0, 3.0, 4.0]}]}
BODY = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32",
                    "data": [5.1, 3.5, 1.4, 0.2]}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("tensor-access")
    repository = tmp / "models"
    models.write_iris(repository)
    models.write_onnx(repository, "linear", models.linear_onnx(4, 3))
    models.write_onnx(repository, "limited", models.linear_onnx(4, 3))
    (repository / "limited" / "config.yaml").write_text("rpm: 2\n")
    path = write_config(tmp / "modelport.yaml", {
        "admin_key": "env:ADMIN",
        "store": {"url": f"sqlite:///{tmp}/mp.db"},
        "model_repository": str(repository),
        "keys": {
            "iris": {"key": "env:IRIS_KEY", "routes": ["iris"], "rpm": 3},
            "other": {"key": "env:OTHER_KEY", "routes": ["linear", "limited"]},
            "broke": {"key": "env:BROKE_KEY", "routes": ["linear"], "budget_usd": 0},
            "dev": {"key": "env:DEV_KEY", "environment": "dev"},
        },
    })
    env = {"ADMIN": ADMIN, "IRIS_KEY": IRIS_KEY, "OTHER_KEY": OTHER_KEY, "DEV_KEY": DEV_KEY,
           "BROKE_KEY": BROKE_KEY}
    gw = InProcessGateway(load_settings(path, env)).start(timeout_s=180)
    yield gw
    gw.stop()


def _infer(gateway: InProcessGateway, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{gateway.url}/v2/models/iris/infer", json=BODY, headers=headers)


def test_keys_are_checked_like_routes(gateway):
    missing = _infer(gateway, None)
    assert missing.status_code == 401 and set(missing.json()) == {"error"}
    assert _infer(gateway, OTHER_KEY).status_code == 403
    assert _infer(gateway, DEV_KEY).status_code == 403  # the model is in prod
    assert _infer(gateway, ADMIN).status_code == 401  # the admin key is not an inference key
    assert httpx.get(f"{gateway.url}/v2/models/iris",
                     headers={"Authorization": f"Bearer {OTHER_KEY}"}).status_code == 403
    replies = [_infer(gateway, IRIS_KEY) for _ in range(4)]
    assert [r.status_code for r in replies] == [200, 200, 200, 429]
    assert "retry-after" in replies[-1].headers and "error" in replies[-1].json()


def test_the_repository_api_needs_the_admin_key(gateway):
    for key in (None, IRIS_KEY):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        reply = httpx.post(f"{gateway.url}/v2/repository/index", headers=headers)
        assert reply.status_code == 401 and "admin key" in reply.json()["error"]
    admin = {"Authorization": f"Bearer {ADMIN}"}
    index = httpx.post(f"{gateway.url}/v2/repository/index", headers=admin)
    assert index.status_code == 200 and index.json()[0]["name"] == "iris"


def test_health_needs_no_key(gateway):
    assert httpx.get(f"{gateway.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{gateway.url}/v2/health/ready").json() == {"ready": True}


def test_no_repository_means_404_in_the_v2_shape(tmp_path: Path):
    path = write_config(tmp_path / "modelport.yaml",
                        {"store": {"url": f"sqlite:///{tmp_path}/x.db"}})
    gw = InProcessGateway(load_settings(path, {})).start(timeout_s=180)
    try:
        reply = httpx.post(f"{gw.url}/v2/models/iris/infer", json=BODY)
        assert reply.status_code == 404 and "model_repository" in reply.json()["error"]
    finally:
        gw.stop()


def _ledger(gateway: InProcessGateway, until: str, **params: str) -> list[dict]:
    """The admin API's request rows, once the row of request ``until`` is written (the
    ledger writer flushes every 0.2 s)."""
    import time

    deadline = time.monotonic() + 5
    while True:
        rows = httpx.get(f"{gateway.url}/admin/requests", params=params,
                         headers={"Authorization": f"Bearer {ADMIN}"}).json()["data"]
        if any(r["request_id"] == until for r in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_tensor_requests_and_their_refusals_are_in_the_ledger(gateway):
    """A V2 inference is a request like a chat: one ledger row with the model as its route,
    the version that answered, the key and environment, and the latency split; a refusal has
    its row too."""
    answered = httpx.post(f"{gateway.url}/v2/models/linear/infer", headers={
        "Authorization": f"Bearer {OTHER_KEY}", "X-Request-ID": "v2-ledger-ok"},
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                          "data": [1.0, 2.0, 3.0, 4.0]}]})
    assert answered.status_code == 200, answered.text
    refused = httpx.post(f"{gateway.url}/v2/models/linear/infer", json=BODY, headers={
        "Authorization": f"Bearer {IRIS_KEY}", "X-Request-ID": "v2-ledger-403"})
    assert refused.status_code == 403
    [ok] = [r for r in _ledger(gateway, "v2-ledger-ok", route="linear", status="200")
            if r["request_id"] == "v2-ledger-ok"]
    assert (ok["operation"], ok["route"], ok["target"], ok["model_version"]) == (
        "infer", "linear", "v2/linear", "1")
    assert (ok["key_id"], ok["environment"]) == ("cfg_other", "prod")
    assert ok["upstream_ms"] > 0 and ok["latency_ms"] >= ok["upstream_ms"]
    [no] = [r for r in _ledger(gateway, "v2-ledger-403", route="linear", status="403")
            if r["request_id"] == "v2-ledger-403"]
    assert (no["key_id"], no["operation"]) == ("cfg_iris", None)


def test_calls_that_are_not_inference_are_not_ledger_requests(gateway):
    httpx.get(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {IRIS_KEY}"})
    httpx.post(f"{gateway.url}/v1/tokens", json={"route": "iris"},
               headers={"Authorization": f"Bearer {IRIS_KEY}", "X-Request-ID": "not-a-call"})
    httpx.post(f"{gateway.url}/v2/models/iris/infer", json=BODY,
               headers={"Authorization": f"Bearer {IRIS_KEY}", "X-Request-ID": "a-call"})
    rows = _ledger(gateway, "a-call", key="cfg_iris")
    ids = {r["request_id"] for r in rows}
    assert "a-call" in ids and "not-a-call" not in ids
    assert all(r["path"].startswith("/v2/models/") for r in rows)


def test_a_models_own_limits_apply_to_every_key_and_each_refusal_is_recorded(gateway):
    """``rpm`` in a tensor model's config.yaml is the model's limit, as a route's: 429 with
    Retry-After past it, recorded with the key like a chat refusal."""
    auth = {"Authorization": f"Bearer {OTHER_KEY}"}
    replies = [httpx.post(f"{gateway.url}/v2/models/limited/infer", json=LINEAR,
                          headers={**auth, "X-Request-ID": f"limited-{i}"}) for i in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 429]
    assert int(replies[-1].headers["retry-after"]) >= 1
    assert set(replies[-1].json()) == {"error"}
    [row] = [r for r in _ledger(gateway, "limited-2", route="limited", status="429")
             if r["request_id"] == "limited-2"]
    assert (row["key_id"], row["error_code"], row["environment"]) == (
        "cfg_other", "rate_limit_exceeded", "prod")


def test_a_keys_budget_applies_to_tensor_models(gateway):
    """A key whose budget is spent (here: a budget of 0) is refused a tensor model too."""
    reply = httpx.post(f"{gateway.url}/v2/models/linear/infer", json=LINEAR, headers={
        "Authorization": f"Bearer {BROKE_KEY}", "X-Request-ID": "v2-broke"})
    assert reply.status_code == 429 and "retry-after" in reply.headers
    assert "budget" in reply.json()["error"].lower()
    [row] = [r for r in _ledger(gateway, "v2-broke", route="linear", status="429")
             if r["request_id"] == "v2-broke"]
    assert (row["key_id"], row["error_code"]) == ("cfg_broke", "budget_exceeded")


def test_a_bad_priority_header_is_a_400_in_the_v2_shape(gateway):
    reply = httpx.post(f"{gateway.url}/v2/models/iris/infer", json=BODY, headers={
        "Authorization": f"Bearer {IRIS_KEY}", "X-Priority": "urgent"})
    assert reply.status_code == 400 and "X-Priority" in reply.json()["error"]


def test_a_switched_off_tensor_model_is_refused_in_the_v2_shape_until_turned_on(gateway):
    admin = {"Authorization": f"Bearer {ADMIN}"}
    other = {"Authorization": f"Bearer {OTHER_KEY}"}

    def switch(state: str, scope: str = "route", **extra: str) -> httpx.Response:
        return httpx.post(f"{gateway.url}/admin/switches", headers=admin, json={
            "scope": scope, "name": "linear", "state": state, **extra})

    assert switch("off", message="linear is paused").status_code == 201
    try:
        reply = httpx.post(f"{gateway.url}/v2/models/linear/infer", json=LINEAR,
                           headers=other)
        assert (reply.status_code, reply.json()) == (503, {"error": "linear is paused"})
    finally:
        assert switch("on").status_code == 200
    assert switch("off", scope="model", behaviour="answer", message="no").status_code == 201
    try:  # a tensor model carries no text: an answering switch refuses with its text
        reply = httpx.post(f"{gateway.url}/v2/models/linear/infer", json=LINEAR,
                           headers=other)
        assert (reply.status_code, reply.json()) == (503, {"error": "no"})
    finally:
        assert switch("on", scope="model").status_code == 200
    assert httpx.post(f"{gateway.url}/v2/models/linear/infer", json=LINEAR,
                      headers=other).status_code == 200
