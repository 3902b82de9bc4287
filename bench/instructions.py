"""Instructions a request costs, counted by valgrind's callgrind: the Python floor and Modelport.

Timed benchmarks on a shared two-core machine move by 5 to 10% from one run to the next; the
instructions a process executes do not depend on what else the machine does. Each gateway
runs under ``valgrind --tool=callgrind --instr-atstart=no`` in front of the nginx upstream
stand-in (bench/nginx-upstream.conf). After a warm-up, counting is switched on
(``callgrind_control -i on``), ``--requests`` chat requests are sent at ``--concurrency``
with aiohttp, counting is switched off and dumped, and the gateway's instructions are divided
by the requests. The report gives instructions per request and the ratio Modelport/floor.

What it does not see: the kernel's work for the sockets (system calls are not counted) and
how fast the instructions run (cache misses, branch mispredictions). It says where a
request's CPU goes and whether a change removed work; bench/overhead.py says how fast the
gateway is. A run takes about five minutes (valgrind runs Python some fifty times slower).

Usage: .venv/bin/python bench/instructions.py [--requests N] [--concurrency C]
                                              [--config bench/configs/bare.yaml] [--out PREFIX]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from harness import git_info
from overhead import (
    BENCH,
    CHAT_PATH,
    HOST,
    ROUTE,
    BenchError,
    Child,
    Children,
    gateway_env,
    modelport_bin,
    start_upstream,
    wait_ready,
)

PORTS = {"floor": 18210, "modelport": 18310}
WARMUP = 100
START_TIMEOUT_S = 600  # importing Modelport under valgrind takes a minute or two


def totals(dump: str) -> int:
    """The instructions a callgrind dump counted: its ``totals:`` line (a dump on request
    may carry a ``summary: 0`` before it), else its ``summary:``."""
    found: dict[str, int] = {}
    for line in dump.splitlines():
        if line.startswith(("totals:", "summary:")):
            key, value = line.split()[:2]
            found.setdefault(key, int(value))
    if not found:
        raise BenchError("the callgrind dump has no totals line")
    return found.get("totals:", found.get("summary:", 0))


async def send(url: str, requests: int, concurrency: int) -> None:
    """``requests`` chat requests, ``concurrency`` at a time; each must be answered 200."""
    body = json.dumps({"model": ROUTE, "messages": [
        {"role": "user", "content": "Say hello in one short sentence."}], "max_tokens": 16})
    left = requests

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with session.post(url, data=body,
                                    headers={"Content-Type": "application/json"}) as reply:
                await reply.read()
                if reply.status != 200:
                    raise BenchError(f"{url} answered {reply.status}")

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))


def start(children: Children, name: str, config: Path, upstream: str) -> Child:
    out = children.workdir / f"{name}.callgrind"
    if name == "floor":
        command = [str(BENCH / "floor.py"), f"{upstream}/v1", "--port", str(PORTS[name])]
    else:
        command = [str(modelport_bin()), "serve", "--config", str(config),
                   "--host", HOST, "--port", str(PORTS[name])]  # fmt: skip
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}", sys.executable, *command]
    return children.start(name, argv, gateway_env())


def count(child: Child, requests: int, concurrency: int) -> float:
    """Instructions per request of one started gateway."""
    url = f"http://{HOST}:{PORTS[child.name]}{CHAT_PATH}"
    asyncio.run(send(url, WARMUP, concurrency))
    pid = str(child.proc.pid)
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    asyncio.run(send(url, requests, concurrency))
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
    subprocess.run(["callgrind_control", "-d", pid], check=True, capture_output=True)
    dumps = sorted(child.log.parent.glob(f"{child.name}.callgrind.*"))
    if not dumps:
        raise BenchError(f"{child.name}: callgrind wrote no dump:\n{child.tail()}")
    return totals(dumps[-1].read_text()) / requests


def render(result: dict[str, Any]) -> str:
    per = result["instructions_per_request"]
    lines = [f"# Instructions per request, {result['date']}", "",
             f"Config `{result['config']}`; {result['requests']} requests at concurrency "
             f"{result['concurrency']} after {WARMUP} to warm up; user-space instructions of the "
             "gateway process, counted by callgrind.", "",
             "| gateway | instructions / request |", "|---|---:|"]
    lines += [f"| {name} | {value:,.0f} |" for name, value in per.items()]
    if "floor" in per and "modelport" in per:
        lines += ["", f"- modelport/floor: {per['modelport'] / per['floor']:.3f}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--config", type=Path, default=BENCH / "configs" / "bare.yaml")
    parser.add_argument("--out", type=Path, help="write PREFIX.md and PREFIX.json")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "nginx"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            print(f"instructions: {tool} is not installed (apt-get install valgrind nginx)",
                  file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="modelport-instructions-") as tmp:
        children = Children(Path(tmp))
        try:
            upstream = start_upstream(children, pin=False)
            started = [start(children, name, args.config.resolve(), upstream) for name in PORTS]
            for child in started:  # both start at once: the slow part under valgrind
                wait_ready(child, f"http://{HOST}:{PORTS[child.name]}", None, START_TIMEOUT_S)
            per = {child.name: count(child, args.requests, args.concurrency)
                   for child in started}
        finally:
            children.stop_all()
    result = {"date": dt.date.today().isoformat(), "config": str(args.config),
              "requests": args.requests, "concurrency": args.concurrency,
              "instructions_per_request": per, "git": git_info()}
    report = render(result)
    print(report, end="")
    if args.out is not None:
        args.out.with_suffix(".md").write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
