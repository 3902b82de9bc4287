"""``modelport logs``, run as a user would, over a ledger that a real server filled."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import basic_config, start_gateway


def _logs(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport.cli.main", "logs", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "UPSTREAM_A_KEY": "k" * 20})


def test_logs_pages_filters_and_shows_one_request(tmp_path: Path, upstream: FakeUpstream) -> None:
    gw = start_gateway(tmp_path, basic_config(upstream.base_url,
                                              f"sqlite:///{tmp_path}/ledger.db"),
                       {"UPSTREAM_A_KEY": "k" * 20})
    try:
        chat = {"model": "support-summary", "messages": [{"role": "user", "content": "hi"}]}
        ok = httpx.post(f"{gw.url}/v1/chat/completions", json=chat)
        upstream.enqueue(Reply(status=400, body={"error": {"message": "bad", "code": None}}))
        bad = httpx.post(f"{gw.url}/v1/chat/completions", json=chat)
        assert (ok.status_code, bad.status_code) == (200, 400)
        time.sleep(0.5)  # the ledger writes every 0.05 s in this config
    finally:
        gw.stop()

    table = _logs(tmp_path)
    assert table.returncode == 0, table.stderr
    assert ok.headers["x-request-id"] in table.stdout
    assert bad.headers["x-request-id"] in table.stdout
    assert "REQUEST ID" in table.stdout
    errors = _logs(tmp_path, "--status", "4xx", "--json")
    assert [r["request_id"] for r in json.loads(errors.stdout)] == [bad.headers["x-request-id"]]
    one = _logs(tmp_path, "--id", ok.headers["x-request-id"])
    record = json.loads(one.stdout)
    assert record["route"] == "support-summary" and record["status"] == 200
    assert record["model_version"] == "gpt-4o-mini"
    missing = _logs(tmp_path, "--id", "nope")
    assert missing.returncode == 1 and "no request 'nope'" in missing.stderr
    wrong = _logs(tmp_path, "--since", "yesterday")
    assert wrong.returncode == 2 and "--since" in wrong.stderr and "Traceback" not in wrong.stderr
