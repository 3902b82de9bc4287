"""Output contracts: what checking an answer costs (python bench/contracts.py).

Times ``OutputContract.check`` on a 2 KB JSON answer against a JSON Schema of the shape a
workflow step uses (an object of 4 fields, a list of 20 items), on a label, and on a
500-character answer against a regular expression, in this process: --repeat rounds
(7) of --calls checks (20,000), the median per check with the range of the round medians.
Goal (issue 15): the JSON Schema check of a 2 KB answer at most 0.1 ms. A route without a
contract pays none of this (``bench/ab.py`` measures the request path). Writes
bench/results/<date>-contracts.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Callable, Sequence

import orjson
from harness import add_output_arguments, cli, machine_info, run_facts, stat, write_report
from overhead import ROOT

from modelport.config.output import compile_output

GOAL_US = 100.0
SCHEMA = {"type": "object", "required": ["summary", "sentiment", "tags", "items"],
          "additionalProperties": False, "properties": {
              "summary": {"type": "string", "maxLength": 4000},
              "sentiment": {"enum": ["positive", "neutral", "negative"]},
              "tags": {"type": "array", "items": {"type": "string"}},
              "items": {"type": "array", "items": {
                  "type": "object", "required": ["id", "text"],
                  "properties": {"id": {"type": "integer"}, "text": {"type": "string"}}}}}}
ANSWER = orjson.dumps({"summary": "s" * 600, "sentiment": "neutral", "tags": ["a", "b", "c"],
                       "items": [{"id": i, "text": "lorem ipsum dolor sit amet " * 2}
                                 for i in range(20)]}).decode()


def _timed(check: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        check()
    return (time.perf_counter() - started) / calls * 1e6


def measure(repeat: int, calls: int) -> dict[str, list[float]]:
    problems: list[str] = []
    schema = compile_output(SCHEMA, None, None, None, 1, "bench", problems)
    labels = compile_output(None, ["billing", "bug", "account", "other"], None, None, 1,
                            "bench", problems)
    pattern = compile_output(None, None, 2000, r"[^<>]*", 1, "bench", problems)
    assert schema and labels and pattern and not problems
    assert schema.check(ANSWER) is None
    long_text = "An answer without angle brackets. " * 15
    checks = {"json_schema, 2 KB": lambda: schema.check(ANSWER),
              "labels": lambda: labels.check(" Billing "),
              "max_chars + regex, 500 chars": lambda: pattern.check(long_text)}
    runs: dict[str, list[float]] = {name: [] for name in checks}
    for _ in range(repeat):
        for name, check in checks.items():
            runs[name].append(_timed(check, calls))
    return runs


def render(runs: dict[str, list[float]], info: dict[str, object]) -> str:
    machine = info["machine"]
    assert isinstance(machine, dict)
    lines = [f"# Output contracts, {info['date']}", "",
             f"Machine: {machine['cpu_model']}, {machine['nproc']} CPUs. Microseconds per "
             "check, median of the rounds (min-max); a 2 KB answer is "
             f"{len(ANSWER)} bytes.", "", "| check | µs | goal | |", "|---|---|---|---|"]
    for name, values in runs.items():
        s = stat(values)
        assert s is not None
        goal = GOAL_US if name.startswith("json_schema") else None
        verdict = "" if goal is None else ("PASS" if s.median <= goal else "FAIL")
        lines.append(f"| {name} | {s.median:.1f} ({s.low:.1f}-{s.high:.1f}) | "
                     f"{'' if goal is None else f'<= {goal:.0f}'} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20_000)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    started = dt.datetime.now().astimezone()
    runs = measure(args.repeat, args.calls)
    info = run_facts(started, False, machine_info(), python=sys.version.split()[0],
                     root=str(ROOT))
    write_report(args, info, "contracts", render(runs, info), {"runs": runs})
    return 0


if __name__ == "__main__":
    cli(main)
