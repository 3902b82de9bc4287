"""The in-process baselines of bench/local_llm.py, each a child process the benchmark drives
through a pipe, one JSON line per request and per answer:

* raw: llama-cpp-python's ``Llama`` running completions (`local_llm.py --raw-serve`);
* engine: Modelport's own batching engine (``LlamaEngine``) in the child's process, with no
  server, worker process, pipe or HTTP around it (`python bench/local_raw.py --engine ...`):
  what llama.cpp's kernels allow for 1 and for N sequences decoded together on this machine,
  measured in the same run as Modelport, so that the 4-stream gain reads against its ceiling.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from overhead import (
    BENCH,
    GATEWAY_CPU,
    BenchError,
    pinned,
)

PROMPT = (
    "The history of the printing press begins in the workshops of fifteenth-century Mainz, "
    "where Johannes Gutenberg combined movable metal type, oil-based ink and a screw press. "
    "Within fifty years, print shops had spread"
)


# --------------------------------------------------------------------------- raw (child)


def cpu_has_amx() -> bool:
    """Intel AMX on this CPU: llama.cpp then puts weights in its AMX buffer type, whose matmul
    crashes llama-cpp-python's high-level ``Llama`` on the first completion (signal 11, seen
    with 0.3.36 on a Xeon with AMX; llama.cpp issue 20824). Modelport's engine loads models
    without extra buffer types and is not affected."""
    with contextlib.suppress(OSError):
        return " amx_int8" in Path("/proc/cpuinfo").read_text()
    return False


NO_EXTRA_BUFFERS = (
    "import llama_cpp.llama_cpp as c\n"
    "_defaults = c.llama_model_default_params\n"
    "def _no_extra_buffers():\n"
    "    params = _defaults()\n"
    "    params.use_extra_bufts = False\n"
    "    return params\n"
    "c.llama_model_default_params = _no_extra_buffers\n"
)


def without_extra_buffers() -> None:
    """Load models the way Modelport's engine does (no repacked or AMX weight buffers): the
    workaround for ``cpu_has_amx``, applied to the raw baseline and llama-cpp-python's
    server on such CPUs only, and said in the report."""
    exec(NO_EXTRA_BUFFERS, {})


def raw_serve(args: argparse.Namespace) -> int:
    """The raw child, pinned to the model's CPU: load and warm up, say so on stdout, then run
    one completion per line on stdin ({"max_tokens": N}) and answer each with one JSON line;
    end at EOF. Each completion starts with Llama.reset(), so no prompt prefix is reused from
    the one before (Modelport does not reuse one either): a fresh prefill every time."""
    from llama_cpp import Llama

    if cpu_has_amx():
        without_extra_buffers()
    t0 = time.perf_counter()
    llm = Llama(model_path=args.raw_model, n_ctx=args.n_ctx, n_threads=args.threads,
                n_threads_batch=args.threads, flash_attn=args.raw_flash_attn,
                verbose=False)  # fmt: skip
    load_s = time.perf_counter() - t0
    for _ in llm.create_completion(args.raw_prompt, max_tokens=8, temperature=0, stream=True):
        pass  # warm-up: the first decode after load is slower
    print(json.dumps({"ready": True, "load_s": load_s}), flush=True)
    for line in sys.stdin:
        max_tokens = int(json.loads(line)["max_tokens"])
        llm.reset()
        text: list[str] = []
        start = time.perf_counter()
        first = last = None
        for chunk in llm.create_completion(args.raw_prompt, max_tokens=max_tokens,
                                           temperature=0, stream=True):  # fmt: skip
            piece = chunk["choices"][0]["text"]
            if piece:
                now = time.perf_counter()
                first = first if first is not None else now
                last = now
                text.append(piece)
        end = time.perf_counter()
        print(json.dumps({"start": start, "first": first, "last": last, "end": end,
                          "tokens": len(text), "usage_tokens": None, "text": "".join(text),
                          "error": None}), flush=True)  # fmt: skip
    return 0


def engine_serve(argv: list[str] | None = None) -> int:
    """The engine child: load Modelport's engine, warm it up, say so on stdout, then for each
    line on stdin ({"streams": N, "max_tokens": K}) submit N greedy completions at once, step
    until all are done and answer with one JSON line: when they were submitted and, per
    completion, when its first and last text came and how many tokens it produced."""
    parser = argparse.ArgumentParser(prog="local_raw.py --engine")
    parser.add_argument("--engine", action="store_true", required=True)
    for flag in ("--model", "--prompt"):
        parser.add_argument(flag, required=True)
    for flag in ("--n-ctx", "--threads", "--parallel"):
        parser.add_argument(flag, type=int, required=True)
    args = parser.parse_args(argv)
    from modelport.runtimes.llama_engine import GenerationParams, LlamaEngine

    t0 = time.perf_counter()
    engine = LlamaEngine(args.model, n_ctx=args.n_ctx, threads=args.threads,
                         parallel=args.parallel)  # fmt: skip
    load_s = time.perf_counter() - t0
    next_id = 1

    def generate(n: int, max_tokens: int) -> dict[str, Any]:
        nonlocal next_id
        ids = list(range(next_id, next_id + n))
        next_id += n
        params = GenerationParams(prompt=args.prompt, max_tokens=max_tokens, temperature=0)
        start = time.perf_counter()
        for request_id in ids:
            engine.submit(request_id, params)
        seen: dict[int, dict[str, Any]] = {i: {"first": None, "last": None, "tokens": 0}
                                           for i in ids}  # fmt: skip
        while engine.busy():
            for delta in engine.step():
                now = time.perf_counter()
                one = seen[delta.request_id]
                if delta.text:
                    one["first"] = one["first"] if one["first"] is not None else now
                    one["last"] = now
                one["tokens"] = delta.completion_tokens
        return {"start": start, "streams": [seen[i] for i in ids]}

    generate(1, 8)  # warm-up: the first decode after load is slower
    print(json.dumps({"ready": True, "load_s": load_s}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        print(json.dumps(generate(int(request["streams"]), int(request["max_tokens"]))),
              flush=True)  # fmt: skip
    engine.close()
    return 0


class LineChild:
    """A baseline child process kept for the whole run: a JSON line in, a JSON line out."""

    def __init__(self, what: str, argv: list[str], timeout: float, workdir: Path) -> None:
        self.what = what
        self.log = workdir / f"{what.replace(' ', '-')}.log"
        self.timeout = timeout
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        self.load_s = float(self._answer(120)["load_s"])

    def _answer(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            tail = self.log.read_text(errors="replace")[-2000:]
            raise BenchError(f"the {self.what} process did not answer "
                             f"(exit {self.proc.returncode}):\n{tail}")  # fmt: skip
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._answer(self.timeout)

    def stderr_lines(self) -> list[str]:
        with contextlib.suppress(OSError):
            return [ln for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        return []

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class RawChild(LineChild):
    """The raw llama-cpp-python process (`--raw-serve`), pinned to the model's CPU."""

    def __init__(self, model: str, args: argparse.Namespace, pin: bool, workdir: Path) -> None:
        argv = pinned(GATEWAY_CPU, [
            sys.executable, str(BENCH / "local_llm.py"), "--raw-serve", "--raw-model", model,
            "--raw-prompt", PROMPT, "--n-ctx", str(args.n_ctx), "--threads", str(args.threads),
            *(["--raw-flash-attn"] if args.raw_flash_attn else []),
        ], pin)  # fmt: skip
        super().__init__("raw llama-cpp-python", argv, args.stream_timeout, workdir)

    def stream(self, max_tokens: int) -> dict[str, Any]:
        return self.ask({"max_tokens": max_tokens})


class EngineChild(LineChild):
    """Modelport's engine alone (``engine_serve``) with ``threads``, on ``cpus``."""

    def __init__(self, model: str, args: argparse.Namespace, threads: int, cpus: str,
                 pin: bool, workdir: Path) -> None:  # fmt: skip
        argv = pinned(cpus, [
            sys.executable, str(BENCH / "local_raw.py"), "--engine", "--model", model,
            "--prompt", PROMPT, "--n-ctx", str(args.n_ctx), "--threads", str(threads),
            "--parallel", str(args.parallel),
        ], pin)  # fmt: skip
        super().__init__(f"engine {threads} threads", argv, args.stream_timeout * 4, workdir)

    def generate(self, streams: int, max_tokens: int) -> list[dict[str, Any]]:
        """``streams`` completions at once, as the benchmark client's stream records."""
        answer = self.ask({"streams": streams, "max_tokens": max_tokens})
        end = time.perf_counter()
        return [{"start": answer["start"], "first": s["first"], "last": s["last"], "end": end,
                 "tokens": s["tokens"], "usage_tokens": None, "text": "", "error": None,
                 "kind": "long"} for s in answer["streams"]]  # fmt: skip


if __name__ == "__main__":
    sys.exit(engine_serve())
