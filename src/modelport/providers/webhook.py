"""Posting to a receiver Modelport calls back (a route's review webhook): the one HTTP client
call outside the providers' own, kept here with them."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp


async def deliver(url: str, body: bytes, headers: Mapping[str, str],
                  timeout_s: float = 10.0) -> str | None:
    """Post ``body``; None when the receiver took it (a 2xx), else what went wrong."""
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout_s)) as session, \
                session.post(url, data=body, headers=dict(headers)) as reply:
            return None if reply.status < 300 else f"status {reply.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__
