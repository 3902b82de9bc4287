"""The ledger: every request lands in the SQL store, written off the request path."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.fakes.upstream import FakeUpstream
from tests.gateway import basic_config, free_port, start_gateway

CHAT = {"model": "support-summary", "messages": [{"role": "user", "content": "hi"}]}


def _rows(url: str, request_id: str, timeout_s: float = 5) -> list[sa.Row[tuple[object, ...]]]:
    if url.startswith("postgresql://"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                with engine.connect() as conn:
                    rows = list(conn.execute(sa.text(
                        "SELECT route, target, status, prompt_tokens, completion_tokens, "
                        "stream, config_version, latency_ms, upstream_ms, overhead_ms "
                        "FROM requests WHERE request_id = :id"), {"id": request_id}))
            except sa.exc.DBAPIError:  # not there yet: the writer migrates on first flush
                rows = []
            if rows or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)
    finally:
        engine.dispose()


def _roundtrip(tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], url: str) -> None:
    gw = start_gateway(tmp_path, basic_config(upstream.base_url, url), env)
    rid = f"ledger-{time.time_ns()}"
    try:
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT, headers={"X-Request-ID": rid})
        assert r.status_code == 200
        httpx.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "model": "nope"},
                   headers={"X-Request-ID": rid + "-404"})
        stream_id = rid + "-stream"
        httpx.post(f"{gw.url}/v1/chat/completions", json={**CHAT, "stream": True},
                   headers={"X-Request-ID": stream_id})
        (row,) = _rows(url, rid)
        assert row.route == "support-summary" and row.target == "upstream-a/gpt-4o-mini"
        assert row.status == 200 and (row.prompt_tokens, row.completion_tokens) == (7, 3)
        assert row.config_version == gw.settings.config_version
        assert row.latency_ms >= row.upstream_ms > 0 and row.overhead_ms >= 0
        (missing,) = _rows(url, rid + "-404")
        assert missing.status == 404 and missing.route is None
        (streamed,) = _rows(url, stream_id)
        assert streamed.stream and streamed.completion_tokens == 4
    finally:
        gw.stop()


def test_requests_are_recorded_in_sqlite(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    _roundtrip(tmp_path, upstream, env, sqlite_url)


@pytest.mark.postgres
def test_requests_are_recorded_in_postgresql(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], postgres_url: str
) -> None:
    _roundtrip(tmp_path, upstream, env, postgres_url)


def test_requests_succeed_while_the_store_is_down_and_failures_are_counted(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str]
) -> None:
    dead = f"postgresql://nobody@127.0.0.1:{free_port()}/none?connect_timeout=1"
    config = basic_config(upstream.base_url, dead)
    config["store"]["retry_backoff_s"] = 0.05
    gw = start_gateway(tmp_path, config, env)
    try:
        with httpx.Client(base_url=gw.url, timeout=5) as c:
            for _ in range(5):
                assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                metrics = c.get("/metrics").text
                if "modelport_ledger_write_errors_total 0.0" not in metrics:
                    break
                time.sleep(0.05)
            assert "modelport_ledger_write_errors_total 0.0" not in metrics
            assert "modelport_ledger_pending 5.0" in metrics
    finally:
        gw.stop()


def test_nothing_is_recorded_when_the_ledger_is_off(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    config = basic_config(upstream.base_url, sqlite_url)
    config["store"]["ledger"] = False
    gw = start_gateway(tmp_path, config, env)
    try:
        with httpx.Client(base_url=gw.url) as c:
            assert c.post("/v1/chat/completions", json=CHAT).status_code == 200
            time.sleep(0.3)
            assert "modelport_ledger_written_total 0.0" in c.get("/metrics").text
    finally:
        gw.stop()
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM requests")).scalar() == 0
    engine.dispose()


def test_every_attempt_is_recorded_with_its_error_class(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    import orjson

    from tests.fakes.upstream import Reply

    backup = FakeUpstream().start()
    config = basic_config(upstream.base_url, sqlite_url)
    config["providers"]["upstream-b"] = {"kind": "openai", "base_url": backup.base_url}
    config["routes"]["support-summary"]["targets"].append(
        {"provider": "upstream-b", "model": "backup-model"})
    gw = start_gateway(tmp_path, config, env)
    upstream.enqueue(Reply(status=503, body={"error": {"message": "busy"}}))
    try:
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT,
                       headers={"X-Request-ID": "two-attempts"})
        assert r.status_code == 200
        assert r.headers["x-modelport-target"] == "upstream-b/backup-model"
        assert r.headers["x-modelport-attempts"] == "2"
        engine = sa.create_engine(sqlite_url)
        deadline = time.monotonic() + 5
        row = None
        while row is None and time.monotonic() < deadline:
            try:
                with engine.connect() as conn:
                    row = conn.execute(sa.text(
                        "SELECT target, attempts, attempt_log FROM requests "
                        "WHERE request_id = 'two-attempts'")).first()
            except sa.exc.DBAPIError:
                row = None
            time.sleep(0.05)
        engine.dispose()
    finally:
        gw.stop()
        backup.stop()
    assert row is not None and row.attempts == 2
    assert row.target == "upstream-b/backup-model"
    log = orjson.loads(row.attempt_log)
    assert [(a["target"], a["error_class"]) for a in log] == [
        ("upstream-a/gpt-4o-mini", "server_error"), ("upstream-b/backup-model", None)]
