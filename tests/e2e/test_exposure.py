"""Safe by default: open mode on loopback only, with a warning; keys required otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.fakes.upstream import FakeUpstream
from tests.gateway import ServeProcess, basic_config, free_port, write_config


def _serve(
    config: Path, host: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelport.cli.main", "serve", "--config", str(config),
         "--host", host, "--port", str(free_port())],
        capture_output=True, text=True, timeout=30, cwd=cwd,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_open_mode_refuses_a_non_loopback_address(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path / "m.yaml", basic_config("http://127.0.0.1:9/v1", sqlite_url))
    result = _serve(config, "0.0.0.0", {"UPSTREAM_A_KEY": "k"}, tmp_path)
    assert result.returncode == 2
    assert "refusing to serve without keys on a non-loopback address" in result.stderr
    assert "MODELPORT_ADMIN_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_open_mode_on_loopback_warns_and_serves(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    config = write_config(tmp_path / "m.yaml", basic_config(upstream.base_url, sqlite_url))
    proc = ServeProcess(config, env, tmp_path).wait_ready()
    r = httpx.post(f"{proc.url}/v1/chat/completions",
                   json={"model": "support-summary", "messages": []})
    log = proc.stop()
    assert r.status_code == 200
    assert "running open" in log and '"level":"warning"' in log


def test_an_admin_key_in_the_environment_turns_keys_on(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> None:
    config = write_config(tmp_path / "m.yaml", basic_config(upstream.base_url, sqlite_url))
    proc = ServeProcess(config, {**env, "MODELPORT_ADMIN_KEY": "adm-e2e-4c1f-0d9e3b7a"}, tmp_path)
    proc.wait_ready()
    try:
        anonymous = httpx.post(f"{proc.url}/v1/chat/completions",
                               json={"model": "support-summary", "messages": []})
        created = httpx.post(f"{proc.url}/admin/keys", json={"name": "e2e"},
                             headers={"Authorization": "Bearer adm-e2e-4c1f-0d9e3b7a"})
        key = created.json()["key"]
        keyed = httpx.post(f"{proc.url}/v1/chat/completions",
                           json={"model": "support-summary", "messages": []},
                           headers={"Authorization": f"Bearer {key}"})
    finally:
        log = proc.stop()
    assert anonymous.status_code == 401
    assert created.status_code == 201 and keyed.status_code == 200
    assert "running open" not in log
    assert "adm-e2e-4c1f-0d9e3b7a" not in log and key not in log
