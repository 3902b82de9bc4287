"""Config versions on ``modelport serve``, driven as an operator would: ``modelport config
apply|history|diff|show|rollback`` against the running server, ``SIGHUP`` after editing the
file, a broken config refused with its problems while the server goes on, and ten reloads
under 32 concurrent clients that lose and fail no request."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream
from tests.gateway import ServeProcess, write_config

ADMIN_KEY = "admin-planted-secret-61fe02bd"
APP_KEY = "app-planted-secret-d2c4a817"
ENV = {"UPSTREAM_A_KEY": UPSTREAM_KEY, "CV_ADMIN_KEY": ADMIN_KEY, "CV_APP_KEY": APP_KEY}


def config(upstream: FakeUpstream, store: Path, model: str) -> dict[str, Any]:
    return {
        "admin_key": "env:CV_ADMIN_KEY",
        "keys": {"app": {"key": "env:CV_APP_KEY"}},
        "store": {"url": f"sqlite:///{store}", "flush_interval_s": 0.05},
        "providers": {"p": {"kind": "openai", "base_url": upstream.base_url,
                            "api_key": "env:UPSTREAM_A_KEY"}},
        "routes": {"chat": {"targets": [{"provider": "p", "model": model}]}},
    }


@pytest.fixture
def served(tmp_path: Path, upstream: FakeUpstream) -> Any:
    path = write_config(tmp_path / "modelport.yaml", config(upstream, tmp_path / "s.db", "m1"))
    proc = ServeProcess(path, ENV, tmp_path).wait_ready()
    yield proc
    proc.stop()


def modelport(cwd: Path, url: str, *args: str, key: str | None = ADMIN_KEY
              ) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "MODELPORT_URL": url}
    if key is not None:
        env["MODELPORT_ADMIN_KEY"] = key
    return subprocess.run([sys.executable, "-m", "modelport.cli.main", "config", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60, env=env)


def target(url: str) -> str:
    reply = httpx.post(f"{url}/v1/chat/completions", timeout=10,
                       headers={"Authorization": f"Bearer {APP_KEY}"},
                       json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 200, reply.text
    return reply.headers["x-modelport-target"]


def test_apply_history_diff_show_and_rollback_from_the_command_line(
    served: ServeProcess, upstream: FakeUpstream, tmp_path: Path
) -> None:
    url = served.url
    assert target(url) == "p/m1"
    new = write_config(tmp_path / "new.yaml", config(upstream, tmp_path / "s.db", "m2"))
    applied = modelport(tmp_path, url, "apply", str(new), "--reason", "move to m2")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.startswith("applied: version 2 (config ")
    assert "routes changed: chat" in applied.stdout
    assert target(url) == "p/m2"

    history = modelport(tmp_path, url, "history")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert lines[1].startswith("*") and " 2 " in lines[1] and "move to m2" in lines[1]
    assert "cli:" in lines[1] and "start" in lines[2]
    diff = modelport(tmp_path, url, "diff", "1", "2").stdout
    assert "-      model: m1\n+      model: m2" in diff
    shown = modelport(tmp_path, url, "show", "1").stdout
    assert "model: m1" in shown and UPSTREAM_KEY not in shown

    back = modelport(tmp_path, url, "rollback", "1", "--reason", "m2 is worse")
    assert back.returncode == 0, back.stderr
    assert back.stdout.startswith("applied: version 3")
    assert target(url) == "p/m1"
    assert "model: m1" in modelport(tmp_path, url, "show").stdout

    unchanged = modelport(tmp_path, url, "apply", str(tmp_path / "modelport.yaml"))
    assert unchanged.stdout.startswith("unchanged:")


def test_a_broken_config_is_refused_with_every_problem_and_exit_status_2(
    served: ServeProcess, upstream: FakeUpstream, tmp_path: Path
) -> None:
    broken = config(upstream, tmp_path / "s.db", "m2")
    broken["routes"]["chat"]["targets"][0]["provider"] = "nosuch"
    broken["routes"]["chat"]["targets"].append(
        {"provider": "p", "model": "c", "canary": {"percent": -5}})
    path = write_config(tmp_path / "broken.yaml", broken)
    refused = modelport(tmp_path, served.url, "apply", str(path))
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr
    assert "routes.chat.targets[1].canary.percent" in refused.stderr
    assert "nosuch" in refused.stderr
    assert target(served.url) == "p/m1"
    no_key = modelport(tmp_path, served.url, "history", key=None)
    assert no_key.returncode == 1 and "MODELPORT_ADMIN_KEY" in no_key.stderr
    wrong = modelport(tmp_path, served.url, "history", key="not-the-admin-key-at-all")
    assert wrong.returncode == 1 and "401" in wrong.stderr
    down = modelport(tmp_path, "http://127.0.0.1:9", "history")
    assert down.returncode == 1 and "cannot reach the server" in down.stderr


def test_sighup_rereads_the_file_and_a_broken_one_leaves_the_server_serving(
    served: ServeProcess, upstream: FakeUpstream, tmp_path: Path
) -> None:
    path = tmp_path / "modelport.yaml"
    write_config(path, config(upstream, tmp_path / "s.db", "m2"))
    served.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while target(served.url) != "p/m2":
        assert time.monotonic() < deadline, served.log()
        time.sleep(0.05)
    path.write_text("routes:\n  chat: {targets: [{provider: nosuch, model: x}]}\n")
    served.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "config not applied" not in served.log():
        assert time.monotonic() < deadline, served.log()
        time.sleep(0.05)
    assert "routes.chat.targets[0].provider" in served.log()
    assert served.proc.poll() is None
    assert target(served.url) == "p/m2"
    history = modelport(tmp_path, served.url, "history", "--json")
    assert '"action": "signal"' in history.stdout


def test_ten_reloads_under_32_concurrent_clients_lose_and_fail_no_request(
    served: ServeProcess, upstream: FakeUpstream, tmp_path: Path
) -> None:
    texts = [write_config(tmp_path / f"v{i}.yaml",
                          config(upstream, tmp_path / "s.db", f"m{i % 2}")).read_text()
             for i in range(10)]
    statuses: list[int] = []
    versions: set[str] = set()

    async def client(http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        while not stop.is_set():
            reply = await http.post("/v1/chat/completions", json={
                "model": "chat", "messages": [{"role": "user", "content": "hi"}]})
            statuses.append(reply.status_code)
            versions.add(reply.headers.get("x-modelport-config-version", ""))

    async def run() -> list[int]:
        stop = asyncio.Event()
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=served.url, limits=limits, timeout=30,
                                     headers={"Authorization": f"Bearer {APP_KEY}"}) as http:
            tasks = [asyncio.create_task(client(http, stop)) for _ in range(32)]
            await asyncio.sleep(0.3)
            applied = []
            for text in texts:
                reply = await http.put("/admin/config", content=text, headers={
                    "Authorization": f"Bearer {ADMIN_KEY}",
                    "Content-Type": "application/yaml"})
                applied.append(reply.status_code)
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*tasks)
        return applied

    applied = asyncio.run(run())
    assert applied == [200] * 10
    assert len(statuses) > 100
    assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert len(versions) == 2  # both versions served; nothing answered without one
