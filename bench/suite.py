"""All of Modelport's serving benchmarks in one run, in order (run it through `bench/run`).

    overhead   bench/overhead.py   wrk against direct, nginx-proxy, floor, modelport,
                                   modelport-prod, litellm and portkey at c=1 and c=32
    streaming  bench/streaming.py  TTFT and inter-chunk gaps at 1 and 256 concurrent streams
    openloop   bench/openloop.py   fixed arrival rates (500 and 1000 requests/s)
    local      bench/local.py      local runtimes: GGUF LLM against raw llama-cpp-python,
                                   Iris over V2 against MLServer, open loop, adaptive batching
    memory     bench/memory.py     worker RSS at idle, over a soak under load, and after

Each part runs as its own process with a time limit, writes bench/results/<date>-<part>.md and
.json and prints its table; a part that fails is reported and the next one runs.

`bench/run --smoke` (about two minutes once the peers are installed; .ci/run runs it) runs every
part briefly into bench/.work/smoke/ and checks that the harness works: every target answered,
with no failed request, and every part wrote its numbers. It says nothing about speed.

LiteLLM proxy (a peer in overhead and streaming) is installed on first use into
bench/.venv-litellm, and the other parts install their peers the same way (MLServer, the
llama-cpp-python server, Portkey; MODELPORT_BENCH_ENVS moves them all to another folder); if that
fails the run says so and goes on without it (with --smoke it fails). Exit status: 0 when every
part ran clean, 2 when a part saw errors (failed requests or streams), 1 when a part could not
run or timed out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import local
import openloop
import overhead
import streaming
from harness import cli
from local_harness import LOCKS, install_venv
from overhead import BENCH, BenchError, ensure_port_free
from peers import LITELLM_VENV, litellm_bin

PARTS = ("overhead", "streaming", "openloop", "local", "memory")
# --smoke: the defaults it sets (flags given explicitly still win)
SMOKE = {"rounds": 1, "duration": 1, "warmup": 0, "stream_concurrency": "1,32",
         "rates": "200", "openloop_duration": 2, "soak_minutes": 0.05,
         "out_dir": BENCH / ".work" / "smoke"}  # fmt: skip
PYTHON = sys.executable


# --------------------------------------------------------------------------- processes


def descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2 :].split()[1])
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found.extend(kids)
        todo.extend(kids)
    return found


def stop_part(proc: subprocess.Popen[bytes], grace: float = 20) -> None:
    """SIGTERM the part (it stops its own children), then SIGKILL whatever is left of its tree."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    for pid in [*descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    def handler(signum: int, _frame: object) -> None:
        print(f"bench/run: signal {signum}, stopping", file=sys.stderr)
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_part(name: str, argv: Sequence[str], timeout: float) -> int:
    print(f"\n=== {name}: {' '.join(argv[1:])} (time limit {timeout / 60:.0f} min)",
          file=sys.stderr, flush=True)  # fmt: skip
    sys.stdout.flush()
    proc = subprocess.Popen(list(argv), cwd=BENCH.parent)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"error: {name} did not finish within {timeout:.0f}s; stopped it", file=sys.stderr)
        stop_part(proc)
        return 124
    finally:
        if proc.poll() is None:  # Ctrl-C or SIGTERM while the part runs
            stop_part(proc)


# --------------------------------------------------------------------------- LiteLLM


def ensure_litellm() -> str | None:
    """Install litellm[proxy] into its virtual environment unless it is there; None when
    usable, else why not."""
    problem = install_venv(LITELLM_VENV, "LiteLLM proxy", LOCKS / "litellm.txt",
                           "litellm-install.log", ["-c", "import litellm"])  # fmt: skip
    if problem is None and not litellm_bin().exists():
        return f"{litellm_bin()} missing after the install"
    return problem


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run", description="Modelport's benchmarks in one run (see bench/README.md)"
    )
    add = parser.add_argument
    add("--parts", default=",".join(PARTS), help=f"which parts, in order ({','.join(PARTS)})")
    add("--skip", default="", help="parts to leave out, e.g. --skip streaming,memory")
    add("--no-litellm", action="store_true", help="leave LiteLLM out everywhere (no install)")
    add(
        "--smoke",
        action="store_true",
        help="check the harness, about 2 minutes: every part briefly, every target must answer "
        "(a peer that cannot be installed is an error), results in bench/.work/smoke/",
    )
    add("--out-dir", type=Path, default=BENCH / "results")
    add("--no-write", action="store_true", help="print the reports, write no files")
    g = parser.add_argument_group("overhead (bench/overhead.py)")
    g.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds (overhead 3, streaming 2, local 3; given, it sets all three)",
    )
    g.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    g.add_argument("--warmup", type=float, default=3, help="warm-up seconds per target (3)")
    g.add_argument(
        "--only",
        default=",".join(overhead.TARGETS),
        help=f"targets (default {','.join(overhead.TARGETS)})",
    )
    g.add_argument("--concurrency", default="1,32", help="wrk connection counts (1,32)")
    g = parser.add_argument_group("streaming (bench/streaming.py)")
    g.add_argument("--stream-concurrency", default="1,256", help="concurrent streams (1,256)")
    g = parser.add_argument_group("openloop (bench/openloop.py)")
    g.add_argument("--rates", default="500,1000", help="arrival rates, requests/s (500,1000)")
    g.add_argument("--openloop-duration", type=float, default=30, help="seconds per rate (30)")
    g = parser.add_argument_group("local (bench/local.py)")
    g.add_argument(
        "--local-only",
        default=",".join(local.SECTIONS),
        help=f"local: sections ({','.join(local.SECTIONS)})",
    )
    g.add_argument(
        "--max-tokens", type=int, default=128, help="local: tokens per LLM completion (128)"
    )
    g.add_argument(
        "--local-duration",
        type=float,
        default=10,
        help="local: seconds per wrk run, Iris and batching (10)",
    )
    g.add_argument(
        "--local-openloop-duration",
        type=float,
        default=20,
        help="local: seconds of the Iris open loop at 1000/s (20)",
    )
    g.add_argument(
        "--no-mlserver", action="store_true", help="local: leave MLServer out (no install)"
    )
    g.add_argument(
        "--no-llama-server",
        action="store_true",
        help="local: leave llama-cpp-python's server out (no install)",
    )
    g = parser.add_argument_group("memory (bench/memory.py)")
    g.add_argument("--soak-minutes", type=float, default=10, help="minutes under load (10)")
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**SMOKE)
    args = parser.parse_args(argv)  # fmt: skip
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    skip = {p.strip() for p in args.skip.split(",") if p.strip()}
    unknown = (set(parts) | skip) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; parts: {', '.join(PARTS)}")
    args.part_list = [p for p in PARTS if p in parts and p not in skip]
    args.out_dir = args.out_dir.resolve()  # bench/run runs from the repository root
    if not args.part_list:
        parser.error("no part left to run")
    targets = [t.strip() for t in args.only.split(",") if t.strip()]
    if set(targets) - set(overhead.TARGETS) or not targets:
        parser.error(f"--only takes names from {', '.join(overhead.TARGETS)}; got {args.only!r}")
    if args.no_litellm and "litellm" in targets:
        targets.remove("litellm")
    args.targets = targets
    if (args.rounds is not None and args.rounds < 1) or args.duration <= 0 \
            or args.soak_minutes <= 0 or args.openloop_duration <= 0:  # fmt: skip
        parser.error("--rounds, --duration, --openloop-duration and --soak-minutes must be "
                     "positive")  # fmt: skip
    if "local" in args.part_list:
        try:  # local's own checks, so a bad flag fails before the first part runs
            args.local_args = local.parse_args(local_argv(args)[2:])
        except SystemExit:
            parser.error("bad flags for the local part (see above)")
    return args


def local_argv(args: argparse.Namespace) -> list[str]:
    """bench/local.py's command line (without --out-dir, --no-write, --note)."""
    if args.smoke:  # local.py's own short settings
        return [PYTHON, str(BENCH / "local.py"), "--smoke", "--only", args.local_only,
                *(["--no-mlserver"] if args.no_mlserver else []),
                *(["--no-llama-server"] if args.no_llama_server else [])]  # fmt: skip
    return [PYTHON, str(BENCH / "local.py"), "--rounds", str(args.rounds or 3),
            "--only", args.local_only, "--max-tokens", str(args.max_tokens),
            "--duration", f"{args.local_duration:g}",
            "--openloop-duration", f"{args.local_openloop_duration:g}",
            *(["--no-mlserver"] if args.no_mlserver else []),
            *(["--no-llama-server"] if args.no_llama_server else [])]  # fmt: skip


def commands(args: argparse.Namespace) -> dict[str, tuple[list[str], float]]:
    """Each selected part's command line and its time limit in seconds."""
    common = ["--out-dir", str(args.out_dir), *(["--no-write"] if args.no_write else []),
              *(["--require-all"] if args.smoke else [])]  # fmt: skip
    peers = ["--note", args.litellm_problem] if args.litellm_problem else []
    out: dict[str, tuple[list[str], float]] = {}
    rounds = args.rounds or 3
    levels = len(args.concurrency.split(","))
    expected = len(args.targets) * (rounds * levels * (args.duration + 2) + args.warmup + 5)
    out["overhead"] = (
        [PYTHON, str(BENCH / "overhead.py"), "--rounds", str(rounds), "--duration",
         f"{args.duration:g}", "--warmup", f"{args.warmup:g}", "--only", ",".join(args.targets),
         "--concurrency", args.concurrency, *peers, *common],
        expected * 1.5 + 600,
    )  # fmt: skip
    s_rounds = args.rounds or 2
    out["streaming"] = (
        [PYTHON, str(BENCH / "streaming.py"), "--rounds", str(s_rounds),
         *(["--min-streams", "2", "--streams-per-client", "1", "--chunks", "16"]
           if args.smoke else []),
         "--concurrency",
         args.stream_concurrency, *(["--no-litellm"] if args.no_litellm else []), *peers,
         *common],
        s_rounds * 3 * len(args.stream_concurrency.split(",")) * 150 + 600,
    )  # fmt: skip
    rates = [r for r in args.rates.split(",") if r.strip()]
    out["openloop"] = (
        [PYTHON, str(BENCH / "openloop.py"), "--rates", args.rates,
         *(["--warmup", "1"] if args.smoke else []), "--duration",
         f"{args.openloop_duration:g}", *common],
        len(rates) * 2 * (args.openloop_duration + 30) + 300,
    )  # fmt: skip
    if "local" in args.part_list:
        # + 10 minutes: installing MLServer and the llama-cpp-python server the first time
        out["local"] = ([*local_argv(args), *common],
                        local.expected_seconds(args.local_args) * 1.5 + 900)  # fmt: skip
    short = ["--idle-s", "2", "--after-s", "2", "--settle-s", "0", "--interval", "1"]
    out["memory"] = (
        [PYTHON, str(BENCH / "memory.py"), "--soak-minutes", f"{args.soak_minutes:g}",
         *(short if args.smoke else []), *common],
        args.soak_minutes * 60 + 400,
    )  # fmt: skip
    return {part: out[part] for part in args.part_list}


def ports(args: argparse.Namespace) -> set[int]:
    needed: set[int] = set()
    if "overhead" in args.part_list:
        needed |= {overhead.UPSTREAM_PORT, *(overhead.PORTS[t] for t in args.targets)}
    if "streaming" in args.part_list:
        needed |= set(streaming.PORTS.values())
    if "openloop" in args.part_list:
        needed |= {openloop.PORTS["direct"], openloop.PORTS["modelport"]}
    if "local" in args.part_list:
        needed |= local.ports(args.local_args)
    if "memory" in args.part_list:
        needed |= {overhead.UPSTREAM_PORT, overhead.MODELPORT_PORT}
    return needed


def shown(path: Path) -> str:
    """A path relative to the repository root when it is inside it."""
    try:
        return str(path.relative_to(BENCH.parent))
    except ValueError:
        return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with sigterm_as_exit():  # SIGTERM/SIGHUP stop the install or the running part, then exit
        return run_all(args)


def run_all(args: argparse.Namespace) -> int:
    started = time.time()
    for port in sorted(ports(args)):  # fail before spending half an hour
        ensure_port_free(port)
    wants_litellm = not args.no_litellm and (
        ("overhead" in args.part_list and "litellm" in args.targets)
        or "streaming" in args.part_list
    )
    args.litellm_problem = None
    if args.smoke and args.out_dir == SMOKE["out_dir"]:
        shutil.rmtree(args.out_dir, ignore_errors=True)  # only this run's files, checked below
    if wants_litellm:
        problem = ensure_litellm()
        if problem and args.smoke:
            raise BenchError(f"LiteLLM could not be installed: {problem}")
        if problem:
            first = problem.splitlines()[0]
            args.litellm_problem = f"LiteLLM left out: it could not be installed ({first})"
            print(f"warning: LiteLLM cannot be installed, so the run goes on without it: "
                  f"{problem}", file=sys.stderr)  # fmt: skip
            args.no_litellm = True
            if "litellm" in args.targets:
                args.targets.remove("litellm")
    plan = commands(args)
    print(f"bench/run: parts {', '.join(plan)}; time limit "
          f"{sum(t for _, t in plan.values()) / 60:.0f} min in all", file=sys.stderr)  # fmt: skip
    results: dict[str, tuple[int, float]] = {}
    for part, (argv, limit) in plan.items():
        t0 = time.time()
        rc = run_part(part, argv, limit)
        results[part] = (rc, time.time() - t0)

    status = {0: "ok", 2: "ran, with errors (see its report)", 124: "TIMED OUT"}
    print("\n=== bench/run summary", file=sys.stderr)
    for part, (rc, seconds) in results.items():
        written = sorted(args.out_dir.glob(f"*-{part}.md"), key=lambda p: p.stat().st_mtime)
        fresh = [p for p in written if p.stat().st_mtime >= started]
        where = f" -> {shown(fresh[-1])}" if fresh and not args.no_write else ""
        print(f"  {part:9} {status.get(rc, f'FAILED (exit {rc})'):36} {seconds / 60:5.1f} min"
              f"{where}", file=sys.stderr)  # fmt: skip
    if args.no_litellm and wants_litellm:
        print("  (LiteLLM was left out: it could not be installed)", file=sys.stderr)
    print(f"  total {(time.time() - started) / 60:.1f} min, finished "
          f"{dt.datetime.now().astimezone():%Y-%m-%d %H:%M}", file=sys.stderr)  # fmt: skip
    codes = [rc for rc, _ in results.values()]
    if args.smoke:
        return smoke_verdict(args, results, started)
    if any(rc not in (0, 2) for rc in codes):
        return 1
    return 2 if 2 in codes else 0


def smoke_verdict(args: argparse.Namespace, results: dict[str, tuple[int, float]],
                  started: float) -> int:  # fmt: skip
    """--smoke passes when every part exited 0 (every target answered every request; with
    --require-all no peer was left out) and wrote a readable report and JSON in this run."""
    problems = []
    for part, (rc, _) in results.items():
        if rc != 0:
            problems.append(f"{part}: exit status {rc}")
        if args.no_write:
            continue
        for suffix in (".md", ".json"):
            written = [p for p in args.out_dir.glob(f"*-{part}{suffix}")
                       if p.stat().st_mtime >= started and p.stat().st_size > 0]  # fmt: skip
            if not written:
                problems.append(f"{part}: no {suffix} written in {shown(args.out_dir)}")
            elif suffix == ".json":
                try:
                    json.loads(written[-1].read_text())
                except ValueError as exc:
                    problems.append(f"{part}: {shown(written[-1])} is not JSON ({exc})")
    if problems:
        print("bench/run --smoke: FAILED\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"bench/run --smoke: ok, every target answered; results in {shown(args.out_dir)}",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    cli(main)
