"""A continuous-batching text generator over llama.cpp, for one worker process.

``LlamaEngine`` keeps ``parallel`` slots, each a llama.cpp sequence with a KV stream of
its own (``n_ctx`` cells), and every ``step()`` advances all of them together:

* one ``llama_decode`` carries the next token of every generating sequence, so the
  weights are read once for all of them (this is where batching pays: decoding is bound
  by memory bandwidth, not arithmetic);
* prompt prefill, at most ``n_batch`` tokens a step, runs in decodes of its own, one
  sequence per call, in chunks that start at multiples of ``n_batch``.

Each sequence samples from its own logits with its own sampler chain, so requests never
wait for one another the way they do behind llama-cpp-python's ``Llama`` class. Requests
past the slots queue and take a slot as soon as one frees, within the same step.

Batch invariance. llama.cpp's CPU kernels are not batch-invariant in general: which kernel
multiplies a row depends on how many rows share the call (llamafile's sgemm from 2 rows,
the tiled K-quant matmul from 8, the repacked Q4_K gemm from 4, the tiled and split-KV
flash-attention paths), and they round differently, so a sequence's logits would change
with its neighbours and greedy text would drift. Hence prefill never shares a decode with
another sequence and is chunked by the sequence's own length only, weight repacking and
flash attention are off, and a sequence then computes bit-for-bit the same numbers alone
or beside others while at most 7 sequences decode at once (from 8 rows the K-quant matmul
switches kernels). Measured on llama-cpp-python 0.3.36 (x86-64); other builds may differ.

The engine is synchronous and single-threaded: the worker that owns it calls ``submit``,
``cancel`` and ``step`` from one thread. It talks to llama-cpp-python's low-level ctypes
bindings (``llama_cpp.llama_cpp``), which follow llama.h one to one, and it silences
llama.cpp's process-wide log.

Chat messages become prompt text in ``runtimes.chat_formats``.
"""

from __future__ import annotations

import codecs
import ctypes
import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import llama_cpp
import numpy as np

from modelport.errors import InputRejected

__all__ = [
    "Delta",
    "GenerationParams",
    "LlamaDecodeError",
    "LlamaEngine",
    "ModelLoadError",
    "PromptTooLong",
]


class PromptTooLong(Exception):
    """The prompt (with the completion it asks for) does not fit one sequence's context."""

    def __init__(self, prompt_tokens: int, limit: int, max_tokens: int | None = None) -> None:
        self.prompt_tokens = prompt_tokens
        self.limit = limit
        self.max_tokens = max_tokens
        if max_tokens is None or prompt_tokens >= limit:
            message = (
                f"the prompt is {prompt_tokens} tokens; the context holds {limit} tokens per "
                "sequence, and the prompt must leave room for at least one generated token"
            )
        else:
            message = (
                f"the prompt is {prompt_tokens} tokens and max_tokens is {max_tokens}: "
                f"{prompt_tokens + max_tokens} tokens exceed the context of {limit} tokens "
                "per sequence"
            )
        super().__init__(message)


class ModelLoadError(RuntimeError):
    """The model file could not be loaded, or no llama.cpp context could be made for it."""


class LlamaDecodeError(RuntimeError):
    """``llama_decode`` failed; the sequences that were in the batch have been dropped."""

    def __init__(self, status: int, request_ids: tuple[int, ...]) -> None:
        self.status = status
        self.request_ids = request_ids
        super().__init__(
            f"llama_decode failed with status {status}; dropped requests {list(request_ids)}"
        )


@dataclass(frozen=True, slots=True)
class GenerationParams:
    prompt: str
    max_tokens: int | None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delta:
    request_id: int
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


# llama.cpp (and ggml) log through this process-wide callback; the engine keeps them quiet.
# The ctypes object must outlive every call into the library, hence a module constant.
_QUIET_LOG = llama_cpp.llama_log_callback(lambda _level, _text, _user_data: None)

def load_model(model_path: str) -> Any:
    """A GGUF file loaded by llama.cpp, its log kept quiet, without repacked weight buffers
    (see ``_REPACK_WEIGHTS``); ``ModelLoadError`` when it cannot be."""
    llama_cpp.llama_log_set(_QUIET_LOG, ctypes.c_void_p())
    llama_cpp.llama_backend_init()
    if not os.path.isfile(model_path):
        raise ModelLoadError(f"model file {model_path!r} does not exist")
    model_params = llama_cpp.llama_model_default_params()
    model_params.use_extra_bufts = _REPACK_WEIGHTS
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), model_params)
    if not model:
        raise ModelLoadError(f"llama.cpp could not load {model_path!r} as a GGUF model")
    return model


# llama_sampler_init_dist treats this seed as "pick one at random".
_RANDOM_SEED = 0xFFFFFFFF

# Kernel choices that keep a sequence's numbers independent of its neighbours (module notes).
_FLASH_ATTN = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
_REPACK_WEIGHTS = False

_Utf8Decoder = codecs.getincrementaldecoder("utf-8")


@dataclass(slots=True, eq=False)
class _Sequence:
    request_id: int
    params: GenerationParams
    prompt: list[int]
    limit: int  # completion tokens allowed
    stops: tuple[str, ...]
    decoder: codecs.IncrementalDecoder = field(default_factory=lambda: _Utf8Decoder("replace"))
    slot: int = -1
    sampler: Any = None  # llama_sampler_p while a sampling sequence holds a slot; greedy: None
    n_past: int = 0  # tokens of this sequence in the KV cache
    pending: int = -1  # sampled token not yet fed back to the model
    completion: int = 0
    held: str = ""  # text withheld because it may be the start of a stop string


class LlamaEngine:
    """Decodes up to ``parallel`` sequences together, one batched decode per step."""

    def __init__(
        self, model_path: str, *, n_ctx: int, threads: int, parallel: int, n_batch: int = 512
    ) -> None:
        if n_ctx < 2:
            raise ValueError("n_ctx must be at least 2")
        if parallel < 1:
            raise ValueError("parallel must be at least 1")
        if threads < 1:
            raise ValueError("threads must be at least 1")
        if n_batch < parallel:
            raise ValueError("n_batch must be at least parallel (one token per sequence)")
        self.n_ctx = n_ctx
        self.parallel = parallel
        self.n_batch = n_batch
        self._model: Any = None
        self._ctx: Any = None
        self._batch: Any = None
        self._closed = False
        # Active sequences hold slots 0 .. len(_active) - 1, with no holes (see _release).
        self._active: dict[int, _Sequence] = {}  # admission order
        self._queue: deque[_Sequence] = deque()
        self._queued: dict[int, _Sequence] = {}
        self._carry: list[Delta] = []  # deltas of a step that ended in LlamaDecodeError
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)

        self._model = model = load_model(model_path)

        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = n_ctx * parallel
        ctx_params.n_batch = n_batch
        ctx_params.n_ubatch = n_batch
        ctx_params.n_seq_max = parallel
        ctx_params.n_threads = threads
        ctx_params.n_threads_batch = threads
        ctx_params.no_perf = True
        ctx_params.flash_attn_type = _FLASH_ATTN
        # One KV stream per sequence: each gets exactly n_ctx cells of its own, and its
        # attention never spans the other sequences' cells.
        ctx_params.kv_unified = False
        ctx = llama_cpp.llama_init_from_model(model, ctx_params)
        if not ctx:
            self.close()
            raise ModelLoadError(
                f"llama.cpp could not create a context of {n_ctx} x {parallel} tokens "
                f"for {model_path!r}"
            )
        self._ctx = ctx
        if int(llama_cpp.llama_n_ctx_seq(ctx)) < n_ctx:  # pragma: no cover - defensive
            self.close()
            raise ModelLoadError(f"llama.cpp gave each sequence fewer than {n_ctx} cells")
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._bos = int(llama_cpp.llama_vocab_bos(self._vocab))
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab)) and self._bos >= 0

        batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._batch = batch
        # Field access on a ctypes struct builds a new pointer object each time: keep them.
        self._b_token = batch.token
        self._b_pos = batch.pos
        self._b_logits = batch.logits
        self._b_seq = [batch.seq_id[i] for i in range(n_batch)]
        for i in range(n_batch):
            batch.n_seq_id[i] = 1

    # -- model facts ------------------------------------------------------------------

    def chat_template(self) -> str | None:
        """The GGUF's ``tokenizer.chat_template``, or None when the file carries none."""
        return self._meta("tokenizer.chat_template")

    def special_tokens(self) -> tuple[str, str]:
        """The text of the BOS and EOS tokens ("" where the model has none)."""
        return self._token_text(self._bos), self._token_text(
            int(llama_cpp.llama_vocab_eos(self._vocab))
        )

    def count_tokens(self, text: str) -> int:
        """How many tokens ``text`` is as a prompt (BOS included where the model adds one)."""
        return len(self._tokenize(text))

    # -- requests ---------------------------------------------------------------------

    def submit(self, request_id: int, params: GenerationParams) -> None:
        self._check_open()
        if request_id in self._active or request_id in self._queued:
            raise RuntimeError(f"request {request_id} is already in the engine")  # a bug
        if params.max_tokens is not None and params.max_tokens < 1:
            raise InputRejected("max_tokens must be at least 1", param="max_tokens")
        if params.temperature < 0:
            raise InputRejected("temperature must not be negative", param="temperature")
        if not 0 < params.top_p <= 1:
            raise InputRejected("top_p must be in (0, 1]", param="top_p")
        prompt = self._tokenize(params.prompt)
        if not prompt:
            raise InputRejected("The prompt is empty.", param="prompt")
        n = len(prompt)
        if n >= self.n_ctx:
            raise PromptTooLong(n, self.n_ctx, params.max_tokens)
        if params.max_tokens is not None and n + params.max_tokens > self.n_ctx:
            raise PromptTooLong(n, self.n_ctx, params.max_tokens)
        limit = self.n_ctx - n if params.max_tokens is None else params.max_tokens
        stops = tuple(s for s in params.stop if s)
        seq = _Sequence(request_id, params, prompt, limit, stops)
        self._queue.append(seq)
        self._queued[request_id] = seq
        self._admit()

    def cancel(self, request_id: int) -> None:
        """Forget a request, queued or running; unknown ids are ignored."""
        seq = self._queued.pop(request_id, None)
        if seq is not None:
            self._queue.remove(seq)
            return
        seq = self._active.pop(request_id, None)
        if seq is not None:
            self._release(seq)
            self._admit()

    def busy(self) -> bool:
        return bool(self._active or self._queue)

    # -- the decode loop --------------------------------------------------------------

    def step(self) -> list[Delta]:
        """Advance every active sequence by one token (or one prompt chunk); what each produced.

        One ``llama_decode`` carries the next token of every generating sequence. Prompt
        prefill (at most ``n_batch`` tokens per step) runs in decodes of its own, one
        sequence per call and in chunks that start at multiples of ``n_batch``, so that a
        sequence is computed by exactly the same kernels whether it runs alone or beside
        others (see the module notes on batch invariance).
        """
        self._check_open()
        deltas, self._carry = self._carry, []
        self._admit()
        # In slot order: one micro-batch for all of them (see _release).
        decoding = sorted(
            (seq for seq in self._active.values() if seq.pending >= 0), key=lambda s: s.slot
        )
        if decoding:
            b_token, b_pos, b_logits, b_seq = (
                self._b_token,
                self._b_pos,
                self._b_logits,
                self._b_seq,
            )
            for i, seq in enumerate(decoding):
                b_token[i] = seq.pending
                b_pos[i] = seq.n_past
                b_seq[i][0] = seq.slot
                b_logits[i] = 1
            self._decode(len(decoding), decoding, deltas)
            for i, seq in enumerate(decoding):
                seq.n_past += 1
                seq.pending = -1
                self._take(seq, self._sample(seq, i), deltas)
            self._admit()
        budget = self.n_batch
        for seq in [s for s in self._active.values() if s.n_past < len(s.prompt)]:
            while seq.n_past < len(seq.prompt):
                start = seq.n_past
                end = min(len(seq.prompt), start - start % self.n_batch + self.n_batch)
                if end - start > budget:
                    break
                self._prefill(seq, start, end, deltas)
                budget -= end - start
            if budget <= 0:
                break
        self._admit()
        return deltas

    def _decode(self, n: int, seqs: list[_Sequence], deltas: list[Delta]) -> None:
        """Run the first ``n`` batch entries; on failure drop ``seqs`` and raise."""
        self._batch.n_tokens = n
        status = int(llama_cpp.llama_decode(self._ctx, self._batch))
        if status == 0:
            return
        for seq in seqs:
            if self._active.pop(seq.request_id, None) is not None:
                self._release(seq)
        self._carry = deltas  # what other sequences produced this step is not lost
        raise LlamaDecodeError(status, tuple(seq.request_id for seq in seqs))

    def _prefill(self, seq: _Sequence, start: int, end: int, deltas: list[Delta]) -> None:
        b_token, b_pos, b_logits, b_seq = self._b_token, self._b_pos, self._b_logits, self._b_seq
        prompt, slot = seq.prompt, seq.slot
        n = end - start
        for i in range(n):
            b_token[i] = prompt[start + i]
            b_pos[i] = start + i
            b_seq[i][0] = slot
            b_logits[i] = 0
        last = end == len(prompt)
        if last:
            b_logits[n - 1] = 1
        self._decode(n, [seq], deltas)
        seq.n_past = end
        if last:
            self._take(seq, self._sample(seq, n - 1), deltas)

    def _sample(self, seq: _Sequence, index: int) -> int:
        """The next token of ``seq`` from the logits at ``index`` of the last decode."""
        if seq.sampler is None:
            # Greedy: an argmax over the logits in place; llama.cpp's greedy sampler would
            # first copy all of them into a candidate array (~0.4 ms with a 262k vocabulary).
            logits = llama_cpp.llama_get_logits_ith(self._ctx, index)
            return int(np.ctypeslib.as_array(logits, shape=(self._n_vocab,)).argmax())
        return int(llama_cpp.llama_sampler_sample(seq.sampler, self._ctx, index))

    def _take(self, seq: _Sequence, token: int, deltas: list[Delta]) -> None:
        """Record a sampled token; a finished sequence gives up its slot at once."""
        delta = self._advance(seq, token)
        if delta is None:
            return
        deltas.append(delta)
        if delta.finish_reason is not None:
            del self._active[seq.request_id]
            self._release(seq)

    def close(self) -> None:
        """Free every llama.cpp object; the engine is unusable afterwards. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for seq in self._active.values():
            if seq.sampler is not None:
                llama_cpp.llama_sampler_free(seq.sampler)
                seq.sampler = None
        self._active.clear()
        self._queue.clear()
        self._queued.clear()
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> LlamaEngine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the engine is closed")

    def _admit(self) -> None:
        """Give free slots to queued requests, oldest first."""
        while self._queue and len(self._active) < self.parallel:
            seq = self._queue.popleft()
            del self._queued[seq.request_id]
            seq.slot = len(self._active)
            seq.sampler = self._make_sampler(seq.params)
            self._active[seq.request_id] = seq

    def _release(self, seq: _Sequence) -> None:
        """Free the slot and KV cells of a sequence already taken out of ``_active``.

        llama.cpp puts only sequences with consecutive ids, in increasing order, into one
        micro-batch when every sequence has a KV stream of its own; a hole in the busy slots
        would split each decode in two and read the weights twice. So the sequence in the
        highest slot moves into the hole: llama.cpp copies its whole KV stream (cells stay
        where they are, so its numbers do not change) at the start of the next decode.
        """
        memory, hole = self._memory, seq.slot
        llama_cpp.llama_memory_seq_rm(memory, hole, -1, -1)
        if seq.sampler is not None:
            llama_cpp.llama_sampler_free(seq.sampler)
            seq.sampler = None
        seq.slot = -1
        top = len(self._active)
        if hole < top:
            mover = next(s for s in self._active.values() if s.slot == top)
            llama_cpp.llama_memory_seq_cp(memory, top, hole, -1, -1)
            llama_cpp.llama_memory_seq_rm(memory, top, -1, -1)
            mover.slot = hole

    def _make_sampler(self, params: GenerationParams) -> Any:
        """A sampler chain (temperature, top-p, seeded draw); None for greedy decoding."""
        if params.temperature == 0:
            return None
        chain_params = llama_cpp.llama_sampler_chain_default_params()
        chain_params.no_perf = True
        chain = llama_cpp.llama_sampler_chain_init(chain_params)
        llama_cpp.llama_sampler_chain_add(
            chain, llama_cpp.llama_sampler_init_temp(params.temperature)
        )
        if params.top_p < 1:
            llama_cpp.llama_sampler_chain_add(
                chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1)
            )
        seed = _RANDOM_SEED if params.seed is None else params.seed % _RANDOM_SEED
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(seed))
        return chain

    def _advance(self, seq: _Sequence, token: int) -> Delta | None:
        """Take one sampled token: the delta to report, or None when there is nothing yet."""
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            return self._finish(seq, "stop")
        seq.completion += 1
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._piece(token)
        text = seq.decoder.decode(piece)
        if seq.completion >= seq.limit:
            return self._finish(seq, "length", text)
        seq.pending = token
        if seq.stops:
            text, stopped = self._hold_back(seq, text)
            if stopped:
                return self._delta(seq, text, "stop")
        if not text:
            return None
        return self._delta(seq, text, None)

    def _finish(self, seq: _Sequence, reason: str, text: str = "") -> Delta:
        seq.decoder.reset()  # an unfinished UTF-8 character at the end is dropped, not mangled
        if seq.stops:
            text, stopped = self._hold_back(seq, text)
            if stopped:
                reason = "stop"
        text += seq.held
        seq.held = ""
        return self._delta(seq, text, reason)

    def _delta(self, seq: _Sequence, text: str, reason: str | None) -> Delta:
        return Delta(seq.request_id, text, reason, len(seq.prompt), seq.completion)

    @staticmethod
    def _hold_back(seq: _Sequence, text: str) -> tuple[str, bool]:
        """Split new text into what may be sent now and what must wait.

        Returns the sendable text and whether a stop string was found (then the text is
        everything before it, and generation ends). Text that ends with the beginning of
        a stop string is kept in ``seq.held`` until the next token decides it.
        """
        buf = seq.held + text
        cut = -1
        for stop in seq.stops:
            i = buf.find(stop)
            if i != -1 and (cut == -1 or i < cut):
                cut = i
        if cut != -1:
            seq.held = ""
            return buf[:cut], True
        keep = 0
        for stop in seq.stops:
            for k in range(min(len(stop) - 1, len(buf)), keep, -1):
                if buf.endswith(stop[:k]):
                    keep = k
                    break
        if keep:
            seq.held = buf[-keep:]
            return buf[:-keep], False
        seq.held = ""
        return buf, False

    def _tokenize(self, text: str) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 2
        buf = (llama_cpp.llama_token * capacity)()
        n = int(llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity, False, True))
        if n < 0:  # pragma: no cover - a token is never shorter than one byte
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = int(
                llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity, False, True)
            )
        tokens = list(buf[:n])
        if self._add_bos and (not tokens or tokens[0] != self._bos):
            tokens.insert(0, self._bos)
        return tokens

    def _piece(self, token: int) -> bytes:
        buf = self._piece_buf
        n = int(llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False))
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = int(llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False))
        piece = buf.raw[:n]
        self._pieces[token] = piece
        return piece

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        raw = llama_cpp.llama_vocab_get_text(self._vocab, token)
        return raw.decode("utf-8", "replace") if raw else ""

    def _meta(self, key: str) -> str | None:
        size = 4096
        while True:
            buf = ctypes.create_string_buffer(size)
            n = int(llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buf, size))
            if n < 0:
                return None
            if n < size:
                return buf.raw[:n].decode("utf-8", "replace")
            size = n + 1
