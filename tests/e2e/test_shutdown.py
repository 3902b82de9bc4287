"""Stopping the server flushes the ledger: nothing it answered is lost."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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


def test_sigterm_to_the_process_group_stops_local_models_without_crash_reports(
    tmp_path: Path,
) -> None:
    pytest.importorskip("sklearn", reason="needs modelport[tensor]")
    from tests.fakes.models import write_iris
    from tests.gateway import free_port

    write_iris(tmp_path / "models")
    config = write_config(tmp_path / "modelport.yaml", {
        "store": {"url": f"sqlite:///{tmp_path}/mp.db"}, "model_repository": "models"})
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelport.cli.main", "serve", "--config", str(config),
         "--port", str(port)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/models/iris/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)  # as systemd does: the whole group
        assert proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises it after draining
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "model_ready" in text and "Application shutdown complete" in text
    assert "runtime_crashed" not in text and "Traceback" not in text
