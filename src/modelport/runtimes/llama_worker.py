"""The worker process of a GGUF model: requests in, text deltas out, many sequences at once.

Between decode steps the worker takes in every message that has arrived (new requests,
cancellations), so a request that comes while others are decoding joins the next step's
batch instead of waiting for them to finish. When nothing is running it blocks on the pipe.

A ``generate`` request carries either ``messages`` (rendered in the model's chat format, see
``runtimes.chat_formats``, whose stop strings join the request's) or ``prompt``. A request
that names no temperature gets the provider's. Its parts are text; its reply is
``{"finish_reason", "prompt_tokens", "completion_tokens"}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelport.runtimes.chat_formats import ChatFormat, chat_format, render_chat
from modelport.runtimes.llama_engine import (
    GenerationParams,
    LlamaDecodeError,
    LlamaEngine,
    PromptTooLong,
)
from modelport.runtimes.packages import model_file
from modelport.runtimes.workers import INTERNAL, ChildChannel, child_error


@dataclass(frozen=True, slots=True)
class LlamaWorkerSpec:
    model_path: str | None
    model_package: str | None
    n_ctx: int
    threads: int
    parallel: int
    n_batch: int
    chat_template: str | None
    temperature: float = 1.0  # for requests that name none


def serve(channel: ChildChannel, spec: LlamaWorkerSpec) -> None:
    """The child's entry point."""
    engine = LlamaEngine(
        model_file(spec.model_path, spec.model_package),
        n_ctx=spec.n_ctx, threads=spec.threads, parallel=spec.parallel, n_batch=spec.n_batch,
    )
    chat = chat_format(spec.chat_template, engine.chat_template())
    bos, eos = engine.special_tokens()
    channel.ready({"n_ctx": engine.n_ctx, "parallel": engine.parallel, "chat": True})
    try:
        while True:
            message = channel.recv(0 if engine.busy() else None)
            while message is not None:
                _handle(channel, engine, spec, chat, (bos, eos), message)
                message = channel.recv(0)
            if channel.closed:
                return
            if engine.busy():
                try:
                    deltas = engine.step()
                except LlamaDecodeError as exc:  # those sequences are dropped, others go on
                    for request_id in exc.request_ids:
                        engine.cancel(request_id)
                        channel.error(request_id, "runtime_error", str(exc))
                    continue
                for delta in deltas:
                    if delta.text:
                        channel.part(delta.request_id, delta.text)
                    if delta.finish_reason is not None:
                        channel.reply(delta.request_id, {
                            "finish_reason": delta.finish_reason,
                            "prompt_tokens": delta.prompt_tokens,
                            "completion_tokens": delta.completion_tokens,
                        })
    finally:
        engine.close()


def _handle(channel: ChildChannel, engine: LlamaEngine, spec: LlamaWorkerSpec,
            chat: ChatFormat, special: tuple[str, str], message: tuple[int, str, Any]) -> None:
    request_id, op, payload = message
    if op == "cancel":
        engine.cancel(request_id)
        return
    if op != "generate":
        channel.error(request_id, INTERNAL, f"unknown operation {op!r}")
        return
    try:
        stop = tuple(payload.get("stop", ()))
        if "messages" in payload:
            prompt = _prompt(payload["messages"], chat, special)
            stop += tuple(s for s in chat.stop if s not in stop)
        else:
            prompt = str(payload["prompt"])
        engine.submit(request_id, GenerationParams(
            prompt=prompt,
            max_tokens=payload.get("max_tokens"),
            temperature=payload.get("temperature", spec.temperature),
            top_p=payload.get("top_p", 1.0),
            seed=payload.get("seed"),
            stop=stop,
        ))
    except PromptTooLong as exc:
        channel.error(request_id, "context_length_exceeded", str(exc))
    except Exception as exc:  # InputRejected is the caller's; anything else Modelport's bug
        channel.error(request_id, *child_error(exc))


def _prompt(messages: list[dict[str, Any]], chat: ChatFormat, special: tuple[str, str]) -> str:
    text = render_chat(chat.template, messages, bos_token=special[0], eos_token=special[1])
    # The engine adds the BOS token itself; a template that writes it too would double it.
    return text[len(special[0]):] if special[0] and text.startswith(special[0]) else text
