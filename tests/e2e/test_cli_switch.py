"""``modelport switch``, run as a user would, against a running server sharing its store: the
server applies what the command wrote within its key poll, and the audit log says who."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from modelport.config import load_settings
from tests.fakes.upstream import FakeUpstream
from tests.gateway import InProcessGateway, write_config
from tests.gateway import run_modelport as modelport


@pytest.fixture
def workdir(tmp_path: Path, upstream: FakeUpstream) -> Path:
    write_config(tmp_path / "modelport.yaml", {
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
        "providers": {"p": {"kind": "openai", "base_url": upstream.base_url}},
        "routes": {
            "support-summary": {"targets": [{"provider": "p", "model": "m"}]},
            "backup": {"targets": [{"provider": "p", "model": "m2"}]},
        },
    })
    return tmp_path


def chat(url: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={
        "model": "support-summary", "messages": [{"role": "user", "content": "hi"}]})


def until(check: object, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the server did not apply the switch in time"
        time.sleep(0.05)


def test_switch_off_and_on_from_the_cli_reach_a_running_server(workdir: Path) -> None:
    gateway = InProcessGateway(load_settings(workdir / "modelport.yaml", {})).start()
    try:
        assert chat(gateway.url).status_code == 200
        done = modelport(workdir, "switch", "off", "--route", "support-summary",
                         "--message", "Paused while we fix it.", "--reason", "incident 42")
        assert done.returncode == 0, done.stderr
        assert "support-summary is off (refuse)" in done.stdout
        until(lambda: chat(gateway.url).status_code == 503)
        assert chat(gateway.url).json()["error"]["message"] == "Paused while we fix it."
        listed = json.loads(modelport(workdir, "switch", "list", "--json").stdout)
        assert [(s["scope"], s["name"], s["reason"]) for s in listed] == [
            ("route", "support-summary", "incident 42")]
        assert listed[0]["actor"].startswith("cli:")
        table = modelport(workdir, "switch", "list").stdout
        assert "support-summary" in table and "incident 42" in table

        moved = modelport(workdir, "switch", "off", "--route", "support-summary",
                          "--fallback", "backup", "--reason", "serve from the backup")
        assert moved.returncode == 0, moved.stderr
        until(lambda: chat(gateway.url).headers.get("x-modelport-target") == "p/m2")

        back = modelport(workdir, "switch", "on", "--route", "support-summary")
        assert back.returncode == 0 and "is on" in back.stdout
        until(lambda: chat(gateway.url).headers.get("x-modelport-target") == "p/m")
        assert "Nothing is switched off." in modelport(workdir, "switch", "list").stdout
    finally:
        gateway.stop()


@pytest.mark.parametrize(("args", "says"), [
    (["off", "--route", "nosuch", "--reason", "x"], "unknown route 'nosuch'"),
    (["off", "--route", "backup", "--fallback", "nosuch", "--reason", "x"],
     "unknown route 'nosuch'"),
    (["off", "--route", "backup", "--answer", "--reason", "x"], "needs the text"),
    (["off", "--key", "key_0000000000000000", "--reason", "x"], "unknown key"),
    (["off", "--route", "backup", "--all", "--reason", "x"], "exactly one of"),
    (["off", "--route", "backup"], "--reason"),
])
def test_bad_switch_commands_exit_2_with_one_line(workdir: Path, args: list[str],
                                                  says: str) -> None:
    result = modelport(workdir, "switch", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
