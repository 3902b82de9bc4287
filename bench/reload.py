"""Reload: how long a running server takes to apply a config of 500 routes (python bench/reload.py).

`modelport serve` is started with a generated config of --routes routes (500) over 5
providers, a 20-model catalogue and a prompt template on every tenth route; then the same
config with one route's model changed is applied --repeat times (20), alternating, with
`PUT /admin/config`. Measured per apply: the client's round trip (validation of the whole
text, the version kept in SQLite, the new route table built, the swap) and the server's own
figure from its `config applied` log line. Goal (issue 14): under 100 ms for 500 routes.
Then, under load: wrk at 32 connections on a route served by the nginx upstream stand-in
(bench/nginx-upstream.conf) while the config is applied --under-load times (10), one every
half second; every request must succeed (issue 14: a reload loses and fails no request).
Writes bench/results/<date>-reload.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from harness import add_output_arguments, cli, machine_info, run_facts, stat, write_report
from overhead import (
    API_KEY,
    BENCH,
    ROOT,
    UPSTREAM_PORT,
    Children,
    WrkResult,
    modelport_bin,
    run_wrk,
    start_upstream,
)

ADMIN_KEY = "bench-admin-key-0123456789"
GOAL_MS = 100.0


def config(routes: int, store: Path, variant: int) -> str:
    providers = {f"p{i}": {"kind": "openai", "base_url": f"http://127.0.0.1:9/v{i}",
                           "api_key": "env:UPSTREAM_KEY"} for i in range(5)}
    providers["bench"] = {"kind": "openai", "base_url": f"http://127.0.0.1:{UPSTREAM_PORT}/v1",
                          "api_key": "env:UPSTREAM_KEY"}
    models = {f"model-{i}": {"provider": f"p{i % 5}", "model": f"vendor-model-{i}",
                             "owner": "platform", "status": "approved",
                             "input_per_mtok": 0.15, "output_per_mtok": 0.6}
              for i in range(20)}
    models["bench-model"] = {"provider": "bench", "model": "gpt-4o-mini", "owner": "bench",
                             "status": "approved"}
    table: dict[str, Any] = {}
    for i in range(routes):
        route: dict[str, Any] = {
            "description": f"route {i}", "owner": "team", "strategy": "ordered",
            "targets": [{"model": f"model-{i % 20}"},
                        {"model": f"model-{(i + 1) % 20}"}],
        }
        if i % 10 == 0:
            route["prompt"] = {"version": f"v{i}", "variables": {"name": "you"},
                               "messages": [{"role": "system",
                                             "content": "Answer {{ name }} briefly."}]}
        table[f"route-{i:04d}"] = route
    table["route-0000"]["targets"][1]["model"] = f"model-{10 + variant}"
    table["bench-chat"] = {"targets": [{"model": "bench-model"}]}  # wrk's route (chat.lua)
    return yaml.safe_dump({"admin_key": "env:BENCH_ADMIN_KEY",
                           "keys": {"bench": {"key": "env:BENCH_KEY"}},
                           "store": {"url": f"sqlite:///{store}"}, "providers": providers,
                           "models": models, "routes": table}, sort_keys=False)


def _put(url: str, text: str) -> float:
    request = urllib.request.Request(f"{url}/admin/config", data=text.encode(), method="PUT",
                                     headers={"Authorization": f"Bearer {ADMIN_KEY}",
                                              "Content-Type": "application/yaml"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as reply:
        answer = json.loads(reply.read())
    elapsed = time.perf_counter() - started
    if not answer.get("applied"):
        raise RuntimeError(f"not applied: {answer}")
    return elapsed * 1000


def _wait_live(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("modelport serve exited; see its log above")
        try:
            with urllib.request.urlopen(f"{url}/health/ready", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("modelport serve did not become ready")


def _under_load(url: str, texts: list[str], applies: int) -> tuple[WrkResult, list[int]]:
    """wrk at 32 connections for the length of the applies, the applies meanwhile."""
    statuses: list[int] = []
    load: list[WrkResult] = []
    seconds = applies * 0.5 + 2
    runner = threading.Thread(target=lambda: load.append(
        run_wrk(f"{url}/v1/chat/completions", 32, seconds, pin=False)))
    runner.start()
    time.sleep(1)
    for i in range(applies):
        try:
            _put(url, texts[i % 2])
            statuses.append(200)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
        time.sleep(0.5)
    runner.join(seconds + 60)
    return load[0], statuses


def measure(routes: int, repeat: int, port: int, applies: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="reload-", dir=BENCH / ".work"))
    env = {**os.environ, "UPSTREAM_KEY": "k", "BENCH_ADMIN_KEY": ADMIN_KEY,
           "BENCH_KEY": API_KEY}
    texts = [config(routes, work / "store.db", v) for v in (0, 1)]
    (work / "modelport.yaml").write_text(texts[0])
    log_path = work / "serve.log"
    url = f"http://127.0.0.1:{port}"
    children = Children(work)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([modelport_bin(), "serve", "--port", str(port)], cwd=work,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            start_upstream(children, pin=False)
            _wait_live(url, proc)
            _put(url, texts[1])  # warm: the first apply imports what applies need
            round_trips = [_put(url, texts[i % 2]) for i in range(repeat)]
            load, statuses = _under_load(url, texts, applies)
        finally:
            proc.terminate()
            proc.wait(30)
            children.stop_all()
    server = [float(entry["ms"]) for entry in map(json.loads, (
        line for line in log_path.read_text().splitlines() if line.startswith("{")))
        if entry.get("msg") == "config applied"][1:repeat + 1]
    shutil.rmtree(work, ignore_errors=True)
    return {"routes": routes, "bytes": len(texts[0]), "round_trip_ms": round_trips,
            "server_ms": server, "under_load": {
                "applies": statuses, "requests": load.requests, "rps": load.rps,
                "p99_ms": load.p99_ms, "non2xx": load.non2xx,
                "socket_errors": load.socket_errors}}


def render(raw: dict[str, Any], info: dict[str, Any]) -> str:
    trip, server = stat(raw["round_trip_ms"]), stat(raw["server_ms"])
    assert trip is not None and server is not None
    verdict = "PASS" if trip.median < GOAL_MS else "FAIL"
    return "\n".join([
        f"# Reload, {info['date']}", "",
        f"Machine: {info['machine']['cpu_model']}, {info['machine']['nproc']} CPUs. A config of "
        f"{raw['routes']} routes ({raw['bytes'] // 1024} KiB of YAML: 5 providers and the "
        "upstream stand-in, 21 catalogue models, a prompt on every tenth route) applied to "
        f"a running `modelport serve` with `PUT /admin/config`, "
        f"{len(raw['round_trip_ms'])} times, alternating one route's change; milliseconds, "
        "median (min-max).", "",
        "| what | ms | goal | |", "|---|---|---|---|",
        f"| apply, client round trip | {trip.median:.1f} ({trip.low:.1f}-{trip.high:.1f}) | "
        f"< {GOAL_MS:.0f} | {verdict} |",
        f"| apply, server's own figure | {server.median:.1f} ({server.low:.1f}-"
        f"{server.high:.1f}) | | |", "",
        _load_line(raw["under_load"]), ""])


def _load_line(load: dict[str, Any]) -> str:
    failed = load["non2xx"] + sum(load["socket_errors"].values())
    applied = sum(1 for s in load["applies"] if s == 200)
    verdict = "PASS" if failed == 0 and applied == len(load["applies"]) else "FAIL"
    return (f"Under load (wrk, 32 connections, on a route of the same config): "
            f"{applied} of {len(load['applies'])} applies answered 200 while wrk sent "
            f"{load['requests']} requests ({load['rps']:.0f}/s, p99 {load['p99_ms']:.1f} ms); "
            f"{load['non2xx']} non-2xx, {sum(load['socket_errors'].values())} socket "
            f"errors: {verdict} (goal: none lost or failed).")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--port", type=int, default=18791)
    parser.add_argument("--under-load", type=int, default=10,
                        help="applies while wrk runs (0: skip that part)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    started = dt.datetime.now().astimezone()
    (BENCH / ".work").mkdir(exist_ok=True)
    raw = measure(args.routes, args.repeat, args.port, args.under_load)
    info = run_facts(started, False, machine_info(), python=sys.version.split()[0],
                     root=str(ROOT))
    write_report(args, info, "reload", render(raw, info), raw)
    return 0


if __name__ == "__main__":
    cli(main)
