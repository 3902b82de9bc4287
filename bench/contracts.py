"""Output contracts and input guards: what checking an answer and masking a prompt cost
(python bench/contracts.py).

Times ``OutputContract.check`` on a 2 KB JSON answer against a JSON Schema of the shape a
workflow step uses (an object of 4 fields, a list of 20 items), on a label, and on a
500-character answer against a regular expression; and the input guards' masking of a 4 KB
prompt with every detector on (a chat body of two messages, with an e-mail address, a phone
number, a card number, an IBAN and a key among ordinary text). In this process: --repeat
rounds (7) of --calls calls (20,000; a fifth of that for masking), the median per call with
the range of the round medians. Goals (issue 15): the JSON Schema check of a 2 KB answer at
most 0.1 ms, masking a 4 KB prompt at most 0.2 ms. A route without contracts or guards pays
none of this (``bench/ab.py`` measures the request path). Writes
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

from modelport.config.guards import compile_guards
from modelport.config.output import compile_output
from modelport.core.operation import Operation
from modelport.policy.guards import guard

GOALS_US = {"json_schema, 2 KB": 100.0, "mask 4 KB prompt, every detector": 200.0}
PROSE = ("The customer wrote in about an order that arrived late and asked for a refund of "
         "the shipping cost, saying the parcel was left outside in the rain. ")
PROMPT = (PROSE * 12 + "Reach me at ana.lopez@example.com or +44 20 7946 0958. "
          + PROSE * 9 + "Card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32, "
          "key sk-live-9f8e7d6c5b4a39281706. " + PROSE * 6)
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
    guards = compile_guards(["email", "phone", "card", "iban", "secret"], True, [], [], None,
                            "bench", problems)
    half = len(PROMPT) // 2
    body = {"model": "r", "messages": [{"role": "system", "content": PROMPT[:half]},
                                       {"role": "user", "content": PROMPT[half:]}]}
    _, masking = guard(guards, Operation.CHAT, body, lambda: 0)
    assert masking is not None and sum(masking.counts.values()) == 5, masking.counts
    assert 4000 <= len(PROMPT) <= 4200
    checks = {"json_schema, 2 KB": (lambda: schema.check(ANSWER), calls),
              "labels": (lambda: labels.check(" Billing "), calls),
              "max_chars + regex, 500 chars": (lambda: pattern.check(long_text), calls),
              "mask 4 KB prompt, every detector": (
                  lambda: guard(guards, Operation.CHAT, body, lambda: 0), calls // 5)}
    runs: dict[str, list[float]] = {name: [] for name in checks}
    for _ in range(repeat):
        for name, (check, count) in checks.items():
            runs[name].append(_timed(check, count))
    return runs


def render(runs: dict[str, list[float]], info: dict[str, object]) -> str:
    machine = info["machine"]
    assert isinstance(machine, dict)
    lines = [f"# Output contracts and input guards, {info['date']}", "",
             f"Machine: {machine['cpu_model']}, {machine['nproc']} CPUs. Microseconds per "
             "check, median of the rounds (min-max); a 2 KB answer is "
             f"{len(ANSWER)} bytes.", "", "| check | µs | goal | |", "|---|---|---|---|"]
    for name, values in runs.items():
        s = stat(values)
        assert s is not None
        goal = GOALS_US.get(name)
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
