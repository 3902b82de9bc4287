"""The HTTP client every remote provider uses, and the one boundary where its errors enter.

aiohttp is used for its speed under concurrency; its exceptions are translated here, and
only here, into ``modelport.errors.UpstreamError`` subclasses. Messages name the provider,
never its URL credentials or key.
"""

from __future__ import annotations

from types import TracebackType

import aiohttp

from modelport import __version__
from modelport.config.settings import ProviderSettings
from modelport.errors import (
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

# Sent by every provider unless its config sets its own; naming Modelport rather than the
# HTTP library lets an upstream's logs tell gateway traffic apart, and costs less per request
# than aiohttp's skip_auto_headers.
USER_AGENT = f"modelport/{__version__}"


def new_session(settings: ProviderSettings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=settings.max_connections,
        keepalive_timeout=30,
        ttl_dns_cache=300,
    )
    timeout = aiohttp.ClientTimeout(
        total=settings.timeout_s, sock_connect=settings.connect_timeout_s
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=True,
        raise_for_status=False,
    )


class translate_errors:  # lower case: it reads as the function it replaced, in a with
    """``with translate_errors(provider):`` turns the HTTP client's exceptions into
    Modelport's upstream errors. A class, not a generator: entered on every call upstream,
    it costs no generator and no frame when nothing is raised."""

    __slots__ = ("_provider",)

    def __init__(self, provider: str) -> None:
        self._provider = provider

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None:
            translated = self._translated(exc)
            if translated is not None:
                raise translated from exc

    def _translated(self, exc: BaseException) -> UpstreamError | None:
        provider = self._provider
        if isinstance(exc, TimeoutError):
            return UpstreamTimeout(f"Provider '{provider}' did not answer in time.")
        if isinstance(exc, aiohttp.ClientPayloadError):
            return UpstreamBadResponse(f"Provider '{provider}' sent a broken response body.")
        if isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
            return UpstreamUnreachable(
                f"Provider '{provider}' is unreachable ({type(exc).__name__}).")
        if isinstance(exc, aiohttp.ClientError):
            return UpstreamError(f"Provider '{provider}' failed ({type(exc).__name__}).")
        return None
