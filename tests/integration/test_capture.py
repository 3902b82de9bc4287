"""Bodies are kept only where a route asks for them with ``capture: true``."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.fakes.upstream import FakeUpstream
from tests.gateway import basic_config, start_gateway

CHAT = {"model": "support-summary", "messages": [{"role": "user", "content": "needle-4711"}]}


def _bodies(url: str, request_id: str) -> tuple[bytes | None, bytes | None]:
    engine = sa.create_engine(url)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                with engine.connect() as conn:
                    row = conn.execute(sa.text(
                        "SELECT request_body, response_body FROM requests WHERE request_id = :i"),
                        {"i": request_id}).first()
            except sa.exc.OperationalError:  # the writer creates the table on its first flush
                row = None
            if row is not None or time.monotonic() > deadline:
                assert row is not None
                return row.request_body, row.response_body
            time.sleep(0.05)
    finally:
        engine.dispose()


@pytest.mark.parametrize("capture", [True, False])
def test_bodies_are_stored_and_logged_only_with_capture(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str,
    capture: bool,
) -> None:
    gw = start_gateway(tmp_path, basic_config(upstream.base_url, sqlite_url, capture=capture),
                       env)
    try:
        r = httpx.post(f"{gw.url}/v1/chat/completions", json=CHAT,
                       headers={"X-Request-ID": "cap-1"})
        assert r.status_code == 200
        request_body, response_body = _bodies(sqlite_url, "cap-1")
        logged = gw.access_lines()
    finally:
        gw.stop()
    assert len(logged) == 1 and logged[0]["request_id"] == "cap-1"
    if capture:
        assert request_body is not None and b"needle-4711" in request_body
        assert response_body is not None and b"Hello from the fake" in response_body
        assert "needle-4711" in logged[0]["request_body"]
    else:
        assert request_body is None and response_body is None
        assert "request_body" not in logged[0] and "needle-4711" not in str(logged[0])
