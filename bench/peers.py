"""The peers Modelport is measured against, LiteLLM proxy and Portkey's open-source gateway.

LiteLLM: installed by bench/run into bench/.venv-litellm from bench/locks/litellm.txt; one
worker, no database, quiet and offline (see litellm_env).

Portkey: `npm ci` of the version pinned in bench/locks/portkey into bench/.node-portkey on
first use (Node.js from the machine), then `node build/start-server.js --port=...
--headless`, one Node process pinned to
the gateway's core like every other gateway. Portkey routes by request headers: the provider
(`openai`) and a custom host (the nginx upstream), which wrk sends through chat.lua's
BENCH_EXTRA_HEADERS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from harness import ENVS, Notes
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
    start_peer,
    wait_ready,
)

LITELLM_VENV = ENVS / ".venv-litellm"  # bench/run installs litellm[proxy] there
PORTKEY_DIR = ENVS / ".node-portkey"
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
    """Install the gateway with `npm ci` from bench/locks/portkey (its package.json and
    package-lock.json pin every package) unless that version is there; BenchError if that
    cannot be done."""
    lock = BENCH / "locks" / "portkey"
    pinned = json.loads((lock / "package.json").read_text())["dependencies"][PORTKEY_PACKAGE]
    if portkey_server().exists() and portkey_version() == pinned:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BenchError("npm is not installed (Node.js is needed for Portkey)")
    shutil.rmtree(PORTKEY_DIR, ignore_errors=True)
    PORTKEY_DIR.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(lock / name, PORTKEY_DIR / name)
    print(f"installing {PORTKEY_PACKAGE}@{pinned} into {PORTKEY_DIR}", file=sys.stderr)
    done = subprocess.run(
        [npm, "ci", "--prefix", str(PORTKEY_DIR), "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 or not portkey_server().exists():
        shutil.rmtree(PORTKEY_DIR, ignore_errors=True)
        raise BenchError(f"npm ci {PORTKEY_PACKAGE} failed: {done.stderr[-500:]}")


def portkey_headers(upstream_base: str) -> dict[str, str]:
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{upstream_base}/v1"}


def wrk_env(upstream_base: str) -> dict[str, str]:
    """What chat.lua needs to send Portkey's routing headers."""
    return {
        "BENCH_EXTRA_HEADERS": "|".join(
            f"{k}: {v}" for k, v in portkey_headers(upstream_base).items()
        )
    }


def start_portkey(children: Children, upstream_base: str, pin: bool, timeout: float = 60) -> Child:
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
        for key, value in {
            **portkey_headers(upstream_base),
            "Content-Type": "application/json",
            "Authorization": f"Bearer {API_KEY}",
        }.items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200 and b'"choices"' in response.read():
                    return child
        except (OSError, urllib.error.HTTPError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchError(f"portkey not ready after {timeout:.0f}s ({last}):\n{child.tail()}")


def litellm_bin() -> Path:
    return LITELLM_VENV / "bin" / "litellm"


def litellm_env() -> dict[str, str]:
    """LiteLLM quiet and offline: no cost-map download, no telemetry, no banner, no .env."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(
        {
            "LITELLM_LOG": "ERROR",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_TELEMETRY_DISABLED": "true",
            "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
            "LITELLM_MODE": "PRODUCTION",
            "DISABLE_SCHEMA_UPDATE": "true",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("DATABASE_URL", None)  # no database: LiteLLM as a plain proxy
    return env


def litellm_peer(children: Children, notes: Notes, config: Path, port: int,
                 pin: bool) -> Child | None:  # fmt: skip
    """LiteLLM as a peer of a part: started, or left out with a note (see start_peer)."""
    print("starting LiteLLM proxy (takes a few seconds)", file=sys.stderr)
    return start_peer(children, notes, "litellm", "LiteLLM",
                      lambda: start_litellm(children, "litellm", config, port, pin))  # fmt: skip


def start_litellm(
    children: Children, name: str, config: Path, port: int, pin: bool, timeout: float = 180
) -> Child:
    """LiteLLM proxy, one worker, no database; raises BenchError if it is missing or fails."""
    if not litellm_bin().exists():
        raise BenchError(
            f"{litellm_bin()} not found (bench/run installs it: pip install 'litellm[proxy]' "
            f"into {LITELLM_VENV})"
        )
    argv = [str(litellm_bin()), "--config", str(config), "--host", HOST, "--port", str(port),
            "--num_workers", "1"]  # fmt: skip
    gateway = children.start(name, pinned(GATEWAY_CPU, argv, pin), litellm_env())
    wait_ready(gateway, f"http://{HOST}:{port}", None, timeout)
    return gateway


def litellm_version() -> str | None:
    """LiteLLM's version from its venv's metadata, without importing it (slow)."""
    found = sorted(LITELLM_VENV.glob("lib/python*/site-packages/litellm-*.dist-info"))
    return found[-1].name.removeprefix("litellm-").removesuffix(".dist-info") if found else None
