"""The numbers of bench/local_llm.py: per-stream records, the summary over rounds, the goals
and the Markdown section.

Aggregate tokens/s is one measure for every target, as the issue words the goal ("4 concurrent
streams give at least 1.5 times the aggregate tokens/s of one"): a run's tokens over the time
from sending its requests to its last token, prefill included. For a single-stream target
that is each stream's tokens / (last token - request sent), the median over its long streams;
for N streams at once, all N streams' tokens over the time from sending them to the last
token of any. The stricter comparison of the N-stream aggregate with the single stream's
decode rate (prefill excluded on one side only) is reported beside it.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness import Stat, stat
from local_harness import Goal, fmt, goals_table
from local_raw import PROMPT

GOAL_DECODE = 0.95  # Modelport's single-stream decode tokens/s over raw, at least
GOAL_TTFT_MS = 5.0  # TTFT Modelport adds over raw, at most
GOAL_AGGREGATE = 1.5  # N-stream aggregate over the single-stream aggregate, at least
CONCURRENT = ("modelport-4", "llama-server", "modelport-wide-4", "engine-4", "engine-wide-4")


@dataclass
class Stream:
    kind: str  # "long": max_tokens; "ttft": max_tokens 1, for the time to first token only
    ttft_ms: float | None
    tokens: int
    usage_tokens: int | None
    decode_tok_s: float | None
    total_ms: float
    error: str | None
    span_ms: float | None = None  # request sent -> last chunk with text


@dataclass
class Run:
    round: int
    target: str
    concurrency: int
    streams: list[Stream]
    aggregate_tok_s: float | None  # see the module notes
    ttft_ms: float | None  # median over the run's streams
    decode_tok_s: float | None  # median over the run's streams
    seconds: float
    server_cpu_s: float | None = None  # the serving process itself (Modelport: the gateway)
    tree_cpu_s: float | None = None  # it and its descendants (Modelport: + the worker)
    text: str = ""  # the first stream's text (greedy, so every target should agree)
    load_s: float | None = None

    @property
    def failed(self) -> int:
        return sum(1 for s in self.streams if s.error)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.streams if s.kind == "long")


def to_run(rnd: int, target: str, concurrency: int, raw: list[dict[str, Any]]) -> Run:
    """A run from the client's stream records (perf_counter times)."""
    streams_out = []
    for s in raw:
        ttft = (s["first"] - s["start"]) * 1e3 if s["first"] is not None else None
        decode = None
        if s["first"] is not None and s["tokens"] > 1 and s["last"] > s["first"]:
            decode = (s["tokens"] - 1) / (s["last"] - s["first"])
        span = (s["last"] - s["start"]) * 1e3 if s["last"] is not None else None
        streams_out.append(Stream(s["kind"], ttft, s["tokens"], s["usage_tokens"], decode,
                                  (s["end"] - s["start"]) * 1e3, s["error"], span))  # fmt: skip
    long = [s for s in raw if s["kind"] == "long"]
    start = min(s["start"] for s in long)
    if concurrency == 1:
        each = [s.tokens / (s.span_ms / 1e3) for s in streams_out
                if s.kind == "long" and s.span_ms]  # fmt: skip
        aggregate = statistics.median(each) if each else None
    else:
        lasts = [s["last"] for s in long if s["last"] is not None]
        total = sum(s["tokens"] for s in long)
        aggregate = total / (max(lasts) - start) if lasts and max(lasts) > start else None
    ttfts = [s.ttft_ms for s in streams_out if s.ttft_ms is not None]
    decodes = [s.decode_tok_s for s in streams_out if s.decode_tok_s is not None]
    return Run(
        round=rnd, target=target, concurrency=concurrency, streams=streams_out,
        aggregate_tok_s=aggregate,
        ttft_ms=statistics.median(ttfts) if ttfts else None,
        decode_tok_s=statistics.median(decodes) if decodes else None,
        seconds=max(s["end"] for s in long) - start,
        text=long[0]["text"],
    )  # fmt: skip


def summarise(runs: Sequence[Run], targets: Sequence[str]) -> dict[str, Any]:
    def of(name: str) -> list[Run]:
        return [r for r in runs if r.target == name]

    def pooled(name: str, attr: str) -> Stat | None:
        return stat([getattr(s, attr) for r in of(name) for s in r.streams])

    def per_round(a: str, b: str, fn: Callable[[Run, Run], float | None]) -> Stat | None:
        values = []
        for rnd in sorted({r.round for r in runs}):
            ra = [r for r in of(a) if r.round == rnd]
            rb = [r for r in of(b) if r.round == rnd]
            if ra and rb:
                values.append(fn(ra[0], rb[0]))
        return stat(values)

    cells = {}
    for name in targets:
        mine = of(name)
        if not mine:
            continue
        cells[name] = {
            "runs": len(mine),
            "streams": sum(len(r.streams) for r in mine),
            "failed": sum(r.failed for r in mine),
            "ttft_ms": stat([r.ttft_ms for r in mine]),
            "decode_tok_s": stat([r.decode_tok_s for r in mine]),
            "aggregate_tok_s": stat([r.aggregate_tok_s for r in mine]),
            "tokens_per_stream": stat([s.tokens for r in mine for s in r.streams
                                       if s.kind == "long"]),
            "stream_ttft_ms": pooled(name, "ttft_ms"),
            "gateway_cpu_ms_per_token": stat([
                r.server_cpu_s * 1e3 / r.tokens if r.server_cpu_s is not None and r.tokens
                else None for r in mine]),
            "tree_cpu_util": stat([
                r.tree_cpu_s / r.seconds if r.tree_cpu_s is not None and r.seconds else None
                for r in mine]),
        }  # fmt: skip

    def ratio(x: float | None, y: float | None) -> float | None:
        return x / y if x is not None and y else None

    def diff(x: float | None, y: float | None) -> float | None:
        return x - y if x is not None and y is not None else None

    def aggregates(a: str, b: str) -> Stat | None:
        return per_round(a, b, lambda x, y: ratio(x.aggregate_tok_s, y.aggregate_tok_s))

    def over_decode(a: str, b: str) -> Stat | None:
        return per_round(a, b, lambda x, y: ratio(x.aggregate_tok_s, y.decode_tok_s))

    compare = {
        "decode modelport/raw": per_round(
            "modelport", "raw", lambda a, b: ratio(a.decode_tok_s, b.decode_tok_s)),
        "ttft modelport-raw ms": per_round(
            "modelport", "raw", lambda a, b: diff(a.ttft_ms, b.ttft_ms)),
        "aggregate modelport-4 / modelport": aggregates("modelport-4", "modelport"),
        "aggregate modelport-wide-4 / modelport-wide": aggregates(
            "modelport-wide-4", "modelport-wide"),
        "aggregate engine-4 / engine (the kernels' ceiling)": aggregates("engine-4", "engine"),
        "aggregate engine-wide-4 / engine-wide (the kernels' ceiling)": aggregates(
            "engine-wide-4", "engine-wide"),
        "aggregate modelport-4 / engine-4": aggregates("modelport-4", "engine-4"),
        "aggregate modelport-wide-4 / engine-wide-4": aggregates(
            "modelport-wide-4", "engine-wide-4"),
        "aggregate modelport-4 / modelport single decode (stricter)": over_decode(
            "modelport-4", "modelport"),
        "aggregate modelport-wide-4 / modelport-wide single decode (stricter)": over_decode(
            "modelport-wide-4", "modelport-wide"),
        "aggregate modelport-4 / llama-server": aggregates("modelport-4", "llama-server"),
    }  # fmt: skip
    return {"cells": cells, "compare": compare}


def llm_goals(summary: dict[str, Any], args: argparse.Namespace, wide: bool) -> list[Goal]:
    c = summary["compare"]

    def goal(name: str, wanted: str, s: Stat | None, ok: Callable[[float], bool],
             digits: int, unit: str = "") -> Goal:  # fmt: skip
        if s is None:
            return Goal(name, wanted, "-", None)
        return Goal(name, wanted, f"{s.median:.{digits}f}{unit} ({s.low:.{digits}f}-"
                    f"{s.high:.{digits}f})", ok(s.median))  # fmt: skip

    def aggregate(key: str, where: str) -> Goal:
        return goal(
            f"LLM: {args.concurrent}-stream aggregate / 1-stream aggregate, {where}",
            f">= {GOAL_AGGREGATE:g}x",
            c[key],
            lambda v: v >= GOAL_AGGREGATE,
            2,
            "x",
        )

    return [
        goal("LLM: single-stream decode tokens/s, Modelport / raw", f">= {GOAL_DECODE:.2f}",
             c["decode modelport/raw"], lambda v: v >= GOAL_DECODE, 3),
        goal("LLM: TTFT added by Modelport over raw", f"<= {GOAL_TTFT_MS:g} ms",
             c["ttft modelport-raw ms"], lambda v: v <= GOAL_TTFT_MS, 2, " ms"),
        aggregate("aggregate modelport-4 / modelport", f"{args.threads} thread(s) on one CPU"),
        *([aggregate("aggregate modelport-wide-4 / modelport-wide",
                     f"{args.wide_threads} threads on every CPU")] if wide else []),
    ]  # fmt: skip


def render(summary: dict[str, Any], runs: Sequence[Run], goals: Sequence[Goal],
           args: argparse.Namespace, notes: Sequence[str], wide: bool) -> str:  # fmt: skip
    cells = summary["cells"]
    lines = [
        f"{args.rounds} round(s), interleaved; each round: raw and Modelport alternately, one "
        f"stream at a time ({args.streams} long streams each, then {args.ttft_samples} "
        f"max_tokens=1 requests each for the TTFT), Modelport {args.concurrent} streams at "
        f"once, llama-cpp-python's server {args.concurrent} streams at once, and Modelport's "
        f"engine alone ({args.streams} single streams, then {args.concurrent} at once). Prompt "
        f"of {len(PROMPT)} characters, max_tokens {args.max_tokens}, "
        f"temperature 0, n_ctx {args.n_ctx}, {args.threads} thread(s); Modelport "
        f"`parallel: {args.parallel}`; raw `flash_attn={args.raw_flash_attn}` and "
        "llama-cpp-python's other defaults (Modelport's engine makes its own llama.cpp "
        "settings). Median (min-max) over rounds of each round's median."
        + (
            f" modelport-wide and modelport-wide-4: a second Modelport with {args.wide_threads} "
            f"threads on every CPU (beside the client), one stream at a time ({args.streams} "
            f"per round) and {args.concurrent} at once; engine-wide and engine-wide-4 the same "
            "engine alone on every CPU."
            if wide
            else ""
        ),
        "",
        "| target | streams at once | requests | failed | TTFT ms | decode tokens/s per stream "
        "| aggregate tokens/s | tokens per stream | gateway CPU ms/token | serving CPU util |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in cells.items():
        conc = args.concurrent if name in CONCURRENT else 1
        lines.append(
            f"| {name} | {conc} | {m['streams']} | {m['failed'] or 0} | {fmt(m['ttft_ms'], 1)} "
            f"| {fmt(m['decode_tok_s'], 1)} | {fmt(m['aggregate_tok_s'], 1)} "
            f"| {fmt(m['tokens_per_stream'], 0)} "
            f"| {fmt(m['gateway_cpu_ms_per_token'], 3) if name.startswith('modelport') else '-'} "
            f"| {fmt(m['tree_cpu_util'], 2)} |"
        )
    lines += ["", "Side by side, per round (median (min-max) over rounds):", ""]
    for label, s in summary["compare"].items():
        if s is not None:
            lines.append(f"- {label}: {fmt(s, 3)}")
    lines += ["", *goals_table(goals)]
    lines += [
        "",
        "TTFT: request sent to the first chunk with text (raw: the create_completion "
        "call to its first chunk). Decode tokens/s: tokens after the first / time after "
        "the first. Aggregate tokens/s, the same measure for every target: tokens / (last "
        "token - requests sent), prefill included; for one stream the median over its "
        "streams, for N at once all N streams' tokens. `engine`: Modelport's batching engine "
        "alone in a process of the harness (no server, worker process, pipe or HTTP), on the "
        "same CPUs and threads: what llama.cpp's kernels give for 1 and for N sequences on "
        "this machine. Gateway CPU ms/token: CPU time of the `modelport serve` process itself "
        "(not its worker) per token; serving CPU util: the whole serving tree's CPU seconds "
        "per wall second (1.00 = CPU 1 saturated).",
    ]
    texts = {r.target: r.text for r in runs if r.round == 1 and r.text}
    if "raw" in texts and "modelport" in texts:
        a, b = texts["raw"], texts["modelport"]
        common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                      min(len(a), len(b)))  # fmt: skip
        lines.append("")
        lines.append("Greedy output, raw and Modelport single stream: " + (
            "identical." if a == b else
            f"the same for the first {common} characters, then different (the two set llama.cpp "
            "up differently, e.g. flash attention or weight repacking, and kernels that round "
            f"differently can flip a near-tie between two tokens): raw "
            f"{a[common:common + 40]!r}..., Modelport "
            f"{b[common:common + 40]!r}..."))  # fmt: skip
    lines += [*(f"Note: {n}" for n in notes)]
    return "\n".join(lines).rstrip() + "\n"
