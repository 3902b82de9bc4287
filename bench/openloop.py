"""Open-loop load benchmark (run it through `bench/run`, or alone: python bench/openloop.py -h).

A closed loop (wrk: each connection sends its next request when the last one is answered)
slows down with the server and so hides queueing. This generator sends requests on a fixed
schedule instead, request i at start + i / rate, whatever happened to the earlier ones, and
measures each latency from the request's *scheduled* send time, so time spent queued (in the
gateway, in the kernel, or in this generator when it falls behind) counts.

Starts the nginx upstream stand-in (CPU 0) and Modelport with bench/configs/bare.yaml (CPU 1),
then for each arrival rate (default 500 and 1000 requests/s, 30 s each) runs the generator
(asyncio + aiohttp on uvloop, in this process, pinned to CPU 0) against `direct` (nginx alone:
the control that shows the generator keeps its schedule) and `modelport`, interleaved. At most
--max-inflight requests are outstanding; a request due while that many are still open is not
sent and counts as failed ("dropped"), so the generator stays open-loop and its memory bounded.

Reported per target and rate: success rate, achieved throughput, p50/p99/max latency from the
scheduled time, the p99 of the first and the last third of the run, and a verdict: latency
stayed bounded when the last third's p99 is at most twice the first third's plus 1 ms and no
request failed (error, timeout or dropped). Writes bench/results/<date>-openloop.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from harness import (
    add_output_arguments,
    cli,
    rotated,
    run_facts,
    terminated_on_signal,
    write_report,
)
from overhead import (
    API_KEY,
    BENCH,
    CHAT_PATH,
    GATEWAY_CPU,
    HOST,
    LOAD_CPU,
    MODELPORT_PORT,
    MODELPORT_PROD_PORT,
    PROBE_BODY,
    UPSTREAM_PORT,
    BenchError,
    Child,
    Children,
    ensure_port_free,
    machine_info,
    modelport_bin,
    start_modelport,
    start_upstream,
    tree_cpu_seconds,
)
from streaming import pct

TARGETS = ("direct", "modelport", "modelport-prod")
PORTS = {"direct": UPSTREAM_PORT, "modelport": MODELPORT_PORT,
         "modelport-prod": MODELPORT_PROD_PORT}  # fmt: skip
CONFIGS = {"modelport": "bare.yaml", "modelport-prod": "production.yaml"}


# --------------------------------------------------------------------------- the generator


@dataclass
class Outcome:
    scheduled: int = 0
    ok: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # ok requests, in schedule order
    offsets_s: list[float] = field(default_factory=list)  # their scheduled time from start
    failures: dict[str, int] = field(default_factory=dict)
    lag_ms: list[float] = field(default_factory=list)  # how late the generator sent each
    rejected_ms: list[float] = field(default_factory=list)  # answered with rejected_status
    max_inflight_seen: int = 0
    seconds: float = 0.0


async def open_loop(
    url: str,
    rate: float,
    duration: float,
    max_inflight: int,
    timeout: float,
    *,
    body: bytes = PROBE_BODY,
    headers: dict[str, str] | None = None,
    rejected_status: int | None = None,
) -> Outcome:
    """POST ``body`` to ``url``: request i at start + i/rate whatever happened to the earlier
    ones, its latency from that scheduled time. A 200 is ok; ``rejected_status`` (e.g. 503
    for a full queue) is an answer too, kept apart; anything else is a failure."""
    count = max(1, round(rate * duration))
    out = Outcome(scheduled=count)
    if headers is None:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    connector = aiohttp.TCPConnector(limit=max_inflight, keepalive_timeout=60)
    inflight = 0
    results: list[tuple[float, float] | None] = [None] * count  # (offset, latency) if ok

    def fail(kind: str) -> None:
        out.failures[kind] = out.failures.get(kind, 0) + 1

    async def one(i: int, due: float, start: float, session: aiohttp.ClientSession) -> None:
        nonlocal inflight
        inflight += 1
        out.max_inflight_seen = max(out.max_inflight_seen, inflight)
        try:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
            if status == 200:
                results[i] = (due - start, (time.perf_counter() - due) * 1e3)
            elif status == rejected_status:
                out.rejected_ms.append((time.perf_counter() - due) * 1e3)
            else:
                fail(f"HTTP {status}")
        except TimeoutError:
            fail("timeout")
        except aiohttp.ClientError as exc:
            fail(type(exc).__name__)
        finally:
            inflight -= 1

    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter() + 0.05
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            out.lag_ms.append(max(0.0, (time.perf_counter() - due) * 1e3))
            if inflight >= max_inflight:
                fail("dropped (in-flight cap)")
                continue
            task = asyncio.create_task(one(i, due, start, session))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(list(tasks), timeout=timeout + 10)
        for task in list(tasks):  # past every request's own timeout: count them lost
            task.cancel()
            fail("lost")
        out.seconds = time.perf_counter() - start
    for item in results:
        if item is not None:
            out.ok += 1
            out.offsets_s.append(item[0])
            out.latencies_ms.append(item[1])
    return out


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    target: str
    rate: float
    duration: float
    scheduled: int
    ok: int
    failures: dict[str, int]
    success_pct: float
    achieved_rps: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    p99_first_third_ms: float | None
    p99_last_third_ms: float | None
    bounded: bool
    verdict: str
    lag_p99_ms: float | None
    lag_max_ms: float | None
    max_inflight_seen: int
    gateway_cpu_util: float | None
    per_second: list[dict[str, Any]]


def third_p99(out: Outcome, duration: float, which: int) -> float | None:
    lo, hi = duration * which / 3, duration * (which + 1) / 3
    return pct([lat for off, lat in zip(out.offsets_s, out.latencies_ms, strict=True)
                if lo <= off < hi], 99)  # fmt: skip


def judge(out: Outcome, first: float | None, last: float | None) -> tuple[bool, str]:
    failed = sum(out.failures.values())
    if first is None or last is None:
        return False, "no answers"
    growing = last > 2 * first + 1.0
    if growing:
        verdict = f"GROWING: p99 {first:.2f} -> {last:.2f} ms"
    else:
        verdict = f"bounded (p99 {first:.2f} -> {last:.2f} ms)"
    if failed:
        verdict += f"; {failed} failed"
    return not growing and not failed, verdict


def per_second(out: Outcome, duration: float) -> list[dict[str, Any]]:
    buckets: list[list[float]] = [[] for _ in range(max(1, math.ceil(duration)))]
    for off, lat in zip(out.offsets_s, out.latencies_ms, strict=True):
        buckets[min(len(buckets) - 1, int(off))].append(lat)
    return [{"second": i, "ok": len(b), "p50_ms": pct(b, 50), "p99_ms": pct(b, 99),
             "max_ms": max(b, default=None)} for i, b in enumerate(buckets)]  # fmt: skip


def measure(name: str, url: str, gateway: Child | None, rate: float,
            args: argparse.Namespace) -> Run:  # fmt: skip
    pid = gateway.proc.pid if gateway else None
    before = tree_cpu_seconds(pid) if pid else 0.0
    out = uvloop.run(open_loop(url, rate, args.duration, args.max_inflight, args.timeout))
    cpu = tree_cpu_seconds(pid) - before if pid else None
    if gateway and gateway.proc.poll() is not None:
        raise BenchError(f"{name} died during the run:\n{gateway.tail()}")
    first = third_p99(out, args.duration, 0)
    last = third_p99(out, args.duration, 2)
    bounded, verdict = judge(out, first, last)
    return Run(
        target=name,
        rate=rate,
        duration=args.duration,
        scheduled=out.scheduled,
        ok=out.ok,
        failures=out.failures,
        success_pct=100.0 * out.ok / out.scheduled,
        achieved_rps=out.ok / out.seconds if out.seconds else 0.0,
        p50_ms=pct(out.latencies_ms, 50),
        p99_ms=pct(out.latencies_ms, 99),
        max_ms=max(out.latencies_ms, default=None),
        p99_first_third_ms=first,
        p99_last_third_ms=last,
        bounded=bounded,
        verdict=verdict,
        lag_p99_ms=pct(out.lag_ms, 99),
        lag_max_ms=max(out.lag_ms, default=None),
        max_inflight_seen=out.max_inflight_seen,
        gateway_cpu_util=cpu / out.seconds if cpu is not None and out.seconds else None,
        per_second=per_second(out, args.duration),
    )


# --------------------------------------------------------------------------- reporting


def num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(runs: Sequence[Run], info: dict[str, Any]) -> str:
    a = info["args"]
    lines = [
        f"# Open-loop load, {info['date']}",
        "",
        f"Requests sent on a fixed schedule at each rate for {a['duration']:g} s (at most "
        f"{a['max_inflight']} in flight, {a['timeout']:g} s timeout); latency from the "
        f"scheduled send time. Gateway pinned to CPU {GATEWAY_CPU}, generator + nginx upstream "
        f"to CPU {LOAD_CPU}{'' if info['pinned'] else ' (NOT pinned: fewer than 2 CPUs)'}.",
        f"Machine: {info['machine']['cpu_model']}, {info['machine']['nproc']} CPUs; "
        f"Python {info['machine']['python'].split()[0]}; commit {info['git']['commit']}"
        f"{' (dirty)' if info['git']['dirty'] else ''}.",
        "",
        "| target | rate/s | sent | ok % | achieved req/s | p50 ms | p99 ms | max ms "
        "| p99 1st third | p99 last third | verdict | generator lag p99 ms | gateway CPU util |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in runs:
        lines.append(
            f"| {r.target} | {r.rate:g} | {r.scheduled} | {r.success_pct:.2f} "
            f"| {r.achieved_rps:.0f} | {num(r.p50_ms, 3)} | {num(r.p99_ms, 3)} "
            f"| {num(r.max_ms, 1)} | {num(r.p99_first_third_ms, 3)} "
            f"| {num(r.p99_last_third_ms, 3)} | {r.verdict if r.bounded else f'**{r.verdict}**'} "
            f"| {num(r.lag_p99_ms, 2)} | {num(r.gateway_cpu_util, 2)} |"
        )
    failed = [r for r in runs if r.failures]
    if failed:
        lines += ["", "Failures:", ""]
        lines += [f"- {r.target} at {r.rate:g}/s: {r.failures}" for r in failed]
    lagging = [r for r in runs if (r.lag_p99_ms or 0) > 5]
    if lagging:
        lines += ["", "Note: the generator fell behind its schedule (lag p99 > 5 ms) in: "
                  + ", ".join(f"{r.target} at {r.rate:g}/s" for r in lagging)
                  + "; their latencies include that lag."]  # fmt: skip
    lines += ["", *(f"Note: {w}" for w in info["warnings"])]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Open-loop load benchmark (see bench/README.md)")
    parser.add_argument("--rates", default="500,1000", help="arrival rates, requests/s")
    parser.add_argument("--duration", type=float, default=30, help="seconds per rate (30)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds at 200/s (2)")
    parser.add_argument("--max-inflight", type=int, default=1000,
                        help="most requests outstanding at once (1000)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=10, help="request timeout, s (10)")
    parser.add_argument(
        "--only",
        default="direct,modelport",
        help=f"targets from {','.join(TARGETS)} (default direct,modelport)",
    )
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.only.split(",") if t.strip()]
    if set(args.targets) - set(TARGETS) or not args.targets:
        parser.error(f"--only takes names from {', '.join(TARGETS)}; got {args.only!r}")
    args.targets = [t for t in TARGETS if t in args.targets]
    try:
        args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        parser.error(f"--rates takes numbers, e.g. 500,1000; got {args.rates!r}")
    if (not args.rate_list or min(args.rate_list) <= 0 or args.duration <= 0
            or args.max_inflight < 1 or args.timeout <= 0):  # fmt: skip
        parser.error("--rates, --duration, --max-inflight and --timeout must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now().astimezone()
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        raise BenchError("nginx not found; bench/run installs it (apt-get install nginx)")
    if set(CONFIGS) & set(args.targets) and not modelport_bin().exists():
        raise BenchError(f"{modelport_bin()} not found: install the package (pip install -e .)")
    for port in {UPSTREAM_PORT, *(PORTS[t] for t in args.targets)}:
        ensure_port_free(port)
    pin = {int(LOAD_CPU), int(GATEWAY_CPU)} <= os.sched_getaffinity(0)
    if pin:
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # the generator; gateways are set to CPU 1
    else:
        print("warning: CPUs 0 and 1 are not both available; running unpinned", file=sys.stderr)
    work_root = BENCH / ".work"
    work_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="openloop-", dir=work_root))
    children = Children(workdir)
    runs: list[Run] = []
    try:
        with terminated_on_signal():
            base = start_upstream(children, pin)
            urls: dict[str, tuple[str, Child | None]] = {"direct": (base + CHAT_PATH, None)}
            for name in args.targets:
                if name in CONFIGS:
                    config = BENCH / "configs" / CONFIGS[name]
                    gateway = start_modelport(children, name, config, PORTS[name], pin)
                    urls[name] = (f"http://{HOST}:{PORTS[name]}{CHAT_PATH}", gateway)
            for name in args.targets:
                print(f"warm-up {name} ({args.warmup:g}s at 200/s)", file=sys.stderr)
                uvloop.run(open_loop(urls[name][0], 200, args.warmup, args.max_inflight,
                                     args.timeout))  # fmt: skip
            for i, rate in enumerate(args.rate_list):
                for name in rotated(args.targets, i):
                    url, gateway = urls[name]
                    run = measure(name, url, gateway, rate, args)
                    runs.append(run)
                    print(
                        f"{name:14} {rate:6g}/s  ok {run.success_pct:6.2f}%  "
                        f"p50 {num(run.p50_ms, 3)} ms  p99 {num(run.p99_ms, 3)} ms  "
                        f"max {num(run.max_ms, 1)} ms  {run.verdict}",
                        file=sys.stderr,
                    )
    finally:
        children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    info = run_facts(
        started, pin, machine_info(),
        args={"rates": args.rate_list, "duration": args.duration, "warmup": args.warmup,
              "max_inflight": args.max_inflight, "timeout": args.timeout,
              "targets": args.targets},
        warnings=[],
    )  # fmt: skip
    write_report(args, info, "openloop", render(runs, info),
                 {"runs": [asdict(r) for r in runs]})  # fmt: skip
    if any(r.failures for r in runs):
        print("error: some requests failed", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    cli(main)
