"""Gateway-overhead benchmark harness (run it through `bench/run`).

Starts an nginx upstream stand-in (canned chat.completion), the Python floor (bench/floor.py),
Modelport (`modelport serve --config bench/configs/bare.yaml`) and the peers (nginx as a
reverse proxy, LiteLLM proxy), then measures, interleaved in one run over several rounds, wrk
against each target at each concurrency:

    direct       wrk -> nginx
    nginx-proxy  wrk -> nginx reverse proxy (bench/nginx-proxy.conf) -> nginx
    floor        wrk -> bench/floor.py -> nginx
    modelport    wrk -> modelport serve -> nginx
    litellm      wrk -> litellm proxy (bench/.venv-litellm, bench/configs/litellm.yaml) -> nginx

The gateway under test is pinned to CPU 1; wrk and nginx to CPU 0. Each run records requests/s,
p50/p99 latency, errors and the gateway's CPU time per request (utime+stime from /proc). The
report gives medians over rounds with their spread, added latency against direct, and the
Modelport/floor, Modelport/LiteLLM and Modelport/nginx-proxy ratios. LiteLLM is optional: when
it is not installed or does not start, the run says so and goes on without it. It prints a
markdown table and writes bench/results/<date>-overhead.md and .json. Only 127.0.0.1 is ever
contacted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    BenchError,
    Notes,
    Stat,
    add_output_arguments,
    cli,
    rotated,
    run_facts,
    stat,
    terminated_on_signal,
    to_jsonable,
    write_report,
)
from harness import machine_info as harness_machine_info

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HOST = "127.0.0.1"
UPSTREAM_PORT = 18100
FLOOR_PORT = 18200
MODELPORT_PORT = 18300
MODELPORT_PROD_PORT = 18301
LITELLM_PORT = 18400
NGINX_PROXY_PORT = 18500
PORTS = {
    "direct": UPSTREAM_PORT,
    "nginx-proxy": NGINX_PROXY_PORT,
    "floor": FLOOR_PORT,
    "modelport": MODELPORT_PORT,
    "modelport-prod": MODELPORT_PROD_PORT,
    "litellm": LITELLM_PORT,
    "portkey": 18450,
}
CHAT_PATH = "/v1/chat/completions"
ROUTE = "bench-chat"
UPSTREAM_KEY = "bench-key"
API_KEY = "mpk_benchmarkbenchmarkbenchmarkbenchmark1234"  # the production config's key
ADMIN_KEY = "bench-admin-key-not-a-secret"
TARGETS = ("direct", "nginx-proxy", "floor", "modelport", "modelport-prod", "litellm", "portkey")
# Modelport's throughput is also reported against these
PEERS = ("litellm", "portkey", "nginx-proxy")
# Modelport configurations: bare proxy, and production features on (ledger, request log)
MODELPORT_CONFIGS = {"modelport": "bare.yaml", "modelport-prod": "production.yaml"}
LOAD_CPU = "0"  # wrk and nginx
GATEWAY_CPU = "1"  # the gateway under test
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROBE_BODY = json.dumps(
    {"model": ROUTE, "messages": [{"role": "user", "content": "Say hello"}]}
).encode()


# --------------------------------------------------------------------------- processes


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


class Children:
    """Long-lived child processes, each in its own process group; all stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.items: list[Child] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Child:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=self.workdir,  # so anything a gateway writes (e.g. a ledger) stays per run
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(name, proc, log)
        self.items.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.items):
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for child in reversed(self.items):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait(timeout=5)
        self.items.clear()


def pinned(cpu: str, argv: Sequence[str], pin: bool) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if pin else list(argv)


def ensure_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: sockets in TIME_WAIT from an earlier run do not make a port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise BenchError(
                f"port {HOST}:{port} is busy ({exc.strerror}); stop whatever listens there"
            ) from exc


def http_status(method: str, url: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Authorization", f"Bearer {API_KEY}")  # as wrk sends it
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(child: Child, base: str, health_path: str | None, timeout: float) -> None:
    """Poll until the target answers, then check a real chat request gets a chat.completion."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise BenchError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
        try:
            if health_path is not None:
                status, _ = http_status("GET", base + health_path, None, 2)
                if status != 200:
                    raise ConnectionError(f"GET {health_path} -> {status}")
            status, body = http_status("POST", base + CHAT_PATH, PROBE_BODY, 5)
            if status == 200 and b'"choices"' in body:
                return
            last = f"POST {CHAT_PATH} -> {status}: {body[:300]!r}"
        except (OSError, ConnectionError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchError(f"{child.name} not ready after {timeout:.0f}s ({last}):\n{child.tail()}")


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime of pid and all its live descendants, in seconds."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 (state)
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    if pid not in ticks:
        raise BenchError(f"process {pid} vanished")
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += ticks.get(current, 0)
        todo.extend(p for p, parent in parents.items() if parent == current)
    return total / CLK_TCK


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    percentiles_ms: dict[str, float]
    non2xx: int
    socket_errors: dict[str, int]
    output: str

    @property
    def errors(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unparseable wrk duration {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    distribution = re.search(r"Latency Distribution\n((?:\s+[\d.]+%\s+\S+[ \t]*\n)+)", output)
    summary = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not (distribution and summary and rps):
        raise BenchError(f"could not parse wrk output:\n{output}")
    percentiles = {
        pct: to_ms(value) for pct, value in re.findall(r"([\d.]+)%\s+(\S+)", distribution.group(1))
    }
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    if errors:
        socket_errors = dict(zip(socket_errors, map(int, errors.groups()), strict=True))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests=int(summary.group(1)),
        seconds=to_ms(summary.group(2) + summary.group(3)) / 1e3,
        rps=float(rps.group(1)),
        p50_ms=percentiles["50"],
        p99_ms=percentiles["99"],
        percentiles_ms=percentiles,
        non2xx=int(non2xx.group(1)) if non2xx else 0,
        socket_errors=socket_errors,
        output=output,
    )


def run_wrk(
    url: str, connections: int, seconds: float, pin: bool, extra_env: dict[str, str] | None = None
) -> WrkResult:
    argv = pinned(
        LOAD_CPU,
        [
            "wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency",
            "--timeout", "5s", "-s", str(BENCH / "chat.lua"), url,
        ],
        pin,
    )  # fmt: skip
    # every target gets the same Authorization header; only modelport-prod checks it
    env = {**os.environ, "BENCH_ROUTE": ROUTE, "BENCH_API_KEY": API_KEY, **(extra_env or {})}
    try:
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {seconds + 30:.0f}s: {url}") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    url: str
    gateway: Child | None  # None for direct: no gateway, no CPU figure
    wrk_env: dict[str, str] = field(default_factory=dict)  # e.g. Portkey's routing headers


def modelport_bin() -> Path:
    return Path(sys.executable).parent / "modelport"


def gateway_env() -> dict[str, str]:
    return {**os.environ, "BENCH_UPSTREAM_KEY": UPSTREAM_KEY, "PYTHONUNBUFFERED": "1",
            "BENCH_API_KEY": API_KEY, "BENCH_ADMIN_KEY": ADMIN_KEY}  # fmt: skip


def start_nginx(children: Children, name: str, conf: Path, cpu: str, pin: bool) -> Child:
    """nginx in the foreground, its pid and temp files under the run's own directory."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix = children.workdir / name
    (prefix / "tmp").mkdir(parents=True)
    prefix.chmod(0o755)
    argv = [nginx, "-p", str(prefix), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"]
    return children.start(name, pinned(cpu, argv, pin))


def start_upstream(children: Children, pin: bool) -> str:
    """The nginx upstream stand-in on CPU 0; returns its base URL."""
    upstream = start_nginx(children, "nginx", BENCH / "nginx-upstream.conf", LOAD_CPU, pin)
    base = f"http://{HOST}:{UPSTREAM_PORT}"
    wait_ready(upstream, base, None, 15)
    return base


def start_modelport(
    children: Children, name: str, config: Path, port: int, pin: bool, timeout: float = 60
) -> Child:
    argv = [str(modelport_bin()), "serve", "--config", str(config),
            "--host", HOST, "--port", str(port)]  # fmt: skip
    gateway = children.start(name, pinned(GATEWAY_CPU, argv, pin), gateway_env())
    wait_ready(gateway, f"http://{HOST}:{port}", "/health/ready", timeout)
    return gateway


def stop_child(children: Children, child: Child) -> None:
    """Stop one child (its whole process group) early, e.g. a peer that failed to start."""
    if child.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGTERM)
        try:
            child.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait(timeout=5)
    if child in children.items:
        children.items.remove(child)


def start_peer(children: Children, notes: Notes, name: str, label: str,
               start: Callable[[], Child]) -> Child | None:  # fmt: skip
    """Start a peer (a process named `name`); if it cannot start, stop what it left running
    and leave it out with a note (an error when the notes are strict). None when left out."""
    try:
        return start()
    except BenchError as exc:
        for child in [c for c in children.items if c.name == name]:
            stop_child(children, child)
        notes.left_out(f"{label} left out: it could not be started ({exc})")
        return None


def start_targets(
    names: Sequence[str], children: Children, pin: bool, notes: Notes
) -> dict[str, Target]:
    """Start every target; a peer is optional (a failure is noted in `notes`, not fatal,
    unless they are strict)."""
    from peers import litellm_peer

    base = start_upstream(children, pin)
    targets = {"direct": Target("direct", base + CHAT_PATH, None)}

    if "nginx-proxy" in names:
        proxy = start_nginx(children, "nginx-proxy", BENCH / "nginx-proxy.conf", GATEWAY_CPU, pin)
        wait_ready(proxy, f"http://{HOST}:{NGINX_PROXY_PORT}", None, 15)
        targets["nginx-proxy"] = Target(
            "nginx-proxy", f"http://{HOST}:{NGINX_PROXY_PORT}{CHAT_PATH}", proxy
        )
    if "floor" in names:
        argv = [sys.executable, str(BENCH / "floor.py"), f"{base}/v1", "--port", str(FLOOR_PORT)]
        floor = children.start("floor", pinned(GATEWAY_CPU, argv, pin), gateway_env())
        wait_ready(floor, f"http://{HOST}:{FLOOR_PORT}", None, 30)
        targets["floor"] = Target("floor", f"http://{HOST}:{FLOOR_PORT}{CHAT_PATH}", floor)
    for name, config in MODELPORT_CONFIGS.items():
        if name not in names:
            continue
        port = PORTS[name]
        gateway = start_modelport(children, name, BENCH / "configs" / config, port, pin)
        targets[name] = Target(name, f"http://{HOST}:{port}{CHAT_PATH}", gateway)
    if "litellm" in names:
        config = BENCH / "configs" / "litellm.yaml"
        litellm = litellm_peer(children, notes, config, LITELLM_PORT, pin)
        if litellm is not None:
            targets["litellm"] = Target(
                "litellm", f"http://{HOST}:{LITELLM_PORT}{CHAT_PATH}", litellm
            )
    if "portkey" in names:
        from peers import PORTKEY_PORT, start_portkey, wrk_env

        portkey = start_peer(
            children, notes, "portkey", "Portkey", lambda: start_portkey(children, base, pin)
        )
        if portkey is not None:
            targets["portkey"] = Target(
                "portkey", f"http://{HOST}:{PORTKEY_PORT}{CHAT_PATH}", portkey, wrk_env(base)
            )
    return {name: targets[name] for name in names if name in targets}


# --------------------------------------------------------------------------- measuring


@dataclass
class Run:
    round: int
    target: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    seconds: float
    cpu_s: float | None
    cpu_us_per_req: float | None
    cpu_util: float | None  # gateway CPU seconds per wall second (1.0 = one core saturated)
    non2xx: int
    socket_errors: dict[str, int]
    errors: bool
    percentiles_ms: dict[str, float] = field(default_factory=dict)
    wrk_output: str = ""


def measure(target: Target, rnd: int, connections: int, seconds: float, pin: bool) -> Run:
    pid = target.gateway.proc.pid if target.gateway else None
    before = tree_cpu_seconds(pid) if pid else 0.0
    result = run_wrk(target.url, connections, seconds, pin, target.wrk_env)
    cpu = tree_cpu_seconds(pid) - before if pid else None
    if target.gateway and target.gateway.proc.poll() is not None:
        raise BenchError(f"{target.name} died during the run:\n{target.gateway.tail()}")
    return Run(
        round=rnd,
        target=target.name,
        concurrency=connections,
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        requests=result.requests,
        seconds=result.seconds,
        cpu_s=cpu,
        cpu_us_per_req=cpu / result.requests * 1e6 if cpu is not None and result.requests else None,
        cpu_util=cpu / result.seconds if cpu is not None and result.seconds else None,
        non2xx=result.non2xx,
        socket_errors=result.socket_errors,
        errors=result.errors > 0,
        percentiles_ms=result.percentiles_ms,
        wrk_output=result.output,
    )


# --------------------------------------------------------------------------- reporting

METRICS = ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "cpu_util")


def summarise(runs: Sequence[Run], targets: Sequence[str], levels: Sequence[int]) -> dict[str, Any]:
    cells: dict[str, dict[int, dict[str, Stat | None]]] = {}
    for name in targets:
        cells[name] = {}
        for c in levels:
            subset = [r for r in runs if r.target == name and r.concurrency == c]
            cells[name][c] = {m: stat([getattr(r, m) for r in subset]) for m in METRICS}

    def median(name: str, c: int, metric: str) -> float | None:
        s = cells.get(name, {}).get(c, {}).get(metric)
        return s.median if s else None

    def per_round(fn: Callable[[Run, Run], float | None], a: str, b: str, c: int) -> Stat | None:
        """The figure taken side by side inside each round, then its median and spread."""
        values = []
        for rnd in sorted({r.round for r in runs}):
            ra = [r for r in runs if (r.round, r.target, r.concurrency) == (rnd, a, c)]
            rb = [r for r in runs if (r.round, r.target, r.concurrency) == (rnd, b, c)]
            if ra and rb:
                values.append(fn(ra[0], rb[0]))
        return stat(values)

    added: dict[str, dict[int, dict[str, float | None]]] = {}
    for name in targets:
        if name == "direct" or "direct" not in targets:
            continue
        added[name] = {}
        for c in levels:
            row: dict[str, float | None] = {}
            for metric in ("p50_ms", "p99_ms"):
                mine, direct = median(name, c, metric), median("direct", c, metric)
                row[metric] = mine - direct if mine is not None and direct is not None else None
            added[name][c] = row

    ratios: dict[str, Stat | None] = {}
    hi, lo = max(levels), min(levels)
    for mp in MODELPORT_CONFIGS:
        if mp not in targets or "floor" not in targets:
            continue
        ratios[f"rps {mp}/floor c={hi}"] = per_round(lambda a, b: a.rps / b.rps, mp, "floor", hi)
        for c in levels:
            ratios[f"cpu/req {mp}/floor c={c}"] = per_round(
                lambda a, b: (
                    a.cpu_us_per_req / b.cpu_us_per_req
                    if a.cpu_us_per_req and b.cpu_us_per_req
                    else None
                ),
                mp,
                "floor",
                c,
            )
        ratios[f"p50 {mp}-floor c={lo} (ms)"] = per_round(
            lambda a, b: a.p50_ms - b.p50_ms, mp, "floor", lo
        )
    peer_ratios: dict[str, Stat | None] = {}
    for mp in MODELPORT_CONFIGS:
        for peer in PEERS:
            if mp not in targets or peer not in targets:
                continue
            peer_ratios[f"rps {mp}/{peer} c={hi}"] = per_round(
                lambda a, b: a.rps / b.rps if b.rps else None, mp, peer, hi
            )
            peer_ratios[f"cpu/req {mp}/{peer} c={hi}"] = per_round(
                lambda a, b: (
                    a.cpu_us_per_req / b.cpu_us_per_req
                    if a.cpu_us_per_req and b.cpu_us_per_req
                    else None
                ),
                mp,
                peer,
                hi,
            )
    return {"cells": cells, "added_vs_direct": added, "ratios": ratios,
            "peer_ratios": peer_ratios}  # fmt: skip


def fmt(s: Stat | None, digits: int = 2, scale: float = 1.0) -> str:
    if s is None:
        return "-"
    m, lo, hi = s.median * scale, s.low * scale, s.high * scale
    return f"{m:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"


def signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def render(summary: dict[str, Any], runs: Sequence[Run], info: dict[str, Any]) -> str:
    cells, added = summary["cells"], summary["added_vs_direct"]
    args = info["args"]
    lines = [
        f"# Gateway overhead, {info['date']}",
        "",
        f"{args['rounds']} round(s) x {args['duration']:g} s per run, interleaved; "
        f"median (min-max) over rounds. Gateway pinned to CPU {GATEWAY_CPU}, wrk + nginx to "
        f"CPU {LOAD_CPU}{'' if info['pinned'] else ' (NOT pinned: fewer than 2 CPUs)'}.",
        f"Machine: {info['machine']['cpu_model']}, {info['machine']['nproc']} CPUs; "
        f"Python {info['machine']['python'].split()[0]}; commit {info['git']['commit']}"
        f"{' (dirty)' if info['git']['dirty'] else ''}.",
        "",
        "| target | c | req/s | p50 ms | p99 ms | +p50 ms vs direct | +p99 ms vs direct "
        "| gateway CPU µs/req | gateway CPU util | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, per_level in cells.items():
        for c, m in per_level.items():
            bad = sum(1 for r in runs if r.target == name and r.concurrency == c and r.errors)
            extra = added.get(name, {}).get(c, {})
            lines.append(
                f"| {name} | {c} | {fmt(m['rps'], 0)} | {fmt(m['p50_ms'], 3)} "
                f"| {fmt(m['p99_ms'], 3)} | {signed(extra.get('p50_ms'))} "
                f"| {signed(extra.get('p99_ms'))} | {fmt(m['cpu_us_per_req'], 0)} "
                f"| {fmt(m['cpu_util'], 2)} | {f'**{bad} run(s)**' if bad else '0'} |"
            )
    if summary["ratios"]:
        lines += ["", "Modelport against the Python floor (per round, side by side):", ""]
        for label, s in summary["ratios"].items():
            lines.append(f"- {label}: {fmt(s, 3)}")
    if summary.get("peer_ratios"):
        lines += [
            "",
            "Modelport against the peers (per round, side by side; rps > 1 means "
            "Modelport serves more requests/s than the peer):",
            "",
        ]
        for label, s in summary["peer_ratios"].items():
            lines.append(f"- {label}: {fmt(s, 3)}")
    flagged = [r for r in runs if r.errors]
    if flagged:
        lines += ["", "**Runs with errors** (non-2xx/3xx or socket errors):", ""]
        for r in flagged:
            lines.append(
                f"- round {r.round} {r.target} c={r.concurrency}: non-2xx {r.non2xx}, "
                f"socket {r.socket_errors}"
            )
    lines += ["", *(f"Note: {w}" for w in info["warnings"])]
    if "litellm" in info["args"]["targets"]:
        lines.append(
            f"Note: LiteLLM {info['machine']['versions'].get('litellm') or '?'}, "
            "one worker, no database, open (no master key)."
        )
    return "\n".join(lines).rstrip() + "\n"


def nagle_warnings(runs: Sequence[Run]) -> list[str]:
    """A p50 stuck near 40 ms at c=1 is the signature of Nagle + delayed ACK."""
    return [
        f"{r.target} c=1 round {r.round}: p50 {r.p50_ms:.1f} ms looks like a 40 ms Nagle "
        "plateau (check TCP_NODELAY)"
        for r in runs
        if r.concurrency == 1 and 35 <= r.p50_ms <= 45
    ]


# --------------------------------------------------------------------------- machine info


def machine_info() -> dict[str, Any]:
    """The machine, with the versions of this benchmark's peers."""
    from peers import litellm_version, portkey_version

    return harness_machine_info({"litellm": litellm_version(), "portkey": portkey_version()})


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gateway-overhead benchmark (see bench/README.md)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    parser.add_argument(
        "--warmup", type=float, default=3, help="warm-up seconds per target (3; 0: none)"
    )
    parser.add_argument(
        "--only",
        default=",".join(TARGETS),
        help=f"comma-separated targets (default {','.join(TARGETS)})",
    )
    parser.add_argument("--concurrency", default="1,32", help="wrk connection counts (1,32)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    args.targets = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = set(args.targets) - set(TARGETS)
    if unknown or not args.targets:
        parser.error(f"--only takes names from {', '.join(TARGETS)}; got {args.only!r}")
    args.targets = [t for t in TARGETS if t in args.targets]
    args.levels = sorted({int(c) for c in args.concurrency.split(",")})
    if args.rounds < 1 or args.duration <= 0 or min(args.levels) < 1:
        parser.error("--rounds, --duration and --concurrency must be positive")
    return args


def preflight(args: argparse.Namespace) -> bool:
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found; bench/run installs it (apt-get install)")
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        raise BenchError("nginx not found; bench/run installs it (apt-get install nginx)")
    if set(MODELPORT_CONFIGS) & set(args.targets) and not modelport_bin().exists():
        raise BenchError(
            f"{modelport_bin()} not found: install the package (pip install -e .) "
            "or leave it out with --only direct,floor"
        )
    ports = PORTS
    for port in {UPSTREAM_PORT, *(ports[t] for t in args.targets)}:
        ensure_port_free(port)
    cpus = os.sched_getaffinity(0)
    return {int(LOAD_CPU), int(GATEWAY_CPU)} <= cpus


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now().astimezone()
    pin = preflight(args)
    if not pin:
        print("warning: CPUs 0 and 1 are not both available; running unpinned", file=sys.stderr)
    work_root = BENCH / ".work"
    work_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="overhead-", dir=work_root))
    children = Children(workdir)
    runs: list[Run] = []
    notes = Notes(args.note, strict=args.require_all)  # e.g. bench/run: LiteLLM not installed
    try:
        with terminated_on_signal():
            targets = start_targets(args.targets, children, pin, notes)
            args.targets = [t for t in args.targets if t in targets]
            for target in targets.values() if args.warmup > 0 else ():
                print(f"warm-up {target.name} ({args.warmup:g}s)", file=sys.stderr)
                run_wrk(target.url, max(args.levels), args.warmup, pin)
            for rnd in range(1, args.rounds + 1):
                for name in rotated(args.targets, rnd - 1):
                    if name not in targets:
                        continue  # a peer that died in an earlier round
                    for c in args.levels:
                        try:
                            run = measure(targets[name], rnd, c, args.duration, pin)
                        except BenchError as exc:
                            if name != "litellm":
                                raise
                            notes.left_out(f"LiteLLM left out from round {rnd} on: {exc}")
                            del targets[name]
                            break
                        runs.append(run)
                        cpu = f"{run.cpu_us_per_req:.0f}" if run.cpu_us_per_req else "-"
                        print(
                            f"round {rnd} {name:14} c={c:<3} {run.rps:9.0f} req/s  "
                            f"p50 {run.p50_ms:7.3f} ms  p99 {run.p99_ms:7.3f} ms  "
                            f"cpu {cpu} µs/req{'  ERRORS' if run.errors else ''}",
                            file=sys.stderr,
                        )
    finally:
        children.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)

    info = run_facts(
        started, pin, machine_info(),
        args={"rounds": args.rounds, "duration": args.duration, "warmup": args.warmup,
              "targets": args.targets, "concurrency": args.levels},
        warnings=[*notes, *nagle_warnings(runs)],
    )  # fmt: skip
    summary = summarise(runs, args.targets, args.levels)
    write_report(args, info, "overhead", render(summary, runs, info),
                 {"summary": to_jsonable(summary), "runs": [asdict(r) for r in runs]})  # fmt: skip
    if any(r.errors for r in runs):
        print("error: some runs had non-2xx responses or socket errors", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # Run this module under its own name, so that bench/peers.py (which imports it) shares
    # its module state (one Children registry, one set of classes).
    import overhead

    cli(overhead.main)
