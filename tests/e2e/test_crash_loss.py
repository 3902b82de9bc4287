"""What a crash can cost the ledger, and what a stop cannot, on SQLite and PostgreSQL.

docs/observability.md promises: on SIGTERM every answered request is written; on kill -9
only records answered within the last ``store.flush_interval_s`` (plus the time one write
takes) can be lost, since the store is migrated before the server answers anything.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.fakes.upstream import FakeUpstream
from tests.gateway import ServeProcess, basic_config, write_config

FLUSH_S = 0.2
WRITE_SLACK_S = 0.5  # one batch's write, on a busy two-core machine


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    url = os.environ.get("MODELPORT_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MODELPORT_TEST_POSTGRES_URL is not set; PostgreSQL tests skipped")
    return url


def _recorded(store_url: str, prefix: str) -> set[str]:
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT request_id FROM requests WHERE request_id "
                                        "LIKE :p"), {"p": prefix + "%"})
            return {row[0] for row in rows}
    finally:
        engine.dispose()


def _serve(tmp_path: Path, upstream: FakeUpstream, env: dict[str, str],
           store_url: str) -> ServeProcess:
    config = basic_config(upstream.base_url, store_url)
    config["store"]["flush_interval_s"] = FLUSH_S
    return ServeProcess(write_config(tmp_path / "modelport.yaml", config), env,
                        tmp_path).wait_ready()


def _traffic(proc: ServeProcess, prefix: str, seconds: float) -> list[tuple[str, float]]:
    """Requests one after another for ``seconds``; each id with when its answer arrived."""
    answered = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=proc.url) as c:
        i = 0
        while time.monotonic() < deadline:
            rid = f"{prefix}{i}"
            r = c.post("/v1/chat/completions", headers={"X-Request-ID": rid},
                       json={"model": "support-summary", "messages": []})
            assert r.status_code == 200, r.text
            answered.append((rid, time.monotonic()))
            i += 1
    return answered


def test_kill_9_loses_only_the_last_flush_interval(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], store_url: str
) -> None:
    prefix = f"crash-{uuid.uuid4().hex[:8]}-"
    proc = _serve(tmp_path, upstream, env, store_url)
    answered = _traffic(proc, prefix, 1.5)
    killed_at = time.monotonic()
    os.kill(proc.proc.pid, signal.SIGKILL)
    proc.proc.wait(10)
    proc.stop()
    recorded = _recorded(store_url, prefix)
    window = killed_at - FLUSH_S - WRITE_SLACK_S
    safe = {rid for rid, at in answered if at < window}
    assert safe <= recorded, f"{len(safe - recorded)} lost from before the window"
    lost = len(answered) - len(recorded & {rid for rid, _ in answered})
    assert lost <= len(answered) - len(safe)
    assert len(answered) > 20  # enough traffic that the bound says something


def test_sigterm_loses_nothing(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], store_url: str
) -> None:
    prefix = f"stop-{uuid.uuid4().hex[:8]}-"
    proc = _serve(tmp_path, upstream, env, store_url)
    answered = _traffic(proc, prefix, 0.5)
    proc.stop()
    assert proc.proc.returncode in (0, -signal.SIGTERM)
    assert _recorded(store_url, prefix) == {rid for rid, _ in answered}
