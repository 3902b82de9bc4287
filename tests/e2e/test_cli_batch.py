"""``modelport batch`` against ``modelport serve``: submit with progress and results, status,
results, cancel, and one clear line for a bad file, a wrong key or no server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import ServeProcess, basic_config, free_port, write_config

KEY = "sk-batch-cli-key-0123456789abcdef"
ADMIN = "admin-key-for-batch-cli-0123456789"


@pytest.fixture
def served(tmp_path: Path, upstream: FakeUpstream, env: dict[str, str],
           sqlite_url: str) -> Iterator[ServeProcess]:
    config = basic_config(upstream.base_url, sqlite_url)
    config["admin_key"] = "env:ADMIN_KEY"
    config["keys"] = {"app": {"key": "env:APP_KEY"}}
    config["batch"] = {"poll_s": 0.05}
    path = write_config(tmp_path / "modelport.yaml", config)
    proc = ServeProcess(path, {**env, "ADMIN_KEY": ADMIN, "APP_KEY": KEY}, tmp_path)
    yield proc.wait_ready()
    proc.stop()


def batch_cli(cwd: Path, url: str, *args: str, key: str = KEY
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport.cli.main", "batch", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "MODELPORT_URL": url,
                               "MODELPORT_API_KEY": key})


def test_submit_waits_with_progress_and_writes_the_results(
        served: ServeProcess, upstream: FakeUpstream, tmp_path: Path) -> None:
    source = tmp_path / "tickets.jsonl"
    bodies = [{"messages": [{"role": "user", "content": f"ticket {i}"}]} for i in range(20)]
    source.write_text("".join(json.dumps(b) + "\n" for b in bodies))
    upstream.enqueue(*[Reply(delay_s=0.05) for _ in range(20)])
    done = batch_cli(tmp_path, served.url, "submit", str(source), "--route",
                     "support-summary", "--wait")
    assert done.returncode == 0, done.stderr
    batch_id = done.stdout.split(":")[0]
    assert batch_id.startswith("batch_")
    assert "20/20 (20 done, 0 failed)" in done.stderr and "lines/s" in done.stderr
    out = [json.loads(x) for x in (tmp_path / "tickets.jsonl.out.jsonl").read_text()
           .splitlines()]
    assert sorted(o["custom_id"] for o in out) == sorted(f"line-{i}" for i in range(1, 21))
    assert {r.body["model"] for r in upstream.requests} == {"gpt-4o-mini"}
    status = batch_cli(tmp_path, served.url, "status", batch_id)
    assert status.stdout.strip() == f"{batch_id}: completed, 20 done, 0 failed of 20"
    results = batch_cli(tmp_path, served.url, "results", batch_id, "--output", "again.jsonl")
    assert results.returncode == 0 and (tmp_path / "again.jsonl").read_text().count("\n") == 20


def test_cancel_from_the_cli(served: ServeProcess, upstream: FakeUpstream,
                             tmp_path: Path) -> None:
    source = tmp_path / "slow.jsonl"
    source.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "x"}]})
                              + "\n" for _ in range(100)))
    upstream.enqueue(*[Reply(delay_s=0.2) for _ in range(100)])
    started = batch_cli(tmp_path, served.url, "submit", str(source), "--route",
                        "support-summary")
    batch_id = started.stdout.split(":")[0]
    cancelled = batch_cli(tmp_path, served.url, "cancel", batch_id)
    assert cancelled.stdout.strip() in (f"{batch_id}: cancelling", f"{batch_id}: cancelled")
    waited = batch_cli(tmp_path, served.url, "status", batch_id, "--wait")
    assert "cancelled" in waited.stdout


def test_clear_errors(served: ServeProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    refused = batch_cli(tmp_path, served.url, "submit", str(bad), "--route", "support-summary")
    assert refused.returncode == 2 and "line 2 is not valid JSON" in refused.stderr
    dup = tmp_path / "dup.jsonl"
    line = {"custom_id": "a", "url": "/v1/chat/completions",
            "body": {"model": "support-summary", "messages": []}}
    dup.write_text(json.dumps(line) + "\n" + json.dumps(line) + "\n")
    twice = batch_cli(tmp_path, served.url, "submit", str(dup))
    assert twice.returncode == 2
    assert "400: Line 2: custom_id 'a' is already used on line 1" in twice.stderr
    wrong = batch_cli(tmp_path, served.url, "status", "batch_x", key="sk-wrong-key-00000000000")
    assert wrong.returncode == 1 and wrong.stderr.startswith("modelport: 401:")
    missing = batch_cli(tmp_path, served.url, "status", "batch_nope")
    assert missing.returncode == 2 and "404: No batch 'batch_nope'" in missing.stderr
    nobody = batch_cli(tmp_path, f"http://127.0.0.1:{free_port()}", "status", "batch_x")
    assert nobody.returncode == 1 and "cannot reach the server" in nobody.stderr
    for result in (refused, twice, wrong, missing, nobody):
        assert "Traceback" not in result.stderr and KEY not in result.stderr
