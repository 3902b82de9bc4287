"""Start-up: how long the command line and the server take to be of use (python bench/startup.py).

Measured as wall time of whole processes, each repeated (--repeat, 10) with the median and
the range: `modelport --help`, `modelport config validate` of a small config, and
`modelport serve` with the offline default (in a fresh folder, the Iris model already in
place): the time until /health/live answers 200, and until /health/ready does (every local
model loaded). Goals (issue 18): --help and config validate under 0.15 s, /health/live within
1 s. Writes bench/results/<date>-startup.md and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import add_output_arguments, cli, machine_info, run_facts, stat, write_report
from overhead import BENCH, ROOT, modelport_bin

CONFIG = """\
providers:
  upstream:
    kind: openai
    base_url: http://127.0.0.1:9/v1
    api_key: env:UPSTREAM_KEY
routes:
  chat:
    targets: [{provider: upstream, model: m}]
"""
GOALS = {"help": 0.15, "validate": 0.15, "live": 1.0}


def _timed(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _serve_times(cwd: Path, port: int, env: dict[str, str]) -> tuple[float, float]:
    """(seconds to /health/live, seconds to /health/ready) of one offline-default start."""
    started = time.perf_counter()
    proc = subprocess.Popen([modelport_bin(), "serve", "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        live = _until(lambda: _ok(f"http://127.0.0.1:{port}/health/live"), proc, started)
        ready = _until(lambda: _ok(f"http://127.0.0.1:{port}/health/ready"), proc, started)
        return live, ready
    finally:
        proc.terminate()
        proc.wait(30)


def _until(probe: Callable[[], bool], proc: subprocess.Popen[bytes], started: float) -> float:
    while not probe():
        if proc.poll() is not None or time.perf_counter() - started > 300:
            raise RuntimeError("modelport serve did not start")
        time.sleep(0.005)
    return time.perf_counter() - started


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def measure(repeat: int, port: int) -> dict[str, list[float]]:
    work = Path(tempfile.mkdtemp(prefix="startup-", dir=BENCH / ".work"))
    env = {**os.environ, "UPSTREAM_KEY": "k"}
    env.pop("MODELPORT_ADMIN_KEY", None)
    try:
        (work / "modelport.yaml").write_text(CONFIG)
        serve_dir = work / "offline"
        serve_dir.mkdir()
        _serve_times(serve_dir, port, env)  # first start: trains Iris, migrates the store
        runs: dict[str, list[float]] = {"help": [], "validate": [], "live": [], "ready": []}
        for _ in range(repeat):
            runs["help"].append(_timed([modelport_bin(), "--help"], work, env))
            runs["validate"].append(_timed(
                [modelport_bin(), "config", "validate", "modelport.yaml"], work, env))
            live, ready = _serve_times(serve_dir, port, env)
            runs["live"].append(live)
            runs["ready"].append(ready)
        return runs
    finally:
        shutil.rmtree(work, ignore_errors=True)


def render(runs: dict[str, list[float]], info: dict[str, object]) -> str:
    lines = [f"# Start-up, {info['date']}", "",
             f"Machine: {info['machine']}. Each process {len(runs['help'])} times; seconds, "
             "median (min-max). `live`/`ready`: `modelport serve` with the offline default "
             "until /health/live, /health/ready answer 200.", "",
             "| what | seconds | goal | |", "|---|---|---|---|"]
    for name, values in runs.items():
        s = stat(values)
        assert s is not None
        goal = GOALS.get(name)
        verdict = "" if goal is None else ("PASS" if s.median <= goal else "FAIL")
        lines.append(f"| {name} | {s.median:.3f} ({s.low:.3f}-{s.high:.3f}) | "
                     f"{'' if goal is None else f'<= {goal}'} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--port", type=int, default=18790)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    started = dt.datetime.now().astimezone()
    (BENCH / ".work").mkdir(exist_ok=True)
    runs = measure(args.repeat, args.port)
    info = run_facts(started, False, machine_info(), python=sys.version.split()[0],
                     root=str(ROOT))
    write_report(args, info, "startup", render(runs, info), {"runs": runs})
    return 0


if __name__ == "__main__":
    cli(main)
