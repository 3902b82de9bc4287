"""The HTTP client every remote provider uses, and the one boundary where its errors enter.

aiohttp is used for its speed under concurrency; its exceptions are translated here, and
only here, into ``modelport.errors.UpstreamError`` subclasses. Messages name the provider,
never its URL credentials or key.
"""

from __future__ import annotations

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


# What the HTTP client raises: caught around each call upstream (``except CLIENT_ERRORS``,
# which costs nothing while nothing is raised) and turned into Modelport's upstream errors
# by ``upstream_error``.
CLIENT_ERRORS = (TimeoutError, aiohttp.ClientError, OSError)


def upstream_error(provider: str, exc: BaseException) -> UpstreamError:
    """The upstream error an HTTP client exception (one of ``CLIENT_ERRORS``) stands for."""
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"Provider '{provider}' did not answer in time.")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamBadResponse(f"Provider '{provider}' sent a broken response body.")
    if isinstance(exc, (aiohttp.ClientConnectionError, OSError)):
        return UpstreamUnreachable(
            f"Provider '{provider}' is unreachable ({type(exc).__name__}).")
    return UpstreamError(f"Provider '{provider}' failed ({type(exc).__name__}).")
