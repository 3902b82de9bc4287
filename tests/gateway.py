"""Running Modelport for tests: in-process on a real port (``InProcessGateway``), or as the
``modelport serve`` subprocess (``ServeProcess``), plus config helpers."""

from __future__ import annotations

import gc
import io
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
import yaml

from modelport.api.connections import ConnectionLimits, guarded_protocol
from modelport.app import build_app
from modelport.config import Settings, load_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def basic_config(base_url: str, store_url: str, **route_extra: Any) -> dict[str, Any]:
    return {
        "store": {"url": store_url, "flush_interval_s": 0.05},
        "providers": {
            "upstream-a": {
                "kind": "openai",
                "base_url": base_url,
                "api_key": "env:UPSTREAM_A_KEY",
            }
        },
        "routes": {
            "support-summary": {
                "description": "Summarise a support ticket",
                "owner": "support-team",
                "targets": [{"provider": "upstream-a", "model": "gpt-4o-mini"}],
                **route_extra,
            }
        },
    }


class InProcessGateway:
    """The app under uvicorn in a background thread, on a free port of 127.0.0.1."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()
        self.access = io.BytesIO()
        config = uvicorn.Config(
            build_app(settings, self.access), host="127.0.0.1", port=self.port, loop="asyncio",
            http=guarded_protocol(ConnectionLimits.of(settings.server)), lifespan="on",
            access_log=False, log_config=None,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10, *, ready_timeout_s: float = 300) -> InProcessGateway:
        """Start, and wait until it is ready (local models load in the background after the
        server starts; readiness waits for them)."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)
        has_runtimes = self.settings.model_repository is not None or any(
            p.local is not None for p in self.settings.providers.values())
        deadline = time.monotonic() + ready_timeout_s
        while has_runtimes and httpx.get(f"{self.url}/health/ready",
                                         timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not become ready")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(15)
        # What the server's closed event loop left for the collector (a client socket of a
        # provider's pool, now and then) is collected here, at its own stop, rather than in
        # the middle of a later test, where pytest would report it as that test's error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()

    def access_lines(self, at_least: int = 1, timeout_s: float = 3) -> list[dict[str, Any]]:
        """The request log lines written so far (it is flushed every 0.2 s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lines = [orjson.loads(line) for line in self.access.getvalue().splitlines()]
            if len(lines) >= at_least or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)


def run_modelport(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``modelport ARGS`` as a user runs it, in ``workdir``, with a bare environment."""
    return subprocess.run([sys.executable, "-m", "modelport.cli.main", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})


def start_gateway(tmp_path: Path, config: dict[str, Any], env: dict[str, str]) -> InProcessGateway:
    path = write_config(tmp_path / "modelport.yaml", config)
    return InProcessGateway(load_settings(path, env)).start()


class ServeProcess:
    """``modelport serve`` as a subprocess, its log lines collected from stderr."""

    def __init__(self, config_path: Path, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.log_path = cwd / "serve.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "modelport.cli.main", "serve", "--config", str(config_path),
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=cwd, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 20) -> ServeProcess:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"modelport serve exited: {self.log()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"modelport serve not ready: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.log_path.read_text(errors="replace")


def ledger_row(store_url: str, request_id: str, timeout_s: float = 5) -> dict[str, Any]:
    """A request's ledger row (``GET /admin/requests/{id}``'s shape), once it is written;
    read from the store a running server migrated."""
    from modelport.store.engine import make_engine
    from modelport.store.requests import RequestStore

    store = RequestStore(make_engine(store_url))
    deadline = time.monotonic() + timeout_s
    while (row := store.get(request_id)) is None:
        assert time.monotonic() < deadline, "the request was not written to the ledger"
        time.sleep(0.05)
    return row
