"""Tensor-model benchmark (part `local` of `bench/run`; alone: python bench/tensors.py --help).

Three measurements over the Open Inference Protocol (V2) REST API, side by side in one run:

    iris      scikit-learn Iris (`python -m modelport.runtimes.iris`: a LogisticRegression in
              iris/1/model.joblib) through Modelport (`model_repository:`, no config.yaml, so
              Modelport's default batching) against MLServer 1.x with
              mlserver-sklearn on the SAME file (adaptive batching on: max_batch_size 64,
              max_batch_time 1 ms; parallel_workers 1, its default), wrk at 300 connections
              POSTing {"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP32",...}]} to
              /v2/models/iris/infer; interleaved over rounds. Goal: Modelport >= 1.5x
              MLServer's requests/s, no non-2xx answer.
    openloop  Modelport's Iris at a fixed arrival rate (1,000 requests/s for 20 s): every
              request must be answered, with a 200 or an immediate 503 (queue full);
              p50/p99 from the scheduled send time.
    batching  a batch-friendly ONNX model (an MLP 1024 -> 8192 -> 1024, FP32, random weights,
              built with onnx.helper: 67 MB of weights, more than the CPU's last-level cache,
              so that a call is bound by reading them and extra rows come almost free) served
              twice from one repository: `mlp` (max_batch_size 64, max_batch_delay_ms 2, as
              one would configure such a model; --mlp-delay-ms) and `mlp-unbatched`
              (max_batch_size 0), the same bytes, threads 1 in both; wrk at 8 connections,
              one [1,1024] FP32 row per request. Goal: batched >= 3x unbatched requests/s.

CPU budget: each server's whole process tree (Modelport's gateway and its model workers;
MLServer's main process and its inference-pool worker) is pinned to CPU 1 with taskset, so
both get one core; wrk and the open-loop generator run on CPU 0. MLServer is installed on
first use (bench/local_peers.py). Writes
bench/results/<date>-local-tensors.md and .json when run alone (bench/local.py runs it as part
of the `local` report). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    Notes,
    Stat,
    add_output_arguments,
    cli,
    stat,
    terminated_on_signal,
    to_jsonable,
    write_report,
)
from local_harness import (
    Goal,
    Meter,
    Section,
    fmt,
    goals_table,
    header,
    http,
    log,
    log_findings,
    num,
    preflight,
    run_info,
    utc_stamp,
    wait_http,
)
from local_peers import (
    MLSERVER_GRPC_PORT,
    MLSERVER_METRICS_PORT,
    MLSERVER_PORT,
    ensure_mlserver,
    mlserver_version,
    start_mlserver,
)
from openloop import open_loop
from overhead import (
    BENCH,
    GATEWAY_CPU,
    HOST,
    LOAD_CPU,
    BenchError,
    Child,
    Children,
    WrkResult,
    modelport_bin,
    parse_wrk,
    pinned,
    rotated,
    start_peer,
    stop_child,
    tree_cpu_seconds,
)
from streaming import pct

MODELPORT_PORT = 18702
SECTIONS = ("iris", "openloop", "batching")
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]
GOAL_IRIS = 1.5  # Modelport / MLServer requests/s, at least
GOAL_BATCHING = 3.0  # batched / unbatched requests/s, at least


def v2_body(name: str, rows: Sequence[Sequence[float]]) -> bytes:
    flat = [v for row in rows for v in row]
    return json.dumps({"inputs": [{"name": name, "shape": [len(rows), len(rows[0])],
                                   "datatype": "FP32", "data": flat}]}).encode()  # fmt: skip


IRIS_BODY = v2_body("input-0", [IRIS_ROW])


# --------------------------------------------------------------------------- models


def mlp_onnx(features: int, hidden: int, outputs: int, seed: int = 0) -> bytes:
    """y = relu(x @ W1) @ W2, FP32, batch dimension free (after tests/fakes/models.py's
    linear_onnx)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    scale1, scale2 = 1 / math.sqrt(features), 1 / math.sqrt(hidden)
    w1 = (rng.standard_normal((features, hidden)) * scale1).astype(np.float32)
    w2 = (rng.standard_normal((hidden, outputs)) * scale2).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W1"], ["h"]),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "W2"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", outputs])],
        initializer=[numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def build_repository(repo: Path, args: argparse.Namespace) -> dict[str, Any]:
    """iris/1/model.joblib (trained by modelport.runtimes.iris), mlp and mlp-unbatched."""
    done = subprocess.run([sys.executable, "-m", "modelport.runtimes.iris", str(repo)],
                          capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"python -m modelport.runtimes.iris failed:\n{done.stderr[-2000:]}")
    data = mlp_onnx(args.mlp_features, args.mlp_hidden, args.mlp_features)
    delay = f"max_batch_delay_ms: {args.mlp_delay_ms:g}\n"
    configs = {
        "mlp": f"max_batch_size: 64\n{delay}threads: 1\n",
        "mlp-unbatched": "max_batch_size: 0\nthreads: 1\n",
    }
    for name, config in configs.items():
        path = repo / name / "1" / "model.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        (repo / name / "config.yaml").write_text(config)
    return {"iris": str(repo / "iris" / "1" / "model.joblib"), "mlp_bytes": len(data),
            "mlp_configs": configs}  # fmt: skip


def modelport_batching() -> str:
    """Modelport's batching defaults for a model without config.yaml, from its own schema."""
    from modelport.config.tensor_model import RawTensorModel

    fields = RawTensorModel.model_fields
    return (f"max_batch_size {fields['max_batch_size'].default}, "
            f"max_batch_delay_ms {fields['max_batch_delay_ms'].default:g}")  # fmt: skip


def inline(config: str) -> str:
    return ", ".join(line for line in config.splitlines() if line)


# --------------------------------------------------------------------------- servers


def start_modelport(children: Children, workdir: Path, repo: Path, models: Sequence[str],
                    pin: bool) -> Child:  # fmt: skip
    config = workdir / "tensors.yaml"
    config.write_text(
        "# written by bench/tensors.py\nserver:\n  access_log: false\n"
        f"store:\n  ledger: false\nmodel_repository: {json.dumps(str(repo))}\n"
    )
    argv = [str(modelport_bin()), "serve", "--config", str(config), "--host", HOST,
            "--port", str(MODELPORT_PORT)]  # fmt: skip
    child = children.start("modelport-tensors", pinned(GATEWAY_CPU, argv, pin),
                           {**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    base = f"http://{HOST}:{MODELPORT_PORT}"

    def probe() -> tuple[bool, str]:
        for name in models:
            status, body = http("GET", f"{base}/v2/models/{name}/ready", None, 2)
            if status != 200:
                return False, f"{name}: {status} {body[:200]!r}"
        return True, "ready"

    wait_http(child, probe, 180)
    return child


# --------------------------------------------------------------------------- wrk


def run_wrk(url: str, body: bytes, connections: int, seconds: float, pin: bool) -> WrkResult:
    argv = pinned(
        LOAD_CPU,
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / "v2.lua"),
            url,
        ],
        pin,
    )
    env = {**os.environ, "BENCH_BODY": body.decode()}
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True,
                              timeout=seconds + 30, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish within {seconds + 30:.0f}s: {url}") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    # wrk pads a latency of a second or more ("1.20s ") with a space, which overhead.parse_wrk
    # does not expect; strip line ends first
    return parse_wrk("".join(line.rstrip() + "\n" for line in done.stdout.splitlines()))


@dataclass
class WrkRun:
    round: int
    target: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: dict[str, int]
    cpu_util: float | None  # the server tree's CPU seconds per wall second
    cpu_us_per_req: float | None
    batch_rows_mean: float | None = None  # Modelport: rows per model call over the run
    wrk_output: str = ""

    @property
    def errors(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())


def batch_histogram(model: str) -> tuple[float, float] | None:
    """(sum, count) of modelport_runtime_batch_size for one model, from /metrics."""
    status, body = http("GET", f"http://{HOST}:{MODELPORT_PORT}/metrics", None, 5)
    if status != 200:
        return None
    text = body.decode(errors="replace")
    found = {}
    for kind in ("sum", "count"):
        m = re.search(rf'^modelport_runtime_batch_size_{kind}\{{runtime="{re.escape(model)}"\}} '
                      r"([0-9.e+]+)$", text, re.M)  # fmt: skip
        if not m:
            return None
        found[kind] = float(m.group(1))
    return found["sum"], found["count"]


def measure_wrk(child: Child, rnd: int, target: str, url: str, body: bytes, connections: int,
                seconds: float, pin: bool, model: str | None) -> WrkRun:  # fmt: skip
    pid = child.proc.pid
    hist0 = batch_histogram(model) if model else None
    before = tree_cpu_seconds(pid)
    result = run_wrk(url, body, connections, seconds, pin)
    cpu = tree_cpu_seconds(pid) - before
    hist1 = batch_histogram(model) if model else None
    if child.proc.poll() is not None:
        raise BenchError(f"{child.name} died during the run:\n{child.tail()}")
    rows = None
    if hist0 and hist1 and hist1[1] > hist0[1]:
        rows = (hist1[0] - hist0[0]) / (hist1[1] - hist0[1])
    return WrkRun(rnd, target, connections, result.rps, result.p50_ms, result.p99_ms,
                  result.requests, result.non2xx, result.socket_errors,
                  cpu / result.seconds if result.seconds else None,
                  cpu / result.requests * 1e6 if result.requests else None, rows,
                  result.output)  # fmt: skip


# --------------------------------------------------------------------------- open loop


@dataclass
class OpenLoop:
    rate: float
    duration: float
    scheduled: int
    ok: int
    rejected_503: int
    failures: dict[str, int]
    achieved_rps: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    p99_first_third_ms: float | None
    p99_last_third_ms: float | None
    rejected_max_ms: float | None
    lag_p99_ms: float | None
    gateway_cpu_util: float | None
    per_second: list[dict[str, Any]] = field(default_factory=list)

    @property
    def all_answered(self) -> bool:
        return not self.failures and self.ok + self.rejected_503 == self.scheduled


def measure_open_loop(child: Child, url: str, rate: float, duration: float,
                      args: argparse.Namespace) -> OpenLoop:  # fmt: skip
    import uvloop

    pid = child.proc.pid
    before = tree_cpu_seconds(pid)
    out = uvloop.run(open_loop(url, rate, duration, args.max_inflight, 10.0, body=IRIS_BODY,
                               headers={"Content-Type": "application/json"},
                               rejected_status=503))  # fmt: skip
    cpu = tree_cpu_seconds(pid) - before
    ok = list(zip(out.offsets_s, out.latencies_ms, strict=True))
    latencies = out.latencies_ms

    def third(which: int) -> float | None:
        lo, hi = duration * which / 3, duration * (which + 1) / 3
        return pct([lat for off, lat in ok if lo <= off < hi], 99)

    buckets: list[list[float]] = [[] for _ in range(max(1, math.ceil(duration)))]
    for off, lat in ok:
        buckets[min(len(buckets) - 1, int(off))].append(lat)
    return OpenLoop(
        rate=rate, duration=duration, scheduled=out.scheduled, ok=len(ok),
        rejected_503=len(out.rejected_ms), failures=out.failures,
        achieved_rps=len(ok) / out.seconds if out.seconds else 0.0,
        p50_ms=pct(latencies, 50), p99_ms=pct(latencies, 99),
        max_ms=max(latencies, default=None), p99_first_third_ms=third(0),
        p99_last_third_ms=third(2), rejected_max_ms=max(out.rejected_ms, default=None),
        lag_p99_ms=pct(out.lag_ms, 99),
        gateway_cpu_util=cpu / out.seconds if out.seconds else None,
        per_second=[{"second": i, "ok": len(b), "p50_ms": pct(b, 50), "p99_ms": pct(b, 99),
                     "max_ms": max(b, default=None)} for i, b in enumerate(buckets)],
    )  # fmt: skip


# --------------------------------------------------------------------------- reporting


def cells(runs: Sequence[WrkRun], targets: Sequence[str]) -> dict[str, dict[str, Stat | None]]:
    out = {}
    for name in targets:
        mine = [r for r in runs if r.target == name]
        if mine:
            out[name] = {m: stat([getattr(r, m) for r in mine])
                         for m in ("rps", "p50_ms", "p99_ms", "cpu_util", "cpu_us_per_req",
                                   "batch_rows_mean")}  # fmt: skip
    return out


def per_round_ratio(runs: Sequence[WrkRun], a: str, b: str) -> Stat | None:
    values = []
    for rnd in sorted({r.round for r in runs}):
        ra = [r for r in runs if r.round == rnd and r.target == a]
        rb = [r for r in runs if r.round == rnd and r.target == b]
        if ra and rb and rb[0].rps:
            values.append(ra[0].rps / rb[0].rps)
    return stat(values)


def wrk_table(runs: Sequence[WrkRun], targets: Sequence[str]) -> list[str]:
    lines = ["| target | c | req/s | p50 ms | p99 ms | non-2xx | socket errors "
             "| server CPU util | CPU µs/req | rows per model call |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, m in cells(runs, targets).items():
        mine = [r for r in runs if r.target == name]
        non2xx = sum(r.non2xx for r in mine)
        sock = sum(sum(r.socket_errors.values()) for r in mine)
        lines.append(
            f"| {name} | {mine[0].connections} | {fmt(m['rps'], 0)} | {fmt(m['p50_ms'], 2)} "
            f"| {fmt(m['p99_ms'], 2)} | {f'**{non2xx}**' if non2xx else 0} "
            f"| {f'**{sock}**' if sock else 0} | {fmt(m['cpu_util'], 2)} "
            f"| {fmt(m['cpu_us_per_req'], 0)} | {fmt(m['batch_rows_mean'], 1)} |"
        )
    return lines


def goal_of(name: str, wanted: float, s: Stat | None, clean: bool) -> Goal:
    if s is None:
        return Goal(name, f">= {wanted:g}x", "-", None)
    measured = f"{s.median:.2f}x ({s.low:.2f}-{s.high:.2f})"
    if not clean:
        measured += "; errors"
    return Goal(name, f">= {wanted:g}x", measured, s.median >= wanted and clean)


# --------------------------------------------------------------------------- the section


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("tensor models (bench/tensors.py)")
    g.add_argument("--duration", type=float, default=10, help="seconds per wrk run (10)")
    g.add_argument("--warmup", type=float, default=3, help="warm-up wrk seconds per target (3)")
    g.add_argument("--connections", type=int, default=300, help="iris: wrk connections (300)")
    g.add_argument("--batch-connections", type=int, default=8, help="batching: wrk connections (8)")
    g.add_argument("--openloop-rate", type=float, default=1000, help="openloop: requests/s (1000)")
    g.add_argument("--openloop-duration", type=float, default=20, help="openloop: seconds (20)")
    g.add_argument(
        "--max-inflight", type=int, default=1000, help="openloop: most requests outstanding (1000)"
    )
    g.add_argument("--mlp-hidden", type=int, default=8192, help="batching: MLP hidden width (8192)")
    g.add_argument(
        "--mlp-features",
        type=int,
        default=1024,
        help="batching: MLP input and output width (1024)",
    )
    g.add_argument(
        "--mlp-delay-ms",
        type=float,
        default=2,
        help="batching: max_batch_delay_ms of `mlp` (2)",
    )
    g.add_argument("--mlserver-workers", type=int, default=1,
                   help="MLServer parallel_workers (1, its default; 0 runs inference in its "
                        "main process)")  # fmt: skip
    g.add_argument(
        "--no-mlserver", action="store_true", help="leave MLServer out (installs nothing for it)"
    )


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.duration <= 0 or args.warmup < 0 or min(args.connections, args.batch_connections,
            args.max_inflight, args.mlp_hidden, args.mlp_features) < 1
            or args.openloop_rate <= 0 or args.openloop_duration <= 0
            or args.mlserver_workers < 0
            or args.mlp_delay_ms < 0):  # fmt: skip
        parser.error("durations, rates, connections and sizes must be positive")


def ports(args: argparse.Namespace, sections: Sequence[str]) -> set[int]:
    found = {MODELPORT_PORT}
    if "iris" in sections and not args.no_mlserver:
        found |= {MLSERVER_PORT, MLSERVER_GRPC_PORT, MLSERVER_METRICS_PORT}
    return found


def expected_seconds(args: argparse.Namespace, sections: Sequence[str]) -> float:
    total = 30.0
    if "iris" in sections:
        total += 2 * (args.rounds * (args.duration + 1) + args.warmup) + 30
    if "openloop" in sections:
        total += args.openloop_duration + 15
    if "batching" in sections:
        total += 2 * (args.rounds * (args.duration + 1) + args.warmup)
    return total


def run(args: argparse.Namespace, pin: bool, workdir: Path,
        sections: Sequence[str] = SECTIONS) -> Section:  # fmt: skip
    children = Children(workdir)
    notes = Notes(strict=args.require_all)
    iris_runs: list[WrkRun] = []
    batch_runs: list[WrkRun] = []
    loop: OpenLoop | None = None
    iris_targets = ["modelport", "mlserver"]
    if "iris" in sections:
        if args.no_mlserver:
            iris_targets.remove("mlserver")
            notes.append("MLServer left out (--no-mlserver).")
        else:
            problem = ensure_mlserver()
            if problem:
                iris_targets.remove("mlserver")
                notes.left_out(f"MLServer left out: it could not be installed ({problem})")
    repo = workdir / "models"
    repo.mkdir()
    built = build_repository(repo, args)
    models = [m for m, s in (("iris", ("iris", "openloop")),
                             ("mlp", ("batching",)), ("mlp-unbatched", ("batching",)))
              if set(s) & set(sections)]  # fmt: skip
    base = f"http://{HOST}:{MODELPORT_PORT}"
    try:
        log(f"starting Modelport with the model repository ({', '.join(models)})")
        modelport = start_modelport(children, workdir, repo, models, pin)
        servers: dict[str, tuple[Child, str]] = {
            "modelport": (modelport, f"{base}/v2/models/iris/infer")
        }
        if "mlserver" in iris_targets:
            log("starting MLServer (takes a few seconds)")
            mls = start_peer(
                children,
                notes,
                "mlserver",
                "MLServer",
                lambda: start_mlserver(
                    children, workdir, built["iris"], args.mlserver_workers, pin, IRIS_BODY
                ),
            )
            if mls is None:
                iris_targets.remove("mlserver")
            else:
                servers["mlserver"] = (mls, f"http://{HOST}:{MLSERVER_PORT}/v2/models/iris/infer")
        if "iris" in sections:
            for name in iris_targets if args.warmup > 0 else ():
                log(f"warm-up iris {name} ({args.warmup:g}s)")
                run_wrk(servers[name][1], IRIS_BODY, args.connections, args.warmup, pin)
            for rnd in range(1, args.rounds + 1):
                for name in rotated(iris_targets, rnd - 1):
                    child, url = servers[name]
                    r = measure_wrk(child, rnd, name, url, IRIS_BODY, args.connections,
                                    args.duration, pin,
                                    "iris" if name == "modelport" else None)  # fmt: skip
                    iris_runs.append(r)
                    log(
                        f"round {rnd} iris {name:10} c={r.connections} {r.rps:8.0f} req/s  p50 "
                        f"{r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms  rows/call "
                        f"{num(r.batch_rows_mean, 1)}{'  ERRORS' if r.errors else ''}"
                    )
            if "mlserver" in servers:  # free its CPU for the rest
                stop_child(children, servers.pop("mlserver")[0])
        if "openloop" in sections:
            url = f"{base}/v2/models/iris/infer"
            log("warm-up open loop (2 s at 200/s)")
            measure_open_loop(modelport, url, 200, 2, args)
            loop = measure_open_loop(modelport, url, args.openloop_rate, args.openloop_duration,
                                     args)  # fmt: skip
            log(
                f"open loop {args.openloop_rate:g}/s: {loop.ok} ok, {loop.rejected_503} x 503, "
                f"failures {loop.failures or 0}, p99 {num(loop.p99_ms, 2)} ms"
            )
        if "batching" in sections:
            import numpy as np

            rows = np.random.default_rng(1).standard_normal((1, args.mlp_features))
            rows = rows.round(4).tolist()
            body = v2_body("x", rows)
            names = ["mlp", "mlp-unbatched"]
            for name in names if args.warmup > 0 else ():
                log(f"warm-up {name} ({args.warmup:g}s)")
                run_wrk(f"{base}/v2/models/{name}/infer", body, args.batch_connections,
                        args.warmup, pin)  # fmt: skip
            for rnd in range(1, args.rounds + 1):
                for name in rotated(names, rnd - 1):
                    r = measure_wrk(
                        modelport,
                        rnd,
                        name,
                        f"{base}/v2/models/{name}/infer",
                        body,
                        args.batch_connections,
                        args.duration,
                        pin,
                        name,
                    )
                    batch_runs.append(r)
                    log(
                        f"round {rnd} {name:13} c={r.connections} {r.rps:8.0f} req/s  p50 "
                        f"{r.p50_ms:.2f} ms  rows/call {num(r.batch_rows_mean, 1)}"
                        f"{'  ERRORS' if r.errors else ''}"
                    )
    finally:
        stopped_at = utc_stamp()
        children.stop_all()
    notes += log_findings(workdir, ["modelport-tensors"], stopped_at)

    goals: list[Goal] = []
    lines: list[str] = []
    raw: dict[str, Any] = {
        "args": {k: getattr(args, k) for k in (
            "rounds", "duration", "warmup", "connections", "batch_connections",
            "openloop_rate", "openloop_duration", "max_inflight", "mlp_hidden",
            "mlp_features", "mlp_delay_ms", "mlserver_workers")},
        "sections": list(sections), "models": built,
    }  # fmt: skip
    errors = False
    if "iris" in sections:
        ratio = per_round_ratio(iris_runs, "modelport", "mlserver")
        clean = not any(r.errors for r in iris_runs)
        errors |= not clean
        goals.append(goal_of("Iris: requests/s, Modelport / MLServer", GOAL_IRIS, ratio, clean))
        lines += [
            "### Iris over V2 REST: Modelport against MLServer",
            "",
            f"wrk, one thread, {args.connections} connections, {args.duration:g} s per run, "
            f"{args.rounds} round(s) interleaved; body `{IRIS_BODY.decode()}`. Each server's "
            f"whole process tree on CPU {GATEWAY_CPU} (Modelport: gateway + the model's worker; "
            f"MLServer: main process + parallel_workers={args.mlserver_workers}), wrk on CPU "
            f"{LOAD_CPU}. Both serve `{Path(built['iris']).name}` from the same path; Modelport "
            f"with its default batching ({modelport_batching()}), MLServer with adaptive "
            "batching (max_batch_size 64, max_batch_time 0.001 s).",
            "",
            *wrk_table(iris_runs, iris_targets),
            "",
            f"- requests/s, Modelport / MLServer, per round: {fmt(ratio, 2)}",
            "",
        ]
    if "openloop" in sections and loop is not None:
        errors |= not loop.all_answered
        goals.append(Goal(
            f"Iris open loop at {args.openloop_rate:g}/s: every request answered (200 or 503)",
            "no timeout, error or drop",
            f"{loop.ok} x 200, {loop.rejected_503} x 503, failures {loop.failures or 'none'}; "
            f"p99 {num(loop.p99_ms, 2)} ms", loop.all_answered))  # fmt: skip
        lines += [
            "### Iris open loop (Modelport)",
            "",
            f"{args.openloop_rate:g} requests/s on a fixed schedule for "
            f"{args.openloop_duration:g} s (generator on CPU {LOAD_CPU}, at most "
            f"{args.max_inflight} in flight, 10 s timeout); latency from the scheduled send "
            "time.",
            "",
            "| sent | 200 | 503 | failed | achieved req/s | p50 ms | p99 ms | max ms "
            "| p99 1st → last third | slowest 503 ms | generator lag p99 ms | server CPU util |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|",
            f"| {loop.scheduled} | {loop.ok} | {loop.rejected_503} "
            f"| {sum(loop.failures.values())} | {loop.achieved_rps:.0f} | {num(loop.p50_ms, 3)} "
            f"| {num(loop.p99_ms, 3)} | {num(loop.max_ms, 1)} "
            f"| {num(loop.p99_first_third_ms, 2)} → {num(loop.p99_last_third_ms, 2)} "
            f"| {num(loop.rejected_max_ms, 1)} | {num(loop.lag_p99_ms, 2)} "
            f"| {num(loop.gateway_cpu_util, 2)} |",
            "",
        ]
        raw["openloop"] = asdict(loop)
    if "batching" in sections:
        names = ["mlp", "mlp-unbatched"]
        ratio = per_round_ratio(batch_runs, "mlp", "mlp-unbatched")
        clean = not any(r.errors for r in batch_runs)
        errors |= not clean
        goals.append(goal_of("Adaptive batching: requests/s, mlp / mlp-unbatched",
                             GOAL_BATCHING, ratio, clean))  # fmt: skip
        lines += [
            "### Adaptive batching (ONNX MLP)",
            "",
            f"MLP {args.mlp_features} -> {args.mlp_hidden} -> {args.mlp_features} FP32 (ReLU, "
            f"random weights, {built['mlp_bytes'] / 1e6:.1f} MB ONNX), the same bytes as `mlp` "
            f"(config.yaml `{inline(built['mlp_configs']['mlp'])}`; "
            f"{modelport_batching()} where not set) and `mlp-unbatched` (config.yaml "
            f"`{inline(built['mlp_configs']['mlp-unbatched'])}`); wrk, "
            f"{args.batch_connections} connections, one "
            f"[1,{args.mlp_features}] FP32 row per request, {args.duration:g} s per run, "
            f"{args.rounds} round(s) interleaved. Rows per model call: from "
            "modelport_runtime_batch_size over the run.",
            "",
            *wrk_table(batch_runs, names),
            "",
            f"- requests/s, mlp / mlp-unbatched, per round: {fmt(ratio, 2)}",
            "",
        ]
    lines += [*goals_table(goals)]
    lines += ["", *(f"Note: {n}" for n in notes)]
    raw.update(
        {
            "summary": to_jsonable(
                {
                    "iris": cells(iris_runs, iris_targets),
                    "iris_ratio": per_round_ratio(iris_runs, "modelport", "mlserver"),
                    "batching": cells(batch_runs, ["mlp", "mlp-unbatched"]),
                    "batching_ratio": per_round_ratio(batch_runs, "mlp", "mlp-unbatched"),
                }
            ),
            "goals": [asdict(g) for g in goals],
            "iris_runs": [asdict(r) for r in iris_runs],
            "batching_runs": [asdict(r) for r in batch_runs],
            "iris_targets": iris_targets,
        }
    )
    return Section("Tensor models over V2", "\n".join(lines).rstrip() + "\n", raw, goals,
                   errors, notes)  # fmt: skip


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Tensor-model benchmark (see bench/README.md)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"which measurements ({','.join(SECTIONS)})"
    )
    add_output_arguments(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    if set(args.sections) - set(SECTIONS) or not args.sections:
        parser.error(f"--only takes names from {', '.join(SECTIONS)}; got {args.only!r}")
    args.sections = [s for s in SECTIONS if s in args.sections]
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    check_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now().astimezone()
    meter = Meter()
    if shutil.which("wrk") is None:
        raise BenchError("wrk not found; bench/run installs it (apt-get install wrk)")
    pin = preflight(ports(args, args.sections))
    if pin:
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # the open-loop generator
    else:
        log("warning: CPUs 0 and 1 are not both available; running unpinned")
    work_root = BENCH / ".work"
    work_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="tensors-", dir=work_root))
    try:
        with terminated_on_signal():
            section = run(args, pin, workdir, args.sections)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    info = run_info(started, pin, meter)
    info["machine"]["versions"]["mlserver"] = mlserver_version()
    report = "\n".join([*header("Tensor models over V2", info), section.markdown])
    write_report(args, info, "local-tensors", report, section.raw)
    return 2 if section.errors else 0


if __name__ == "__main__":
    cli(main)
