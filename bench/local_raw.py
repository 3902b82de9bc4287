"""The raw llama-cpp-python baseline of bench/local_llm.py: the child that runs completions
in-process (`local_llm.py --raw-serve`) and the handle the benchmark drives it through."""

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


def raw_serve(args: argparse.Namespace) -> int:
    """The raw child, pinned to the model's CPU: load and warm up, say so on stdout, then run
    one completion per line on stdin ({"max_tokens": N}) and answer each with one JSON line;
    end at EOF. Each completion starts with Llama.reset(), so no prompt prefix is reused from
    the one before (Modelport does not reuse one either): a fresh prefill every time."""
    from llama_cpp import Llama

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


class RawChild:
    """The raw llama-cpp-python process (`--raw-serve`), kept for the whole run."""

    def __init__(self, model: str, args: argparse.Namespace, pin: bool, workdir: Path) -> None:
        argv = pinned(GATEWAY_CPU, [
            sys.executable, str(BENCH / "local_llm.py"), "--raw-serve", "--raw-model", model,
            "--raw-prompt", PROMPT, "--n-ctx", str(args.n_ctx), "--threads", str(args.threads),
            *(["--raw-flash-attn"] if args.raw_flash_attn else []),
        ], pin)  # fmt: skip
        self.log = workdir / "raw.log"
        self.timeout = args.stream_timeout
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
            raise BenchError(f"the raw llama-cpp-python process did not answer "
                             f"(exit {self.proc.returncode}):\n{tail}")  # fmt: skip
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stream(self, max_tokens: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"max_tokens": max_tokens}) + "\n")
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
