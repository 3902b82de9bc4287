"""``modelport canary``, run as a user would, against a running server sharing its store: the
server follows an abort, a promote and a resume within its key poll; the list says what is."""

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
            "summary": {"targets": [{"provider": "p", "model": "stable"},
                                    {"provider": "p", "model": "new",
                                     "canary": {"percent": 50}}]},
            "plain": {"targets": [{"provider": "p", "model": "m"}]},
        },
    })
    return tmp_path


def targets(url: str) -> set[str]:
    return {httpx.post(f"{url}/v1/chat/completions", json={
        "model": "summary", "messages": [{"role": "user", "content": "hi"}],
    }).headers["x-modelport-target"] for _ in range(16)}


def until(url: str, expected: set[str]) -> None:
    deadline = time.monotonic() + 3
    while targets(url) != expected:
        assert time.monotonic() < deadline, "the server did not follow the canary command"
        time.sleep(0.05)


def test_abort_promote_and_resume_reach_a_running_server(workdir: Path) -> None:
    gateway = InProcessGateway(load_settings(workdir / "modelport.yaml", {})).start()
    try:
        done = modelport(workdir, "canary", "abort", "summary", "--reason", "looks off")
        assert done.returncode == 0, done.stderr
        assert "summary: canary p/new aborted" in done.stdout
        until(gateway.url, {"p/stable"})
        listed = json.loads(modelport(workdir, "canary", "list", "--json").stdout)
        assert [(c["route"], c["state"], c["reason"]) for c in listed] == [
            ("summary", "aborted", "looks off")]
        assert modelport(workdir, "canary", "promote", "summary").returncode == 0
        until(gateway.url, {"p/new"})
        assert modelport(workdir, "canary", "resume", "summary").returncode == 0
        until(gateway.url, {"p/stable", "p/new"})
        assert "running" in modelport(workdir, "canary", "list").stdout
    finally:
        gateway.stop()


@pytest.mark.parametrize(("args", "says"), [
    (["abort", "nosuch"], "unknown route 'nosuch'"),
    (["promote", "plain"], "route 'plain' has no canary"),
    (["halt", "summary"], "No such command"),
])
def test_bad_canary_commands_exit_2_with_one_line(workdir: Path, args: list[str],
                                                  says: str) -> None:
    result = modelport(workdir, "canary", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
