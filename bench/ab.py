"""Two builds of Modelport side by side: an earlier git revision against the working tree.

    .venv/bin/python bench/ab.py --base c79cf2a            # what a change costs, measured
    .venv/bin/python bench/ab.py --base HEAD~3 --config bench/configs/production.yaml
    .venv/bin/python bench/ab.py --base HEAD --head-config bench/configs/controls.yaml \
        --head-setup "modelport switch off --route bench-other --reason bench \
                      --config $PWD/bench/configs/controls.yaml"   # what a config costs

The base revision is checked out into a temporary git worktree and run with the same virtual
environment (its ``src`` first on ``PYTHONPATH``), so only Modelport's own code differs. Both
gateways serve the same config in front of the same nginx upstream, pinned to the same core
(only one is under load at a time); wrk runs on the other core. Rounds interleave the two
builds (A B, then B A, ...), at each concurrency. The report gives per-round medians with
their spread, and the difference of the working tree against the base: added p50 at c=1,
throughput ratio at c=32, CPU time per request. With ``--head-config`` the working tree
serves another config than the base (``--base HEAD`` on a clean tree: the same code, so the
difference is what that config costs); ``--head-setup`` is a shell command run first in the
run's folder, where the gateways run (say, turning a kill switch off in that config's store).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness import git_info
from overhead import (
    BENCH,
    GATEWAY_CPU,
    HOST,
    BenchError,
    Child,
    Children,
    ensure_port_free,
    gateway_env,
    machine_info,
    pinned,
    run_wrk,
    start_upstream,
    tree_cpu_seconds,
    wait_ready,
)

REPO = BENCH.parent
PORTS = {"base": 18320, "head": 18321}


@contextlib.contextmanager
def base_checkout(revision: str) -> Iterator[Path]:
    """The base revision's tree in a temporary worktree, removed afterwards."""
    where = Path(tempfile.mkdtemp(prefix="modelport-ab-"))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), revision],
        check=True,
        capture_output=True,
    )
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)],
            check=False,
            capture_output=True,
        )


def start(children: Children, name: str, src: Path, config: Path, pin: bool) -> Child:
    port = PORTS[name]
    argv = [
        sys.executable,
        "-m",
        "modelport.cli.main",
        "serve",
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    env = {**gateway_env(), "PYTHONPATH": str(src)}
    child = children.start(f"modelport-{name}", pinned(GATEWAY_CPU, argv, pin), env)
    wait_ready(child, f"http://{HOST}:{port}", "/health/ready", 60)
    return child


def measure(child: Child, name: str, connections: int, seconds: float, pin: bool) -> dict[str, Any]:
    cpu_before = tree_cpu_seconds(child.proc.pid)
    result = run_wrk(f"http://{HOST}:{PORTS[name]}/v1/chat/completions", connections, seconds, pin)
    cpu = tree_cpu_seconds(child.proc.pid) - cpu_before
    if result.errors:
        raise BenchError(f"{name}: {result.errors} failed requests at c={connections}")
    return {
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "cpu_us_per_request": cpu / max(result.requests, 1) * 1e6,
    }


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def render(args: argparse.Namespace, runs: list[dict[str, Any]], info: dict[str, Any]) -> str:
    lines = [
        f"# Modelport {args.base} against the working tree, {info['date']}",
        "",
        f"Config `{args.config}`"
        + (f" (base), `{args.head_config}` (head, after `{args.head_setup}`)"
           if args.head_config != args.config else "")
        + f"; {args.rounds} rounds of {args.duration:g} s per build "
        "and concurrency, interleaved; gateways pinned to one core, wrk on the other.",
        "",
        "| build | c | req/s | p50 ms | p99 ms | CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in args.concurrency:
        for name in ("base", "head"):
            rows = [r for r in runs if r["build"] == name and r["c"] == c]
            lines.append(
                f"| {name} | {c} | {spread([r['rps'] for r in rows])} | "
                f"{spread([r['p50_ms'] for r in rows])} | "
                f"{spread([r['p99_ms'] for r in rows])} | "
                f"{spread([r['cpu_us_per_request'] for r in rows])} |"
            )
    lines.append("")
    for c in args.concurrency:
        pairs = [
            (a, b)
            for a in runs
            for b in runs
            if a["round"] == b["round"]
            and a["c"] == c == b["c"]
            and a["build"] == "base"
            and b["build"] == "head"
        ]
        added = [b["p50_ms"] - a["p50_ms"] for a, b in pairs]
        ratio = [b["rps"] / a["rps"] for a, b in pairs]
        cpu = [b["cpu_us_per_request"] / a["cpu_us_per_request"] for a, b in pairs]
        lines.append(
            f"- c={c}: added p50 (head - base, per round) {spread(added)} ms; "
            f"throughput head/base {spread(ratio)}; CPU/request head/base {spread(cpu)}"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--config", default=str(BENCH / "configs" / "bare.yaml"))
    parser.add_argument("--head-config", default=None,
                        help="the working tree's config [default: --config]")
    parser.add_argument("--head-setup", default=None,
                        help="a shell command run in the run's folder before the gateways start")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32]
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--out", default=None, help="write the report (.md) and .json here")
    args = parser.parse_args(argv)
    args.config = str(Path(args.config).resolve())  # the gateways run in the run's folder
    args.head_config = str(Path(args.head_config or args.config).resolve())
    for port in (*PORTS.values(), 18100):
        ensure_port_free(port)
    info = {
        "date": dt.date.today().isoformat(),
        "machine": machine_info(),
        "git": git_info(),
        "base": args.base,
    }
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="modelport-ab-run-") as work,
        base_checkout(args.base) as base,
    ):
        children = Children(Path(work))
        if args.head_setup:
            subprocess.run(args.head_setup, shell=True, check=True, cwd=work,
                           env={**gateway_env(), "PATH": f"{Path(sys.executable).parent}:"
                                                        f"{os.environ.get('PATH', '')}"})
        try:
            start_upstream(children, args.pin)
            gateways = {
                "base": start(children, "base", base / "src", Path(args.config), args.pin),
                "head": start(children, "head", REPO / "src", Path(args.head_config),
                              args.pin),
            }
            for name, child in gateways.items():  # warm up
                measure(child, name, 32, 2, args.pin)
            for rnd in range(args.rounds):
                order = ("base", "head") if rnd % 2 == 0 else ("head", "base")
                for c in args.concurrency:
                    for name in order:
                        row = measure(gateways[name], name, c, args.duration, args.pin)
                        runs.append({"round": rnd, "build": name, "c": c, **row})
                        print(f"round {rnd} {name} c={c}: {row}", file=sys.stderr)
                        time.sleep(0.5)
        finally:
            children.stop_all()
    report = render(args, runs, info)
    print(report)
    if args.out:
        out = Path(args.out)
        out.with_suffix(".md").write_text(report)
        out.with_suffix(".json").write_text(json.dumps({"info": info, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
