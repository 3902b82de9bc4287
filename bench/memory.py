"""Memory and soak benchmark (run it through `bench/run`, or alone: python bench/memory.py -h).

Starts the nginx upstream stand-in (CPU 0) and Modelport (default bench/configs/bare.yaml, CPU
1), then samples the Modelport worker's resident set size (VmRSS from /proc/<pid>/status) every
--interval seconds (5) through three phases:

    idle   --idle-s seconds (20) after start-up and one request
    load   wrk -c32 (one thread, CPU 0) for --soak-minutes (10), a fixed closed-loop load
    after  --after-s seconds (10) of idle once the load stops

Reported: RSS at idle, at the start and end of the load, its peak, the growth per minute (least-
squares slope over the load phase after its first --settle-s seconds (30), with R^2: a leak
shows as a steady slope with R^2 near 1), the growth per million requests, and RSS after the
load. Writes bench/results/<date>-memory.md and .json (every sample). Only 127.0.0.1 is
contacted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness import (
    add_output_arguments,
    cli,
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
    ROUTE,
    UPSTREAM_PORT,
    BenchError,
    Child,
    Children,
    ensure_port_free,
    machine_info,
    modelport_bin,
    parse_wrk,
    pinned,
    start_modelport,
    start_upstream,
    tree_cpu_seconds,
)


@dataclass
class Sample:
    phase: str  # idle, load, after
    t_s: float  # seconds since the phase began
    rss_kb: int


def rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise BenchError(f"process {pid} vanished ({exc})") from exc
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS in /proc/{pid}/status")


def worker_pid(gateway: Child) -> int:
    """The process that serves: `taskset` execs modelport, so it is the child itself unless
    modelport forked a worker, in which case the (single) descendant that is python."""
    pid = gateway.proc.pid
    kids = Path(f"/proc/{pid}/task/{pid}/children")
    with_children = kids.read_text().split() if kids.exists() else []
    return int(with_children[0]) if len(with_children) == 1 else pid


def regression(points: Sequence[tuple[float, float]]) -> tuple[float | None, float | None]:
    """Least-squares slope (y per x) and R^2 (None when y never changes)."""
    n = len(points)
    if n < 3:
        return None, None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    sxy = sum((x - mx) * (y - my) for x, y in points)
    syy = sum((y - my) ** 2 for _, y in points)
    if sxx == 0:
        return None, None
    slope = sxy / sxx
    r2 = (sxy * sxy) / (sxx * syy) if syy else None  # a perfectly flat line: no fit
    return slope, r2


def sample_for(phase: str, seconds: float, interval: float, pid: int, samples: list[Sample],
               gateway: Child, wrk: subprocess.Popen[str] | None = None) -> None:  # fmt: skip
    """Sample every `interval` s for `seconds` (or until wrk exits, in the load phase)."""
    start = time.monotonic()
    tick = 0
    while True:
        samples.append(Sample(phase, round(time.monotonic() - start, 2), rss_kb(pid)))
        if gateway.proc.poll() is not None:
            raise BenchError(f"modelport exited during the {phase} phase:\n{gateway.tail()}")
        tick += 1
        next_at = start + tick * interval
        if next_at > start + seconds + 1e-6:
            return
        while time.monotonic() < next_at:
            if wrk is not None and wrk.poll() is not None:
                return
            time.sleep(min(0.2, max(0.0, next_at - time.monotonic())))


def run(args: argparse.Namespace, pin: bool, workdir: Path) -> dict[str, Any]:
    children = Children(workdir)
    samples: list[Sample] = []
    wrk: subprocess.Popen[str] | None = None
    try:
        with terminated_on_signal():
            start_upstream(children, pin)
            gateway = start_modelport(children, "modelport", args.config, MODELPORT_PORT, pin)
            pid = worker_pid(gateway)
            print(f"modelport worker pid {pid}; idle {args.idle_s:g}s", file=sys.stderr)
            sample_for("idle", args.idle_s, args.interval, pid, samples, gateway)
            load_s = args.soak_minutes * 60
            print(f"load: wrk -c{args.connections} for {load_s:g}s", file=sys.stderr)
            argv = pinned(LOAD_CPU, [
                "wrk", "-t1", f"-c{args.connections}", f"-d{load_s:g}s", "--latency",
                "--timeout", "5s", "-s", str(BENCH / "chat.lua"),
                f"http://{HOST}:{MODELPORT_PORT}{CHAT_PATH}",
            ], pin)  # fmt: skip
            env = {**os.environ, "BENCH_ROUTE": ROUTE, "BENCH_API_KEY": API_KEY}
            cpu_before = tree_cpu_seconds(gateway.proc.pid)
            wrk = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)  # fmt: skip
            sample_for("load", load_s + 30, args.interval, pid, samples, gateway, wrk)
            try:
                output, _ = wrk.communicate(timeout=60)
            except subprocess.TimeoutExpired as exc:
                raise BenchError(f"wrk did not finish within {load_s + 90:.0f}s") from exc
            cpu = tree_cpu_seconds(gateway.proc.pid) - cpu_before
            if wrk.returncode != 0:
                raise BenchError(f"wrk failed ({wrk.returncode}): {output}")
            result = parse_wrk(output)
            print(f"after: idle {args.after_s:g}s", file=sys.stderr)
            sample_for("after", args.after_s, args.interval, pid, samples, gateway)
    finally:
        if wrk is not None and wrk.poll() is None:
            wrk.kill()
            wrk.wait(timeout=5)
        children.stop_all()
    return {"samples": samples, "wrk": result, "cpu_s": cpu}


def analyse(samples: Sequence[Sample], wrk_requests: int, settle_s: float) -> dict[str, Any]:
    idle = [s for s in samples if s.phase == "idle"]
    load = [s for s in samples if s.phase == "load"]
    after = [s for s in samples if s.phase == "after"]
    settled = [s for s in load if s.t_s >= settle_s]
    slope_kb_s, r2 = regression([(s.t_s, s.rss_kb) for s in settled])
    load_s = load[-1].t_s if load else 0.0
    per_min = slope_kb_s * 60 if slope_kb_s is not None else None
    per_req = wrk_requests / load_s if load_s else 0.0  # requests per second
    return {
        "idle_rss_mb": idle[-1].rss_kb / 1024 if idle else None,
        "load_first_rss_mb": load[0].rss_kb / 1024 if load else None,
        "settled_first_rss_mb": settled[0].rss_kb / 1024 if settled else None,
        "load_last_rss_mb": load[-1].rss_kb / 1024 if load else None,
        "load_peak_rss_mb": max(s.rss_kb for s in load) / 1024 if load else None,
        "growth_mb_per_min": per_min / 1024 if per_min is not None else None,
        "growth_r2": r2,
        "growth_kb_per_million_requests": (
            slope_kb_s / per_req * 1e6 if slope_kb_s is not None and per_req else None
        ),
        "settled_samples": len(settled),
        "after_rss_mb": after[-1].rss_kb / 1024 if after else None,
        "after_s": after[-1].t_s if after else None,
    }


def num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def verdict(a: dict[str, Any], minutes: float, settle_s: float) -> str:
    growth, r2 = a["growth_mb_per_min"], a["growth_r2"]
    if growth is None:
        return "too few samples after the settle time to fit a slope (run longer)"
    total = growth * max(0.0, minutes - settle_s / 60)
    base = a["settled_first_rss_mb"] or 1.0
    if growth > 0 and total > 0.02 * base and (r2 or 0) >= 0.8:
        return (f"STEADY GROWTH: {growth:+.2f} MB/min (R^2 {r2:.2f}), "
                f"{total:+.1f} MB over the load: looks like a leak")  # fmt: skip
    return (f"flat: {growth:+.3f} MB/min (R^2 {num(r2, 2)}), {total:+.2f} MB over the settled "
            f"load, under 2% of RSS or not steady")  # fmt: skip


def render(a: dict[str, Any], info: dict[str, Any]) -> str:
    args = info["args"]
    w = info["wrk"]
    lines = [
        f"# Memory and soak, {info['date']}",
        "",
        f"Modelport ({Path(args['config']).name}) worker RSS (VmRSS) sampled every "
        f"{args['interval']:g} s: {args['idle_s']:g} s idle, then wrk -c{args['connections']} "
        f"for {args['soak_minutes']:g} min, then {args['after_s']:g} s idle. Slope fitted over "
        f"the load after its first {args['settle_s']:g} s. Gateway pinned to CPU {GATEWAY_CPU}, "
        f"wrk + nginx to CPU {LOAD_CPU}{'' if info['pinned'] else ' (NOT pinned)'}.",
        f"Machine: {info['machine']['cpu_model']}, {info['machine']['nproc']} CPUs; "
        f"Python {info['machine']['python'].split()[0]}; commit {info['git']['commit']}"
        f"{' (dirty)' if info['git']['dirty'] else ''}.",
        "",
        f"| RSS at idle | after {args['settle_s']:g} s of load | load end | load peak "
        "| growth / min (R^2) | growth / 1M requests | after load |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {num(a['idle_rss_mb'])} MB | {num(a['settled_first_rss_mb'])} MB "
        f"| {num(a['load_last_rss_mb'])} MB | {num(a['load_peak_rss_mb'])} MB "
        f"| {num(a['growth_mb_per_min'], 3)} MB ({num(a['growth_r2'], 2)}) "
        f"| {num(a['growth_kb_per_million_requests'], 0)} KB "
        f"| {num(a['after_rss_mb'])} MB (after {num(a['after_s'], 0)} s) |",
        "",
        f"Load: {w['requests']} requests in {w['seconds']:.0f} s ({w['rps']:.0f} req/s, "
        f"p50 {w['p50_ms']:.2f} ms, p99 {w['p99_ms']:.2f} ms, errors {w['errors']}); "
        f"gateway CPU {info['cpu_s']:.0f} s.",
        "",
        f"Verdict: {verdict(a, args['soak_minutes'], args['settle_s'])}.",
    ]
    if args["soak_minutes"] < 5:
        lines += ["", "Note: a short soak (under 5 minutes) shows start-up growth more than "
                  "leaks; run the default 10 minutes before drawing conclusions."]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Memory and soak benchmark (bench/README.md)")
    parser.add_argument("--soak-minutes", type=float, default=10, help="load minutes (10)")
    parser.add_argument("--idle-s", type=float, default=20, help="idle seconds first (20)")
    parser.add_argument("--after-s", type=float, default=10, help="idle seconds after (10)")
    parser.add_argument("--settle-s", type=float, default=30,
                        help="load seconds left out of the slope (30)")  # fmt: skip
    parser.add_argument("--interval", type=float, default=5, help="seconds between samples (5)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--config", type=Path, default=BENCH / "configs" / "bare.yaml",
                        help="Modelport config (bench/configs/bare.yaml)")  # fmt: skip
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    if (args.soak_minutes <= 0 or args.idle_s < 0 or args.after_s < 0 or args.interval <= 0
            or args.connections < 1):  # fmt: skip
        parser.error("--soak-minutes, --interval and --connections must be positive")
    if not args.config.exists():
        parser.error(f"--config {args.config}: no such file")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now().astimezone()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found; bench/run installs it (apt-get install)")
    if not modelport_bin().exists():
        raise BenchError(f"{modelport_bin()} not found: install the package (pip install -e .)")
    for port in (UPSTREAM_PORT, MODELPORT_PORT):
        ensure_port_free(port)
    pin = {int(LOAD_CPU), int(GATEWAY_CPU)} <= os.sched_getaffinity(0)
    if not pin:
        print("warning: CPUs 0 and 1 are not both available; running unpinned", file=sys.stderr)
    work_root = BENCH / ".work"
    work_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="memory-", dir=work_root))
    try:
        measured = run(args, pin, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    wrk = measured["wrk"]
    analysis = analyse(measured["samples"], wrk.requests, args.settle_s)
    info = run_facts(
        started, pin, machine_info(),
        args={"soak_minutes": args.soak_minutes, "idle_s": args.idle_s,
              "after_s": args.after_s, "settle_s": args.settle_s, "interval": args.interval,
              "connections": args.connections, "config": str(args.config)},
        wrk={"requests": wrk.requests, "seconds": wrk.seconds, "rps": wrk.rps,
             "p50_ms": wrk.p50_ms, "p99_ms": wrk.p99_ms, "errors": wrk.errors},
        cpu_s=measured["cpu_s"],
    )  # fmt: skip
    write_report(args, info, "memory", render(analysis, info),
                 {"analysis": analysis,
                  "verdict": verdict(analysis, args.soak_minutes, args.settle_s),
                  "samples": [asdict(s) for s in measured["samples"]]})  # fmt: skip
    if wrk.errors:
        print("error: the load saw non-2xx responses or socket errors", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    cli(main)
