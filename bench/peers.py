"""Portkey's open-source AI gateway as a peer in the gateway-overhead benchmark.

`npm install @portkey-ai/gateway` into bench/.node-portkey on first use (Node.js from the
machine), then `node build/start-server.js --port=... --headless`, one Node process pinned to
the gateway's core like every other gateway. Portkey routes by request headers: the provider
(`openai`) and a custom host (the nginx upstream), which wrk sends through chat.lua's
BENCH_EXTRA_HEADERS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from overhead import (
    API_KEY,
    BENCH,
    CHAT_PATH,
    GATEWAY_CPU,
    HOST,
    PROBE_BODY,
    BenchError,
    Child,
    Children,
    pinned,
)

PORTKEY_DIR = BENCH / ".node-portkey"
PORTKEY_PORT = 18450
PORTKEY_PACKAGE = "@portkey-ai/gateway"


def portkey_server() -> Path:
    return PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def portkey_version() -> str | None:
    manifest = portkey_server().parents[1] / "package.json"
    if not manifest.exists():
        return None
    return str(json.loads(manifest.read_text()).get("version"))


def ensure_portkey() -> None:
    """Install the gateway with npm unless it is there; BenchError if that cannot be done."""
    if portkey_server().exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("npm is not installed (Node.js is needed for Portkey)")
    PORTKEY_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing {PORTKEY_PACKAGE} into {PORTKEY_DIR}", file=sys.stderr)
    done = subprocess.run([npm, "install", "--prefix", str(PORTKEY_DIR), "--no-audit",
                           "--no-fund", PORTKEY_PACKAGE], capture_output=True, text=True,
                          timeout=600, check=False)
    if done.returncode != 0 or not portkey_server().exists():
        shutil.rmtree(PORTKEY_DIR, ignore_errors=True)
        raise BenchError(f"npm install {PORTKEY_PACKAGE} failed: {done.stderr[-500:]}")


def portkey_headers(upstream_base: str) -> dict[str, str]:
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{upstream_base}/v1"}


def wrk_env(upstream_base: str) -> dict[str, str]:
    """What chat.lua needs to send Portkey's routing headers."""
    return {"BENCH_EXTRA_HEADERS": "|".join(
        f"{k}: {v}" for k, v in portkey_headers(upstream_base).items())}


def start_portkey(children: Children, upstream_base: str, pin: bool,
                  timeout: float = 60) -> Child:
    ensure_portkey()
    node = shutil.which("node") or "node"
    argv = [node, str(portkey_server()), f"--port={PORTKEY_PORT}", "--headless"]
    child = children.start("portkey", pinned(GATEWAY_CPU, argv, pin))
    url = f"http://{HOST}:{PORTKEY_PORT}{CHAT_PATH}"
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise BenchError(f"portkey exited with {child.proc.returncode}:\n{child.tail()}")
        request = urllib.request.Request(url, data=PROBE_BODY, method="POST")
        for key, value in {**portkey_headers(upstream_base), "Content-Type": "application/json",
                           "Authorization": f"Bearer {API_KEY}"}.items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200 and b'"choices"' in response.read():
                    return child
        except (OSError, urllib.error.HTTPError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchError(f"portkey not ready after {timeout:.0f}s ({last}):\n{child.tail()}")
