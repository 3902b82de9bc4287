"""The `local` part of `bench/run`: Modelport's local runtimes (alone: python bench/local.py -h).

Runs, one after the other in this process, the sections of

    llm       bench/local_llm.py  Gemma 3 270M (GGUF): raw llama-cpp-python against Modelport
                                  (TTFT, decode tokens/s, 4-stream aggregate) and
                                  llama-cpp-python's own server
    iris      bench/tensors.py    scikit-learn Iris over V2 REST: Modelport against MLServer
    openloop  bench/tensors.py    Modelport's Iris at 1,000 requests/s, open loop
    batching  bench/tensors.py    adaptive batching of an ONNX MLP, batched against unbatched

and writes one report, bench/results/<date>-local.md (the goals with PASS/FAIL, then each
section's tables) and .json (every run's raw numbers, the machine, the versions, the commit).
Each section script also runs alone (bench/local_llm.py, bench/tensors.py). Model runtimes and
servers run on CPU 1, load generators on CPU 0. Exit status: 0 when every request and stream
was answered, 2 when some failed, 1 when the part could not run; a FAIL against a goal is a
finding in the report, not an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import local_llm
import local_peers
import tensors
from harness import add_output_arguments, cli, terminated_on_signal, write_report
from local_harness import Meter, goals_table, header, load_line, log, preflight, run_info
from overhead import (
    BENCH,
    GATEWAY_CPU,
    LOAD_CPU,
    BenchError,
)

SECTIONS = ("llm", *tensors.SECTIONS)
SMOKE = {"rounds": 1, "max_tokens": 16, "streams": 1, "ttft_samples": 2, "duration": 1,
         "warmup": 0, "openloop_duration": 2, "mlp_hidden": 2048, "mlp_features": 256}  # fmt: skip


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Modelport's local runtimes: GGUF LLM, tensor models over V2, adaptive "
        "batching (see bench/README.md)"
    )
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds, in every section (3)")  # fmt: skip
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"which sections ({','.join(SECTIONS)})")  # fmt: skip
    add_output_arguments(parser)
    parser.add_argument("--smoke", action="store_true",
                        help="a short check, about a minute, in which every peer must answer "
                             "(as with --require-all); the defaults become " + ", ".join(
                            f"--{k.replace('_', '-')} {v}" for k, v in SMOKE.items())
                        + " (flags given explicitly still win)")  # fmt: skip
    local_llm.add_arguments(parser)
    tensors.add_arguments(parser)
    if "--smoke" in (sys.argv[1:] if argv is None else argv):
        parser.set_defaults(**SMOKE)
    args = parser.parse_args(argv)
    args.require_all = args.require_all or args.smoke
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    if set(args.sections) - set(SECTIONS) or not args.sections:
        parser.error(f"--only takes names from {', '.join(SECTIONS)}; got {args.only!r}")
    args.sections = [s for s in SECTIONS if s in args.sections]
    if args.rounds < 1:
        parser.error("--rounds must be positive")
    local_llm.check_arguments(parser, args)
    tensors.check_arguments(parser, args)
    return args


def ports(args: argparse.Namespace) -> set[int]:
    found: set[int] = set()
    if "llm" in args.sections:
        found |= local_llm.ports(args)
    tensor_sections = [s for s in args.sections if s in tensors.SECTIONS]
    if tensor_sections:
        found |= tensors.ports(args, tensor_sections)
    return found


def expected_seconds(args: argparse.Namespace) -> float:
    total = local_llm.expected_seconds(args) if "llm" in args.sections else 0.0
    tensor_sections = [s for s in args.sections if s in tensors.SECTIONS]
    if tensor_sections:
        total += tensors.expected_seconds(args, tensor_sections)
    return total


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = dt.datetime.now().astimezone()
    meter = Meter()
    if shutil.which("wrk") is None and set(args.sections) & {"iris", "batching"}:
        raise BenchError("wrk not found; bench/run installs it (apt-get install wrk)")
    pin = preflight(ports(args))
    if pin:
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # the clients; the models run on CPU 1
    else:
        log("warning: CPUs 0 and 1 are not both available; running unpinned")
    work_root = BENCH / ".work"
    work_root.mkdir(exist_ok=True)
    sections: list[local_llm.Section] = []
    loads: list[dict[str, Any]] = []
    with terminated_on_signal():
        if "llm" in args.sections:
            workdir = Path(tempfile.mkdtemp(prefix="local-llm-", dir=work_root))
            section_meter = Meter()
            try:
                sections.append(local_llm.run(args, pin, workdir))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            loads.append(section_meter.done())
        tensor_sections = [s for s in args.sections if s in tensors.SECTIONS]
        if tensor_sections:
            workdir = Path(tempfile.mkdtemp(prefix="local-tensors-", dir=work_root))
            section_meter = Meter()
            try:
                sections.append(tensors.run(args, pin, workdir, tensor_sections))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
            loads.append(section_meter.done())
    for section, load in zip(sections, loads, strict=True):
        section.raw["load"] = load
        section.markdown = f"{load_line(load)}\n\n{section.markdown}"
    info = run_info(started, pin, meter)
    info["machine"]["versions"]["mlserver"] = local_peers.mlserver_version()
    info["args"] = {"rounds": args.rounds, "sections": args.sections}
    goals = [g for s in sections for g in s.goals]
    lines = [
        *header("Local runtimes", info),
        f"Sections: {', '.join(args.sections)}. Model runtimes and the servers under test run "
        f"on CPU {GATEWAY_CPU} (their whole process trees), the load generators on CPU "
        f"{LOAD_CPU}.",
        "",
        "## Goals",
        "",
        *goals_table(goals),
        "",
    ]
    for section in sections:
        lines += [f"## {section.title}", "", section.markdown]
    lines += [f"Note: {n}" for n in args.note]
    report = "\n".join(lines).rstrip() + "\n"
    raw: dict[str, Any] = {
        "goals": [g.__dict__ for g in goals],
        "sections": {s.title: s.raw for s in sections},
    }
    write_report(args, info, "local", report, raw)
    return 2 if any(s.errors for s in sections) else 0


if __name__ == "__main__":
    cli(main)
