"""What every benchmark part shares and that is not about one benchmark: the error that stops a
part, report notes, where the peers' environments live, statistics over rounds, the machine and
git facts written beside each result, JSON conversion, and turning SIGTERM into a clean exit (so
that every child process is stopped)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
# The peers' environments (LiteLLM's and MLServer's virtual environments, llama-cpp-python's
# server, Portkey's node_modules): in bench/ unless MODELPORT_BENCH_ENVS names another folder,
# e.g. one that every clone on a machine shares (.ci/run uses ~/.cache/modelport-bench).
ENVS = Path(os.environ.get("MODELPORT_BENCH_ENVS") or ROOT / "bench").expanduser().resolve()


class BenchError(RuntimeError):
    """A setup or measurement failure that stops the run with a clear message."""


class Notes(list[str]):
    """A report's notes. A peer that cannot be installed or started is left out with a note;
    strict (bench/run --smoke, a part's --require-all), leaving a target out is an error."""

    def __init__(self, items: Sequence[str] = (), *, strict: bool = False) -> None:
        super().__init__(items)
        self.strict = strict

    def left_out(self, note: str) -> None:
        first = note.splitlines()[0]
        if self.strict:
            raise BenchError(f"{first} (--require-all: every target must answer)")
        print(f"warning: {note}", file=sys.stderr)
        self.append(first)


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every part takes: where its report goes, notes from bench/run, strictness."""
    add = parser.add_argument
    add("--out-dir", type=Path, default=ROOT / "bench" / "results")
    add("--no-write", action="store_true", help="print only, write no files")
    add("--note", action="append", default=[], help=argparse.SUPPRESS)
    add("--require-all", action="store_true",
        help="a peer that cannot be installed or started is an error, not a note "
             "(bench/run --smoke)")  # fmt: skip


def cli(main: Callable[[], int]) -> NoReturn:
    """A part's exit: main's status; 1 with the message on a BenchError; 130 on Ctrl-C."""
    try:
        code = main()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("interrupted; children stopped", file=sys.stderr)
        code = 130
    sys.exit(code)


def run_facts(started: dt.datetime, pin: bool, machine: dict[str, Any],
              **part: Any) -> dict[str, Any]:  # fmt: skip
    """What every report's JSON holds: when it ran, whether pinned, the machine, the commit,
    then the part's own facts (its arguments, warnings, ...)."""
    return {
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "pinned": pin,
        "machine": machine,
        "git": git_info(),
        **part,
    }


def write_report(args: argparse.Namespace, info: dict[str, Any], name: str, report: str,
                 raw: dict[str, Any]) -> None:  # fmt: skip
    """Print a part's report; unless --no-write, write it to <out-dir>/<date>-<name>.md and
    its facts and raw numbers to .json."""
    print(report)
    if args.no_write:
        return
    args.out_dir.mkdir(parents=True, exist_ok=True)
    stem = args.out_dir / f"{info['date']}-{name}"
    stem.with_suffix(".md").write_text(report)
    stem.with_suffix(".json").write_text(json.dumps({**info, **raw}, indent=1) + "\n")
    print(f"wrote {stem}.md and {stem}.json", file=sys.stderr)


@dataclass
class Stat:
    median: float
    low: float
    high: float


def stat(values: Sequence[float | None]) -> Stat | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return Stat(statistics.median(present), min(present), max(present))


def command_output(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (done.stdout + done.stderr).strip()


def machine_info(peers: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The machine and the versions a result depends on; ``peers`` adds the peers' versions."""
    cpu_model = ""
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu_model = found.group(1).strip() if found else ""
    versions: dict[str, str | None] = {}
    for package in ("uvicorn", "aiohttp", "orjson", "uvloop", "httptools", "modelport"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["nginx"] = command_output(["nginx", "-v"]).removeprefix("nginx version: ")
    versions.update(peers or {})
    versions["wrk"] = (command_output(["wrk", "-v"]).splitlines() or [""])[0].split(" [")[0]
    return {
        "nproc": os.cpu_count(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "kernel": platform.release(),
        "python": sys.version,
        "loadavg_at_start": os.getloadavg(),
        "versions": versions,
    }


def git_info() -> dict[str, Any]:
    commit = command_output(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"])
    dirty = command_output(["git", "-C", str(ROOT), "status", "--porcelain"])
    return {
        "commit": commit if re.fullmatch(r"[0-9a-f]+", commit) else "none",
        "dirty": bool(dirty),
    }


@contextlib.contextmanager
def terminated_on_signal() -> Iterator[None]:
    """Turn SIGTERM/SIGHUP into SystemExit, so the finally blocks stop every child."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def to_jsonable(value: Any) -> Any:
    if isinstance(value, Stat):
        return asdict(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return value


def rotated(items: Sequence[str], by: int) -> list[str]:
    """Each round starts with a different target, so no target always runs first."""
    return [*items[by % len(items) :], *items[: by % len(items)]]
