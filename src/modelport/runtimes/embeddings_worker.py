"""The worker process of a sentence-embedding model, on the CPU.

Two engines: ``llama_cpp`` (the default: the model converted to GGUF and run by llama.cpp,
``runtimes.bert_embedder``, no PyTorch) and ``sentence_transformers`` (for those who have
PyTorch and want the library itself). Each ``embed`` message is one batch of texts, already
joined by the parent from concurrent requests; the reply is the float32 matrix of their
unit-length embeddings and each text's token count. Models load from disk only: the hub is
switched off before anything could reach it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelport.runtimes.packages import model_file
from modelport.runtimes.workers import ChildChannel, answer_calls

Embed = Callable[[list[str]], tuple[Any, list[int]]]


@dataclass(frozen=True, slots=True)
class EmbeddingsWorkerSpec:
    model_path: str | None
    model_package: str | None
    threads: int
    engine: str = "llama_cpp"  # or "sentence_transformers"


def serve(channel: ChildChannel, spec: EmbeddingsWorkerSpec) -> None:
    """The child's entry point."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    folder = model_file(spec.model_path, spec.model_package)
    embed, dimensions, max_seq_length = load_engine(spec.engine, folder, spec.threads)
    embed(["warm-up"])
    channel.ready({"dimensions": dimensions, "max_seq_length": max_seq_length})
    answer_calls(channel, "embed", embed,
                 lambda exc: ("runtime_error", f"The embedding model failed: {exc}"))
    # (every text was checked by the parent; what fails in ``embed`` is the model's own call)


def load_engine(engine: str, folder: str, threads: int) -> tuple[Embed, int, int]:
    """The model in ``folder`` on ``engine``: its embed function, dimensions and the longest
    text it reads in tokens."""
    start = _sentence_transformers if engine == "sentence_transformers" else _llama_cpp
    return start(folder, threads)


def _llama_cpp(folder: str, threads: int) -> tuple[Embed, int, int]:
    from modelport.runtimes.bert_embedder import BertEmbedder

    embedder = BertEmbedder(folder, threads=threads)
    return embedder.embed, embedder.dimensions, embedder.max_seq_length


def _sentence_transformers(folder: str, threads: int) -> tuple[Embed, int, int]:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(folder, device="cpu", local_files_only=True)
    tokenizer: Any = model.tokenizer

    def embed(texts: list[str]) -> tuple[Any, list[int]]:
        counts = [len(ids) for ids in tokenizer(
            texts, add_special_tokens=True, truncation=True,
            max_length=model.max_seq_length)["input_ids"]]
        vectors = model.encode(texts, batch_size=max(len(texts), 1), convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32), counts

    dimensions = int(getattr(model, "get_embedding_dimension",
                             model.get_sentence_embedding_dimension)() or 0)
    return embed, dimensions, int(model.max_seq_length or 0)
