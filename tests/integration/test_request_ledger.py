"""Looking requests up (``/admin/requests``), user feedback (``/v1/feedback``), captured
bodies masked and deleted after their retention period."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from modelport.store.engine import open_engine
from modelport.store.requests import RequestStore
from modelport.store.retention import BodyRetention
from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import InProcessGateway, start_gateway
from tests.integration.access_setup import ADMIN_KEY, KEY_ALL, KEY_R1, access_config, access_env

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def second() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def gateway(tmp_path: Path, upstream: FakeUpstream, second: FakeUpstream
            ) -> Iterator[tuple[InProcessGateway, str]]:
    store_url = f"sqlite:///{tmp_path}/ledger.db"
    config = access_config(upstream.base_url, store_url)
    config["providers"]["upstream-b"] = {"kind": "openai", "base_url": second.base_url,
                                         "api_key": "env:UPSTREAM_A_KEY"}
    config["routes"]["r1"]["targets"][0]["version"] = "m1-2026-11"
    config["routes"]["r1"]["targets"].append({"provider": "upstream-b", "model": "m1b"})
    config["routes"]["r1"]["timeout_s"] = 0.3
    config["routes"]["r2"].update(capture=True, retention_days=1)
    gw = start_gateway(tmp_path, config, access_env())
    yield gw, store_url
    gw.stop()


def _call(gw: InProcessGateway, route: str, key: str, content: str = "hi") -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": route, "messages": [{"role": "user", "content": content}]})


def _record(gw: InProcessGateway, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        reply = httpx.get(f"{gw.url}/admin/requests/{request_id}", headers=ADMIN)
        if reply.status_code == 200 or time.monotonic() > deadline:
            assert reply.status_code == 200, reply.text
            return reply.json()  # type: ignore[no-any-return]
        time.sleep(0.05)


def test_a_retried_fallen_back_request_is_recorded_field_by_field(gateway, upstream):
    gw, _ = gateway
    upstream.enqueue(Reply(status=503, body={"error": {"message": "busy"}}))
    reply = _call(gw, "r1", KEY_ALL)
    assert reply.status_code == 200
    record = _record(gw, reply.headers["x-request-id"])
    assert record["request_id"] == reply.headers["x-request-id"]
    assert record["route"] == "r1" and record["target"] == "upstream-b/m1b"
    assert record["model_version"] == "m1b"
    assert record["key_id"] is not None and record["environment"] == "prod"
    assert record["config_version"] == gw.settings.config_version
    assert record["status"] == 200 and record["error_code"] is None
    assert record["attempts"] == 2
    first, last = record["attempt_log"]
    assert (first["target"], first["status"], first["error_class"]) == (
        "upstream-a/m1", 502, "server_error")
    assert (last["target"], last["error_class"]) == ("upstream-b/m1b", None)
    assert record["latency_ms"] >= record["upstream_ms"] > 0
    assert record["overhead_ms"] >= 0 and record["queue_ms"] is None
    assert record["prompt_tokens"] == 7 and record["completion_tokens"] > 0
    assert record["cost_usd"] is not None
    assert record["feedback"] == [] and record["request_body"] is None
    assert record["created_at"].endswith("Z")


def test_the_model_version_and_failures_are_recorded(gateway, upstream):
    gw, _ = gateway
    ok = _call(gw, "r1", KEY_ALL)
    assert _record(gw, ok.headers["x-request-id"])["model_version"] == "m1-2026-11"
    denied = _call(gw, "r2", KEY_R1)
    assert denied.status_code == 403
    record = _record(gw, denied.headers["x-request-id"])
    assert record["status"] == 403 and record["error_code"] == "permission_denied"


def test_requests_page_with_filters(gateway):
    gw, _ = gateway
    ids = [_call(gw, "r1", KEY_ALL).headers["x-request-id"] for _ in range(3)]
    other = _call(gw, "r2", KEY_ALL).headers["x-request-id"]
    refused = _call(gw, "r2", KEY_R1).headers["x-request-id"]
    _record(gw, refused)

    def page(**params: str) -> dict[str, Any]:
        reply = httpx.get(f"{gw.url}/admin/requests", params=params, headers=ADMIN)
        assert reply.status_code == 200, reply.text
        return reply.json()  # type: ignore[no-any-return]

    assert [r["request_id"] for r in page(route="r1")["data"]] == ids[::-1]
    assert [r["request_id"] for r in page(status="4xx")["data"]] == [refused]
    assert [r["request_id"] for r in page(status="403")["data"]] == [refused]
    first = page(route="r1", limit="2")
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = page(route="r1", limit="2", cursor=first["next_cursor"])
    assert [r["request_id"] for r in rest["data"]] == [ids[0]] and rest["next_cursor"] is None
    key_id = _record(gw, other)["key_id"]
    assert other in [r["request_id"] for r in page(key=key_id, since="1h")["data"]]
    assert page(until="2000-01-01T00:00:00Z")["data"] == []
    assert page(since=(datetime.now(UTC) + timedelta(hours=1)).isoformat())["data"] == []


@pytest.mark.parametrize("params", [{"status": "abc"}, {"since": "yesterday"}, {"limit": "-1"},
                                    {"colour": "red"}, {"cursor": "x"}])
def test_bad_filters_are_400s(gateway, params):
    gw, _ = gateway
    reply = httpx.get(f"{gw.url}/admin/requests", params=params, headers=ADMIN)
    assert reply.status_code == 400 and reply.json()["error"]["message"]


def test_the_ledger_api_is_the_admin_keys(gateway):
    gw, _ = gateway
    for path in ("/admin/requests", "/admin/requests/x", "/admin/feedback"):
        reply = httpx.get(f"{gw.url}{path}", headers={"Authorization": f"Bearer {KEY_ALL}"})
        assert reply.status_code == 401
    assert httpx.get(f"{gw.url}/admin/requests/nope", headers=ADMIN).status_code == 404


def test_feedback_attaches_to_the_keys_own_request(gateway):
    gw, _ = gateway
    request_id = _call(gw, "r1", KEY_ALL).headers["x-request-id"]

    def feedback(key: str, **body: Any) -> httpx.Response:
        return httpx.post(f"{gw.url}/v1/feedback", headers={"Authorization": f"Bearer {key}"},
                          json={"request_id": request_id, **body})

    # right after the answer: found in memory before the ledger has it
    made = feedback(KEY_ALL, outcome="edited", score=0.5,
                    correction="Better answer; write to ann@example.com",
                    comment=f"too terse (my key is {KEY_R1})")
    assert made.status_code == 201, made.text
    assert made.json()["model_version"] == "m1-2026-11"
    assert feedback(KEY_R1, outcome="accepted").status_code == 404  # another key's request
    missing = httpx.post(f"{gw.url}/v1/feedback", headers={"Authorization": f"Bearer {KEY_ALL}"},
                         json={"request_id": "no-such-request", "outcome": "accepted"})
    assert missing.status_code == 404
    assert feedback(KEY_ALL, outcome="great").status_code == 400
    huge = httpx.post(f"{gw.url}/v1/feedback", headers={"Authorization": f"Bearer {KEY_ALL}"},
                      content=f'{{"request_id": "{request_id}", "outcome": "accepted", '
                              '"score": 1e999}'.encode())
    assert huge.status_code == 400
    assert httpx.post(f"{gw.url}/v1/feedback", json={"request_id": request_id,
                                                     "outcome": "accepted"}).status_code == 401
    assert feedback(KEY_ALL, outcome="rejected").status_code == 201
    assert feedback(KEY_ALL, outcome="accepted").status_code == 201
    record = _record(gw, request_id)
    assert [f["outcome"] for f in record["feedback"]] == ["edited", "rejected", "accepted"]
    # masked like captured bodies before they are stored
    assert record["feedback"][0]["correction"] == "Better answer; write to [MASKED:email]"
    assert KEY_R1 not in record["feedback"][0]["comment"]
    assert "[MASKED:" in record["feedback"][0]["comment"]
    metrics = httpx.get(f"{gw.url}/metrics", headers=ADMIN).text
    assert ('modelport_feedback_total{model_version="m1-2026-11",outcome="edited",'
            'route="r1"} 1.0') in metrics
    summary = httpx.get(f"{gw.url}/admin/feedback", headers=ADMIN).json()["data"]
    assert summary == [{"route": "r1", "model_version": "m1-2026-11", "accepted": 1,
                        "edited": 1, "rejected": 1, "total": 3,
                        "correction_rate": pytest.approx(2 / 3)}]


def test_feedback_found_in_the_ledger_after_a_restart(tmp_path, upstream):
    store_url = f"sqlite:///{tmp_path}/restart.db"
    gw = start_gateway(tmp_path, access_config(upstream.base_url, store_url), access_env())
    request_id = _call(gw, "r1", KEY_ALL).headers["x-request-id"]
    _record(gw, request_id)
    gw.stop()
    gw = start_gateway(tmp_path, access_config(upstream.base_url, store_url), access_env())
    try:
        reply = httpx.post(f"{gw.url}/v1/feedback",
                           headers={"Authorization": f"Bearer {KEY_ALL}"},
                           json={"request_id": request_id, "outcome": "accepted"})
        assert reply.status_code == 201, reply.text
    finally:
        gw.stop()


def test_captured_bodies_are_masked_and_deleted_after_retention(gateway):
    gw, store_url = gateway
    reply = _call(gw, "r2", KEY_ALL, content="reach me at jane.doe@example.com")
    request_id = reply.headers["x-request-id"]
    record = _record(gw, request_id)
    assert "[MASKED:email]" in record["request_body"]
    assert "jane.doe@example.com" not in record["request_body"]
    assert record["response_body"]

    engine = open_engine(store_url)
    try:
        store = RequestStore(engine)
        sweep = BodyRetention(store, {"r2": 1}).sweep
        assert asyncio.run(sweep()) == 0  # not old enough yet
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE requests SET created_at = :old WHERE request_id = :i"),
                         {"old": "2000-01-01 00:00:00.000000", "i": request_id})
        assert asyncio.run(sweep()) == 1
        kept = store.get(request_id)
        assert kept is not None
        assert kept["request_body"] is None and kept["response_body"] is None
        assert kept["status"] == 200  # the rest of the record stays
    finally:
        engine.dispose()


def test_the_queue_wait_is_recorded(tmp_path: Path, upstream: FakeUpstream) -> None:
    config = access_config(upstream.base_url, f"sqlite:///{tmp_path}/q.db")
    config["routes"]["r1"]["targets"][0].update(max_concurrency=1, max_queue=4)
    gw = start_gateway(tmp_path, config, access_env())
    try:
        upstream.enqueue(Reply(delay_s=0.3), Reply(delay_s=0.3))

        async def both() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
                headers = {"Authorization": f"Bearer {KEY_ALL}"}
                body = {"model": "r1", "messages": [{"role": "user", "content": "hi"}]}
                return list(await asyncio.gather(
                    *(http.post("/v1/chat/completions", json=body, headers=headers)
                      for _ in range(2))))

        replies = asyncio.run(both())
        waits = sorted((_record(gw, r.headers["x-request-id"])["queue_ms"] or 0.0)
                       for r in replies)
        assert waits[0] < 50 and waits[1] >= 200, waits
    finally:
        gw.stop()
