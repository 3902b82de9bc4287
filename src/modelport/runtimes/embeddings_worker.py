"""The worker process of a sentence-embedding model (sentence-transformers, on the CPU).

Each ``embed`` message is one batch of texts, already joined by the parent from concurrent
requests; the reply is the float32 matrix of their embeddings and each text's token count.
The model is loaded from disk only: the hub is switched off before anything imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from modelport.runtimes.packages import model_file
from modelport.runtimes.workers import ChildChannel, answer_calls


@dataclass(frozen=True, slots=True)
class EmbeddingsWorkerSpec:
    model_path: str | None
    model_package: str | None
    threads: int


def serve(channel: ChildChannel, spec: EmbeddingsWorkerSpec) -> None:
    """The child's entry point."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(spec.threads)
    model = SentenceTransformer(model_file(spec.model_path, spec.model_package), device="cpu",
                                local_files_only=True)
    tokenizer: Any = model.tokenizer
    model.encode(["warm-up"], convert_to_numpy=True)
    channel.ready({
        "dimensions": int(getattr(model, "get_embedding_dimension",
                                  model.get_sentence_embedding_dimension)() or 0),
        "max_seq_length": int(model.max_seq_length or 0),
    })

    def embed(texts: list[str]) -> tuple[Any, list[int]]:
        counts = [len(ids) for ids in tokenizer(
            texts, add_special_tokens=True, truncation=True,
            max_length=model.max_seq_length)["input_ids"]]
        vectors = model.encode(texts, batch_size=max(len(texts), 1), convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float32), counts

    answer_calls(channel, "embed", embed,
                 lambda exc: ("runtime_error", f"The embedding model failed: {exc}"))
