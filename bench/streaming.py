"""Streaming benchmark (run it through `bench/run`, or alone: python bench/streaming.py --help).

Starts the streaming fake upstream (bench/fake_upstream.py: 64 SSE chunks 20 ms apart, pinned
to CPU 0), Modelport in front of it (bench/configs/streaming.yaml) and LiteLLM proxy in front of
it (bench/configs/litellm-streaming.yaml, if installed), both pinned to CPU 1, then measures,
interleaved over rounds, streams at each concurrency (default 1 and 256 concurrent streams):

    direct     client -> fake upstream
    modelport  client -> modelport serve -> fake upstream
    litellm    client -> litellm proxy -> fake upstream

The client is an aiohttp load generator on uvloop in this process, pinned to CPU 0. For each
stream it records the time to first token (request sent -> first content chunk parsed) and every
gap between consecutive content chunks. The report gives, per target and concurrency, TTFT and
gap percentiles, the added TTFT and added gap against direct (per round, then the median and
spread over rounds), stalls (a gap over --stall-s, 1 s) and failures (an error, a non-200 answer,
a missing chunk or no `data: [DONE]`). It prints a markdown table and writes
bench/results/<date>-streaming.md and .json. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
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
import orjson
import uvloop
from harness import (
    Notes,
    Stat,
    add_output_arguments,
    cli,
    rotated,
    run_facts,
    stat,
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
    ROUTE,
    BenchError,
    Child,
    Children,
    ensure_port_free,
    machine_info,
    modelport_bin,
    pinned,
    start_modelport,
    tree_cpu_seconds,
    wait_ready,
)
from peers import litellm_peer

FAKE_PORT = 18600
MODELPORT_PORT = 18302
LITELLM_PORT = 18401
PORTS = {"direct": FAKE_PORT, "modelport": MODELPORT_PORT, "litellm": LITELLM_PORT}
TARGETS = ("direct", "modelport", "litellm")


# --------------------------------------------------------------------------- the client


@dataclass
class Stream:
    round: int
    target: str
    concurrency: int
    ok: bool
    error: str | None
    ttft_ms: float | None
    gaps_ms: list[float]
    chunks: int
    total_ms: float


def has_content(payload: bytes) -> bool:
    """True for a chat.completion.chunk whose first choice carries non-empty delta.content."""
    try:
        data = orjson.loads(payload)
        choices = data.get("choices") or []
        return bool(choices and (choices[0].get("delta") or {}).get("content"))
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return False


async def one_stream(
    session: aiohttp.ClientSession, url: str, body: bytes, expected: int
) -> tuple[bool, str | None, float | None, list[float], int, float]:
    """One streamed chat request: (ok, error, ttft_ms, gaps_ms, content chunks, total_ms)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}",
               "Accept": "text/event-stream"}  # fmt: skip
    times: list[float] = []
    done = False
    error: str | None = None
    start = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if resp.status != 200:
                text = (await resp.read())[:200].decode("utf-8", "replace")
                error = f"HTTP {resp.status}: {text}"
            else:
                # read to the end (not just to [DONE]) so the connection is kept alive
                async for line in resp.content:
                    if not line.startswith(b"data:") or done:
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        done = True
                    elif has_content(payload):
                        times.append(time.perf_counter())
    except (aiohttp.ClientError, TimeoutError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:200]
    total_ms = (time.perf_counter() - start) * 1e3
    if error is None and not done:
        error = "stream ended without data: [DONE]"
    if error is None and len(times) != expected:
        error = f"{len(times)} content chunks, expected {expected}"
    ttft = (times[0] - start) * 1e3 if times else None
    gaps = [(b - a) * 1e3 for a, b in itertools.pairwise(times)]
    return error is None, error, ttft, gaps, len(times), total_ms


async def run_streams(
    url: str, concurrency: int, count: int, expected: int, timeout: float, ramp_s: float
) -> list[tuple[bool, str | None, float | None, list[float], int, float]]:
    """`count` streams over `concurrency` clients, each running its streams back to back. The
    clients start evenly spread over `ramp_s` (one stream's length), so streams arrive at a
    steady pace rather than in one burst of `concurrency` connections."""
    body = orjson.dumps({
        "model": ROUTE,
        "messages": [{"role": "user", "content": "Count slowly."}],
        "stream": True,
    })  # fmt: skip
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
    results: list[tuple[bool, str | None, float | None, list[float], int, float]] = []
    next_index = 0

    async def client(session: aiohttp.ClientSession, delay: float) -> None:
        nonlocal next_index
        await asyncio.sleep(delay)
        while next_index < count:
            next_index += 1
            results.append(await one_stream(session, url, body, expected))

    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        bound = timeout * math.ceil(count / concurrency) + ramp_s + 30
        tasks = [asyncio.ensure_future(client(session, k * ramp_s / concurrency))
                 for k in range(concurrency)]  # fmt: skip
        done, pending = await asyncio.wait(tasks, timeout=bound)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            raise BenchError(f"streams to {url} did not finish within {bound:.0f}s")
        for task in done:
            task.result()  # a client's own exception, if any
    return results


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    url: str
    gateway: Child | None


def start_targets(
    names: Sequence[str], children: Children, pin: bool, args: argparse.Namespace,
    notes: Notes,
) -> dict[str, Target]:  # fmt: skip
    argv = [sys.executable, str(BENCH / "fake_upstream.py"), "--host", HOST,
            "--port", str(FAKE_PORT), "--chunks", str(args.chunks),
            "--interval-ms", f"{args.interval_ms:g}"]  # fmt: skip
    fake = children.start("fake-upstream", pinned(LOAD_CPU, argv, pin))
    wait_ready(fake, f"http://{HOST}:{FAKE_PORT}", None, 20)
    targets = {"direct": Target("direct", f"http://{HOST}:{FAKE_PORT}{CHAT_PATH}", None)}
    if "modelport" in names:
        config = BENCH / "configs" / "streaming.yaml"
        gateway = start_modelport(children, "modelport", config, MODELPORT_PORT, pin)
        targets["modelport"] = Target(
            "modelport", f"http://{HOST}:{MODELPORT_PORT}{CHAT_PATH}", gateway
        )
    if "litellm" in names:
        config = BENCH / "configs" / "litellm-streaming.yaml"
        litellm = litellm_peer(children, notes, config, LITELLM_PORT, pin)
        if litellm is not None:
            targets["litellm"] = Target(
                "litellm", f"http://{HOST}:{LITELLM_PORT}{CHAT_PATH}", litellm
            )
    return {name: targets[name] for name in names if name in targets}


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    round: int
    target: str
    concurrency: int
    streams: int
    failed: int
    stalled: int
    late_first: int  # streams whose first token took longer than --stall-s
    seconds: float
    gateway_cpu_s: float | None
    ttft_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    max_gap_per_stream_ms: list[float] = field(default_factory=list)


def streams_for(concurrency: int, args: argparse.Namespace) -> int:
    return max(args.min_streams, concurrency * args.streams_per_client)


def measure(target: Target, rnd: int, c: int, args: argparse.Namespace) -> Run:
    count = streams_for(c, args)
    pid = target.gateway.proc.pid if target.gateway else None
    before = tree_cpu_seconds(pid) if pid else 0.0
    started = time.perf_counter()
    ramp = args.chunks * args.interval_ms / 1e3
    raw = uvloop.run(run_streams(target.url, c, count, args.chunks, args.stream_timeout, ramp))
    seconds = time.perf_counter() - started
    cpu = tree_cpu_seconds(pid) - before if pid else None
    if target.gateway and target.gateway.proc.poll() is not None:
        raise BenchError(f"{target.name} died during the run:\n{target.gateway.tail()}")
    run = Run(rnd, target.name, c, len(raw), 0, 0, 0, seconds, cpu)
    for ok, error, ttft, gaps, _chunks, _total in raw:
        if not ok:
            run.failed += 1
            kind = str(error).split(":")[0]  # "HTTP 502", "ClientPayloadError", ...
            run.errors[kind] = run.errors.get(kind, 0) + 1
        if ttft is not None:
            run.ttft_ms.append(ttft)
            if ttft > args.stall_s * 1e3:
                run.late_first += 1
        run.gaps_ms.extend(gaps)
        worst = max(gaps, default=0.0)
        run.max_gap_per_stream_ms.append(worst)
        if worst > args.stall_s * 1e3:
            run.stalled += 1
    return run


# --------------------------------------------------------------------------- reporting


def pct(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def cell(runs: Sequence[Run]) -> dict[str, Any]:
    ttft = [v for r in runs for v in r.ttft_ms]
    gaps = [v for r in runs for v in r.gaps_ms]
    cpu = [r.gateway_cpu_s for r in runs if r.gateway_cpu_s is not None]
    secs = sum(r.seconds for r in runs)
    streams = sum(r.streams for r in runs)
    return {
        "streams": streams,
        "failed": sum(r.failed for r in runs),
        "stalled": sum(r.stalled for r in runs),
        "late_first": sum(r.late_first for r in runs),
        "ttft_p50_ms": pct(ttft, 50),
        "ttft_p99_ms": pct(ttft, 99),
        "ttft_max_ms": max(ttft, default=None),
        "gap_p50_ms": pct(gaps, 50),
        "gap_p99_ms": pct(gaps, 99),
        "gap_max_ms": max(gaps, default=None),
        "gateway_cpu_ms_per_stream": sum(cpu) / streams * 1e3 if cpu and streams else None,
        "gateway_cpu_util": sum(cpu) / secs if cpu and secs else None,
    }


ADDED = (("ttft", "ttft_ms", 50), ("ttft", "ttft_ms", 99), ("gap", "gaps_ms", 50),
         ("gap", "gaps_ms", 99))  # fmt: skip


def summarise(runs: Sequence[Run], targets: Sequence[str], levels: Sequence[int]) -> dict[str, Any]:
    cells = {
        name: {c: cell([r for r in runs if (r.target, r.concurrency) == (name, c)])
               for c in levels}
        for name in targets
    }  # fmt: skip
    added: dict[str, dict[int, dict[str, Stat | None]]] = {}
    for name in targets:
        if name == "direct" or "direct" not in targets:
            continue
        added[name] = {}
        for c in levels:
            row: dict[str, Stat | None] = {}
            for label, attr, p in ADDED:
                values = []
                for rnd in sorted({r.round for r in runs}):
                    mine = [r for r in runs if (r.round, r.target, r.concurrency) == (rnd, name, c)]
                    ref = [r for r in runs
                           if (r.round, r.target, r.concurrency) == (rnd, "direct", c)]  # fmt: skip
                    if mine and ref:
                        a, b = pct(getattr(mine[0], attr), p), pct(getattr(ref[0], attr), p)
                        if a is not None and b is not None:
                            values.append(a - b)
                row[f"{label}_p{p}_ms"] = stat(values)
            added[name][c] = row
    return {"cells": cells, "added_vs_direct": added}


def num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def signed_stat(s: Stat | None) -> str:
    if s is None:
        return "-"
    if s.low == s.high:
        return f"{s.median:+.2f}"
    return f"{s.median:+.2f} ({s.low:+.2f}-{s.high:+.2f})"


def render(summary: dict[str, Any], runs: Sequence[Run], info: dict[str, Any]) -> str:
    a = info["args"]
    lines = [
        f"# Streaming, {info['date']}",
        "",
        f"Fake upstream: {a['chunks']} chunks {a['interval_ms']:g} ms apart. {a['rounds']} "
        f"round(s), interleaved; streams per run: max({a['min_streams']}, "
        f"{a['streams_per_client']} x concurrency), each client running its streams back to "
        "back, the clients' starts spread evenly over one stream's length. "
        f"Gateways pinned to CPU {GATEWAY_CPU}, client + fake upstream to CPU {LOAD_CPU}"
        f"{'' if info['pinned'] else ' (NOT pinned: fewer than 2 CPUs)'}.",
        f"Machine: {info['machine']['cpu_model']}, {info['machine']['nproc']} CPUs; "
        f"Python {info['machine']['python'].split()[0]}; commit {info['git']['commit']}"
        f"{' (dirty)' if info['git']['dirty'] else ''}.",
        "",
        "All streams of a target and concurrency pooled over rounds; times in ms.",
        "",
        f"| target | c | streams | failed | stalled (gap > {a['stall_s']:g} s) "
        f"| TTFT > {a['stall_s']:g} s | TTFT p50 | TTFT p99 | TTFT max | gap p50 | gap p99 "
        "| gap max | gateway CPU ms/stream | gateway CPU util |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, per_level in summary["cells"].items():
        for c, m in per_level.items():
            failed = f"**{m['failed']}**" if m["failed"] else "0"
            stalled = f"**{m['stalled']}**" if m["stalled"] else "0"
            late = f"**{m['late_first']}**" if m["late_first"] else "0"
            lines.append(
                f"| {name} | {c} | {m['streams']} | {failed} | {stalled} | {late} "
                f"| {num(m['ttft_p50_ms'])} | {num(m['ttft_p99_ms'])} | {num(m['ttft_max_ms'])} "
                f"| {num(m['gap_p50_ms'])} | {num(m['gap_p99_ms'])} | {num(m['gap_max_ms'])} "
                f"| {num(m['gateway_cpu_ms_per_stream'])} | {num(m['gateway_cpu_util'])} |"
            )
    if summary["added_vs_direct"]:
        lines += [
            "",
            "Added against direct (the same percentile taken in the same round, gateway minus "
            "direct; median (min-max) over rounds), ms:",
            "",
            "| target | c | +TTFT p50 | +TTFT p99 | +gap p50 | +gap p99 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, per_level in summary["added_vs_direct"].items():
            for c, row in per_level.items():
                lines.append(
                    f"| {name} | {c} | {signed_stat(row['ttft_p50_ms'])} "
                    f"| {signed_stat(row['ttft_p99_ms'])} | {signed_stat(row['gap_p50_ms'])} "
                    f"| {signed_stat(row['gap_p99_ms'])} |"
                )
    bad = [r for r in runs if r.failed or r.stalled or r.late_first]
    lines += ["", "Stalls, late first tokens and failures: " + ("none." if not bad else ""), ""]
    for r in bad:
        lines.append(
            f"- round {r.round} {r.target} c={r.concurrency}: {r.failed} failed"
            f"{f' {dict(r.errors)}' if r.errors else ''}, {r.stalled} stalled "
            f"(worst gap {max(r.max_gap_per_stream_ms, default=0):.0f} ms), {r.late_first} "
            f"with a first token later than {a['stall_s']:g} s "
            f"(worst {max(r.ttft_ms, default=0):.0f} ms)"
        )
    lines += ["", *(f"Note: {w}" for w in info["warnings"])]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Streaming benchmark (see bench/README.md)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--concurrency", default="1,256", help="concurrent streams (1,256)")
    parser.add_argument(
        "--min-streams",
        type=int,
        default=10,
        help="at least this many streams per run (default 10)",
    )
    parser.add_argument(
        "--streams-per-client",
        type=int,
        default=3,
        help="streams each concurrent client runs back to back (default 3)",
    )
    parser.add_argument("--chunks", type=int, default=64, help="chunks per stream (64)")
    parser.add_argument("--interval-ms", type=float, default=20, help="ms between chunks (20)")
    parser.add_argument(
        "--stall-s", type=float, default=1.0, help="a gap longer than this is a stall (default 1 s)"
    )
    parser.add_argument(
        "--stream-timeout",
        type=float,
        default=60,
        help="seconds one stream may take before it fails (default 60)",
    )
    parser.add_argument(
        "--only",
        default=",".join(TARGETS),
        help=f"comma-separated targets (default {','.join(TARGETS)})",
    )
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    add_output_arguments(parser)
    args = parser.parse_args(argv)  # fmt: skip
    args.targets = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown or not args.targets:
        parser.error(f"--only takes names from {', '.join(TARGETS)}; got {args.only!r}")
    if args.no_litellm and "litellm" in args.targets:
        args.targets.remove("litellm")
        if not args.note:
            args.note.append("LiteLLM left out (--no-litellm).")
    args.targets = [t for t in TARGETS if t in args.targets or t == "direct"]
    args.levels = sorted({int(c) for c in args.concurrency.split(",")})
    if (args.rounds < 1 or min(args.levels) < 1 or args.chunks < 2 or args.interval_ms <= 0
            or args.min_streams < 1 or args.streams_per_client < 1):  # fmt: skip
        parser.error("--rounds, --concurrency, --chunks (>= 2), --interval-ms and the stream "
                     "counts must be positive")  # fmt: skip
    return args


def preflight(args: argparse.Namespace) -> bool:
    if shutil.which("taskset") is None:
        raise BenchError("taskset not found; bench/run installs it (apt-get install util-linux)")
    if "modelport" in args.targets and not modelport_bin().exists():
        raise BenchError(f"{modelport_bin()} not found: install the package (pip install -e .)")
    for name in args.targets:
        ensure_port_free(PORTS[name])
    return {int(LOAD_CPU), int(GATEWAY_CPU)} <= os.sched_getaffinity(0)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now().astimezone()
    pin = preflight(args)
    if pin:
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # the client; gateways are set to CPU 1
    else:
        print("warning: CPUs 0 and 1 are not both available; running unpinned", file=sys.stderr)
    work_root = BENCH / ".work"
    work_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="streaming-", dir=work_root))
    children = Children(workdir)
    runs: list[Run] = []
    notes = Notes(args.note, strict=args.require_all)  # e.g. bench/run: LiteLLM not installed
    try:
        with terminated_on_signal():
            targets = start_targets(args.targets, children, pin, args, notes)
            args.targets = [t for t in args.targets if t in targets]
            for target in targets.values():
                warm = min(8, max(args.levels))
                print(f"warm-up {target.name} ({warm} streams)", file=sys.stderr)
                uvloop.run(
                    run_streams(target.url, warm, warm, args.chunks, args.stream_timeout, 0.0)
                )
            for rnd in range(1, args.rounds + 1):
                for name in rotated(args.targets, rnd - 1):
                    if name not in targets:
                        continue
                    for c in args.levels:
                        try:
                            run = measure(targets[name], rnd, c, args)
                        except BenchError as exc:
                            if name != "litellm":
                                raise
                            notes.left_out(f"LiteLLM left out from round {rnd} on: {exc}")
                            del targets[name]
                            break
                        runs.append(run)
                        m = cell([run])
                        print(
                            f"round {rnd} {name:9} c={c:<4} {run.streams:4} streams "
                            f"{run.seconds:6.1f}s  TTFT p50 {num(m['ttft_p50_ms'])} ms "
                            f"p99 {num(m['ttft_p99_ms'])} ms  gap p50 {num(m['gap_p50_ms'])} "
                            f"p99 {num(m['gap_p99_ms'])} max {num(m['gap_max_ms'])} ms"
                            f"{f'  FAILED {run.failed}' if run.failed else ''}"
                            f"{f'  STALLED {run.stalled}' if run.stalled else ''}"
                            f"{f'  LATE FIRST TOKEN {run.late_first}' if run.late_first else ''}",
                            file=sys.stderr,
                        )
    finally:
        children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    info = run_facts(
        started, pin, machine_info(),
        args={"rounds": args.rounds, "concurrency": args.levels, "targets": args.targets,
              "chunks": args.chunks, "interval_ms": args.interval_ms,
              "min_streams": args.min_streams, "streams_per_client": args.streams_per_client,
              "stall_s": args.stall_s, "stream_timeout": args.stream_timeout},
        warnings=list(notes),
    )  # fmt: skip
    summary = summarise(runs, args.targets, args.levels)
    write_report(args, info, "streaming", render(summary, runs, info),
                 {"summary": jsonable(summary), "runs": [run_json(r) for r in runs]})  # fmt: skip
    if any(r.failed for r in runs):
        print("error: some streams failed", file=sys.stderr)
        return 2
    return 0


def run_json(run: Run) -> dict[str, Any]:
    """A run's raw figures: every TTFT, the worst gap of every stream, gap percentiles (the
    gaps themselves, 63 per stream, would make the file megabytes long)."""
    raw = asdict(run)
    gaps = raw.pop("gaps_ms")
    raw["gap_percentiles_ms"] = {str(p): pct(gaps, p) for p in (50, 90, 99, 99.9, 100)}
    raw["gaps"] = len(gaps)
    for key in ("ttft_ms", "max_gap_per_stream_ms"):
        raw[key] = [round(v, 3) for v in raw[key]]
    return raw


def jsonable(value: Any) -> Any:
    if isinstance(value, Stat):
        return asdict(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    cli(main)
