"""Sentence embeddings from a BERT encoder on llama.cpp, with no PyTorch.

The sentence-transformers folder (weights in safetensors) is converted to GGUF at load time
(``runtimes.bert_gguf``, a fraction of a second) into a temporary folder that lives as long
as the embedder. Texts are tokenized by Hugging Face's ``tokenizers`` from the folder's own
``tokenizer.json``, set up as sentence-transformers sets it (no padding, truncation at the
model's ``max_seq_length``), so the token ids are exactly the ones sentence-transformers
would feed; llama.cpp's own WordPiece differs on some scripts and on special-token text.
llama.cpp then runs the encoder over many texts in one ``llama_encode`` (one sequence id
each, no padding) and pools each as the folder says; the vectors are L2-normalised here as
sentence-transformers' ``Normalize`` module does.

Measured against sentence-transformers on 200 varied texts: cosine similarity at least
0.99999 for every text (tests/integration/test_local_embeddings.py keeps the reference).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from modelport.runtimes.bert_gguf import convert
from modelport.runtimes.llama_engine import ModelLoadError, load_model

# Tokens in one llama_encode (at least one whole text): n_ctx = n_batch = n_ubatch, since a
# non-causal model must see a whole batch in one ubatch. Attention scratch grows with its
# square, so it stays modest.
BATCH_TOKENS = 2048
MAX_SEQUENCES = 32


class BertEmbedder:
    def __init__(self, model_dir: str, *, threads: int) -> None:
        folder = Path(model_dir)
        self.max_seq_length = _max_seq_length(folder)
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_seq_length)
        self._batch_tokens = max(BATCH_TOKENS, self.max_seq_length)
        self._tmp = tempfile.TemporaryDirectory(prefix="modelport-gguf-")
        gguf_file = Path(self._tmp.name) / "model.gguf"
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        try:
            convert(folder, gguf_file, weight_type="f16", name=folder.name)
            self._model = load_model(str(gguf_file))
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = params.n_batch = params.n_ubatch = self._batch_tokens
            params.n_seq_max = MAX_SEQUENCES
            params.n_threads = params.n_threads_batch = threads
            params.embeddings = True
            params.no_perf = True
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise ModelLoadError(f"llama.cpp could not create a context for {model_dir!r}")
            self.dimensions = int(llama_cpp.llama_model_n_embd(self._model))
            self._batch = llama_cpp.llama_batch_init(self._batch_tokens, 0, 1)
        except BaseException:
            self.close()
            raise

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [list(e.ids) for e in self._tokenizer.encode_batch(texts)]

    def embed(self, texts: list[str]) -> tuple[npt.NDArray[np.float32], list[int]]:
        """Unit-length embeddings of ``texts``, and each text's token count."""
        ids = self.tokenize(texts)
        out = np.empty((len(ids), self.dimensions), dtype=np.float32)
        start = 0
        while start < len(ids):
            end, tokens = start, 0
            while (end < len(ids) and end - start < MAX_SEQUENCES
                   and tokens + len(ids[end]) <= self._batch_tokens):
                tokens += len(ids[end])
                end += 1
            self._encode(ids[start:end], out[start:end])
            start = end
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        return out, [len(i) for i in ids]

    def _encode(self, group: list[list[int]], into: npt.NDArray[np.float32]) -> None:
        batch, n = self._batch, 0
        for seq, ids in enumerate(group):
            for pos, token in enumerate(ids):
                batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
                batch.seq_id[n][0], batch.logits[n] = seq, True
                n += 1
        batch.n_tokens = n
        status = llama_cpp.llama_encode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_encode failed with status {status}")
        for seq in range(len(group)):
            pooled = llama_cpp.llama_get_embeddings_seq(self._ctx, seq)
            into[seq] = np.ctypeslib.as_array(pooled, shape=(self.dimensions,))

    def close(self) -> None:
        """Free every llama.cpp object and the GGUF file; idempotent."""
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None
        self._tmp.cleanup()


def _max_seq_length(folder: Path) -> int:
    """sentence-transformers' truncation length: its config, else the model's positions."""
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        value = json.loads(st_config.read_text()).get("max_seq_length")
        if isinstance(value, int) and value > 0:
            return value
    return int(json.loads((folder / "config.json").read_text())["max_position_embeddings"])
