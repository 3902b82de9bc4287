"""Local providers: models hosted by Modelport, behind the same seam as remote APIs.

``LlamaCppProvider`` runs a GGUF model in a worker process and answers chat and completion
requests, whole or streamed; ``EmbeddingsProvider`` runs a sentence-embedding model and
joins the texts of concurrent requests into one batch. Both speak OpenAI's shapes, so
routes, keys, limits, retries, fallbacks, metrics and the ledger treat them like any other
provider. A request the model cannot take (a prompt longer than its context, a bad
parameter) is a 400 reply, which a route may answer by falling back to a larger model.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson

from modelport.config.settings import LocalModelSettings, ProviderSettings
from modelport.core.operation import Operation
from modelport.errors import MalformedBody, RequestError, UnsupportedOperation
from modelport.observability.metrics import Metrics
from modelport.protocol.openai.errors import error_body
from modelport.protocol.openai.replies import (
    ChunkWriter,
    completion_body,
    embedding_inputs,
    embeddings_body,
    generation_params,
)
from modelport.providers.base import UpstreamReply
from modelport.runtimes import embeddings_worker, llama_worker
from modelport.runtimes.batcher import Batcher
from modelport.runtimes.workers import Worker


def _parse(body: bytes) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody("The request body is not valid JSON.") from exc
    if not isinstance(parsed, dict):
        raise MalformedBody("The request body must be a JSON object.")
    return parsed


def _client_error(exc: RequestError) -> UpstreamReply:
    return UpstreamReply(exc.status, error_body(exc))


class LocalProvider:
    def __init__(self, settings: ProviderSettings, metrics: Metrics, worker: Worker) -> None:
        self.name = settings.name
        self.worker = worker
        self._metrics = metrics

    @property
    def state(self) -> str:
        """``starting`` (loading or restarting), ``ready``, ``failed`` or ``stopped``."""
        return self.worker.state

    async def start(self) -> None:
        """Load the model; one that fails stays unavailable and the server runs on."""
        await self.worker.start()
        self._metrics.runtime_ready.labels(self.name).set(1 if self.worker.state == "ready"
                                                          else 0)

    async def close(self) -> None:
        await self.worker.close()


def _worker(settings: ProviderSettings, entry: Any, spec: Any, metrics: Metrics) -> Worker:
    local = settings.local
    assert local is not None
    ready = metrics.runtime_ready.labels(settings.name)
    return Worker(settings.name, entry, spec, start_timeout_s=local.start_timeout_s,
                  on_restart=metrics.runtime_restarts.labels(settings.name).inc,
                  on_state=lambda s: ready.set(1 if s == "ready" else 0))


class LlamaCppProvider(LocalProvider):
    def __init__(self, settings: ProviderSettings, metrics: Metrics) -> None:
        local: LocalModelSettings = settings.local  # type: ignore[assignment]
        spec = llama_worker.LlamaWorkerSpec(
            model_path=local.model_path, model_package=local.model_package,
            n_ctx=local.n_ctx, threads=local.threads, parallel=local.parallel,
            n_batch=local.n_batch, chat_template=local.chat_template,
            temperature=local.temperature,
        )
        super().__init__(settings, metrics, _worker(settings, llama_worker.serve, spec, metrics))

    def _request(self, operation: Operation, body: bytes) -> tuple[dict[str, Any], str]:
        parsed = _parse(body)
        return generation_params(operation, parsed), str(parsed.get("model", self.name))

    async def send(self, operation: Operation, body: bytes, *,
                   idempotency_key: str | None = None) -> UpstreamReply:
        try:
            params, model = self._request(operation, body)
            parts: list[str] = []
            final: dict[str, Any] = {}
            async for item in self.worker.stream("generate", params):
                if isinstance(item, str):
                    parts.append(item)
                else:
                    final = item
        except RequestError as exc:
            return _client_error(exc)
        return UpstreamReply(200, completion_body(
            operation, secrets.token_hex(12), model, "".join(parts), final["finish_reason"],
            final["prompt_tokens"], final["completion_tokens"]))

    async def open_stream(self, operation: Operation, body: bytes
                          ) -> _TextStream | UpstreamReply:
        try:
            params, model = self._request(operation, body)
        except RequestError as exc:
            return _client_error(exc)
        parsed_usage = _wants_usage(body)
        items = self.worker.stream("generate", params)
        try:
            first = await anext(items)  # an error before the first token is a reply
        except RequestError as exc:
            return _client_error(exc)
        except StopAsyncIteration:
            first = None
        writer = ChunkWriter(operation, secrets.token_hex(12), model)
        return _TextStream(items, first, writer, parsed_usage)


def _wants_usage(body: bytes) -> bool:
    options = _parse(body).get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class _TextStream:
    """A local model's tokens as OpenAI stream events."""

    def __init__(self, items: AsyncIterator[Any], first: Any, writer: ChunkWriter,
                 include_usage: bool) -> None:
        self._items = items
        self._first = first
        self._writer = writer
        self._include_usage = include_usage

    async def chunks(self) -> AsyncIterator[bytes]:
        item = self._first
        while item is not None:
            if isinstance(item, str):
                yield self._writer.delta(item)
            else:
                yield self._writer.delta("", item["finish_reason"])
                if self._include_usage:
                    yield self._writer.usage(item["prompt_tokens"], item["completion_tokens"])
                yield self._writer.done
                return
            item = await anext(self._items, None)

    async def aclose(self) -> None:
        await self._items.aclose()  # type: ignore[attr-defined]


class EmbeddingsProvider(LocalProvider):
    def __init__(self, settings: ProviderSettings, metrics: Metrics) -> None:
        local: LocalModelSettings = settings.local  # type: ignore[assignment]
        spec = embeddings_worker.EmbeddingsWorkerSpec(
            model_path=local.model_path, model_package=local.model_package,
            threads=local.threads, engine=local.engine)
        super().__init__(settings, metrics,
                         _worker(settings, embeddings_worker.serve, spec, metrics))
        self._max_inputs = local.max_inputs
        self._batcher = Batcher(
            self._run, max_batch_size=local.max_batch_size,
            max_delay_s=local.max_batch_delay_s, max_queue=10_000, queue_timeout_s=60.0,
            on_batch=metrics.runtime_batch_size.labels(settings.name).observe,
        )

    async def _run(self, inputs: dict[str, np.ndarray], names: list[str] | None
                   ) -> dict[str, np.ndarray]:
        vectors, counts = await self.worker.call("embed", inputs["text"].tolist())
        return {"vectors": vectors, "tokens": np.asarray(counts, dtype=np.int64)}

    async def close(self) -> None:
        await self._batcher.close()
        await super().close()

    async def send(self, operation: Operation, body: bytes, *,
                   idempotency_key: str | None = None) -> UpstreamReply:
        if operation is not Operation.EMBEDDING:
            return _client_error(UnsupportedOperation("This model serves embeddings only."))
        try:
            parsed = _parse(body)
            texts = embedding_inputs(parsed, self._max_inputs)
        except RequestError as exc:
            return _client_error(exc)
        batch = np.empty(len(texts), dtype=object)
        batch[:] = texts
        result = await self._batcher.submit({"text": batch}, None)
        return UpstreamReply(200, embeddings_body(
            str(parsed.get("model", self.name)), result["vectors"],
            int(result["tokens"].sum()), str(parsed.get("encoding_format", "float"))))

    async def open_stream(self, operation: Operation, body: bytes) -> UpstreamReply:
        return _client_error(UnsupportedOperation("Embeddings cannot be streamed."))
