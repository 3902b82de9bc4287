"""Any OpenAI-compatible API: OpenAI, vLLM, llama.cpp's server, Ollama, TGI, and the like.

Bodies are sent as the caller prepared them; replies are passed back as bytes. Statuses
are classified here: 401/403 mean Modelport's own credential was refused (never shown to
the client), 429 and 5xx are upstream failures, other 4xx are the client's to see. With
tracing on, each request carries the W3C ``traceparent`` of the attempt that makes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson

from modelport.config.settings import ProviderSettings
from modelport.core.operation import Operation
from modelport.errors import (
    UpstreamAuthFailed,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamServerError,
)
from modelport.observability.tracing import Tracing
from modelport.providers._http import CLIENT_ERRORS, USER_AGENT, new_session, upstream_error
from modelport.providers.base import UpstreamReply
from modelport.providers.redaction import Redactor

_PATHS = {
    Operation.CHAT: "/chat/completions",
    Operation.COMPLETION: "/completions",
    Operation.EMBEDDING: "/embeddings",
}
_READ_CHUNK = 64 * 1024


class OpenAIProvider:
    def __init__(self, settings: ProviderSettings) -> None:
        self.name = settings.name
        self._settings = settings
        self._urls = {op: settings.base_url + path for op, path in _PATHS.items()}
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                   **settings.headers}
        secret = settings.api_key.reveal() if settings.api_key else None
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        self._redactor = Redactor([secret] if secret else [])
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None
        self._tracing: Tracing | None = None

    def propagate_traces(self, tracing: Tracing) -> None:
        """Pass the current span (the attempt's) on to the provider in ``traceparent``."""
        self._tracing = tracing

    def _traced_headers(self, tracing: Tracing) -> dict[str, str]:
        headers = dict(self._headers)
        tracing.inject(headers)
        return headers

    async def start(self) -> None:
        self._session = new_session(self._settings)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _not_started(self) -> UpstreamError:
        return UpstreamError(f"Provider '{self.name}' is not started.")

    async def send(self, operation: Operation, body: bytes, *,
                   idempotency_key: str | None = None) -> UpstreamReply:
        tracing = self._tracing
        headers = self._headers if tracing is None else self._traced_headers(tracing)
        if idempotency_key is not None:
            headers = {**headers, "Idempotency-Key": idempotency_key}
        session = self._session
        if session is None:
            raise self._not_started()
        try:
            async with session.post(self._urls[operation], data=body, headers=headers) as resp:
                payload = await resp.read()
                status = resp.status
        except CLIENT_ERRORS as exc:
            raise upstream_error(self.name, exc) from exc
        if 200 <= status < 300:
            # a success must be a JSON object: it is passed back as JSON
            try:
                document = orjson.loads(payload)
            except orjson.JSONDecodeError:
                document = None
            if type(document) is not dict:
                raise UpstreamBadResponse(
                    f"Provider '{self.name}' answered HTTP {status} with a body that is not "
                    "a JSON object.")
            return UpstreamReply(status, payload, "application/json", document)
        return self._client_error(status, payload, resp.headers.get("Retry-After"))

    async def open_stream(
        self, operation: Operation, body: bytes
    ) -> _OpenAIStream | UpstreamReply:
        tracing = self._tracing
        headers = self._headers if tracing is None else self._traced_headers(tracing)
        session = self._session
        if session is None:
            raise self._not_started()
        try:
            resp = await session.post(self._urls[operation], data=body, headers=headers)
            if 200 <= resp.status < 300:
                return _OpenAIStream(self.name, resp)
            try:
                payload = await resp.read()
            finally:
                resp.release()
        except CLIENT_ERRORS as exc:
            raise upstream_error(self.name, exc) from exc
        return self._client_error(resp.status, payload, resp.headers.get("Retry-After"))

    def _client_error(
        self, status: int, payload: bytes, retry_after: str | None = None
    ) -> UpstreamReply:
        """Classify a non-2xx answer: raise for upstream failures, pass client errors back."""
        if status in (401, 403):
            raise UpstreamAuthFailed(
                f"Provider '{self.name}' refused Modelport's credentials (HTTP {status})."
            )
        if status == 429:
            raise UpstreamRateLimited(f"Provider '{self.name}' is rate limiting (HTTP 429).",
                                      retry_after_s=_seconds(retry_after))
        if status >= 500 or status < 400:
            raise UpstreamServerError(f"Provider '{self.name}' failed with HTTP {status}.")
        return UpstreamReply(status, self._redactor.error_body(payload, status))


class _OpenAIStream:
    __slots__ = ("_provider", "_resp")

    def __init__(self, provider: str, resp: aiohttp.ClientResponse) -> None:
        self._provider = provider
        self._resp = resp

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except CLIENT_ERRORS as exc:
            raise upstream_error(self._provider, exc) from exc

    async def aclose(self) -> None:
        self._resp.close()


def _seconds(value: str | None) -> float | None:
    """A Retry-After given in seconds (the HTTP-date form is rare from model APIs)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
