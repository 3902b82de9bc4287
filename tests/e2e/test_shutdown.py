"""Stopping the server flushes the ledger: nothing it answered is lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.fakes.upstream import FakeUpstream
from tests.gateway import ServeProcess, basic_config, write_config


def test_sigterm_flushes_every_answered_request_to_the_ledger(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str]
) -> None:
    db = tmp_path / "ledger.db"
    config = basic_config(upstream.base_url, f"sqlite:///{db}")
    config["store"]["flush_interval_s"] = 30  # only the shutdown flush can write these
    proc = ServeProcess(write_config(tmp_path / "modelport.yaml", config), env, tmp_path)
    proc.wait_ready()
    with httpx.Client(base_url=proc.url) as c:
        for i in range(20):
            r = c.post("/v1/chat/completions", headers={"X-Request-ID": f"flush-{i}"},
                       json={"model": "support-summary", "messages": []})
            assert r.status_code == 200
    log = proc.stop()
    # uvicorn re-raises the signal after a clean shutdown, as a well-behaved process does
    assert proc.proc.returncode in (0, -15)
    assert "Application shutdown complete" in log
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM requests WHERE request_id LIKE 'flush-%'").fetchone()
    assert count == 20
