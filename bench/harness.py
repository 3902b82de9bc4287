"""What every benchmark part shares and that is not about one benchmark: statistics over
rounds, the machine and git facts written beside each result, JSON conversion, and turning
SIGTERM into a clean exit (so that every child process is stopped)."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


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
    versions["wrk"] = command_output(["wrk", "-v"]).splitlines()[0].split(" [")[0]
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
