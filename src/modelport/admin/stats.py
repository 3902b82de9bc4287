"""``/admin/stats``: requests, errors, latency percentiles and cost over time, from the ledger.

``since`` is one of three windows, each with its bucket width: ``1h`` (one-minute buckets),
``24h`` (15 minutes) and ``7d`` (one hour). The figures are read by ``store.stats``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from starlette.routing import Route

from modelport.admin.guard import require_admin
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_json
from modelport.api.services import services_of
from modelport.errors import RequestError
from modelport.store.stats import Figures, StatsStore

WINDOWS = {"1h": (3600, 60), "24h": (86_400, 900), "7d": (7 * 86_400, 3600)}


def figures_view(figures: Figures) -> dict[str, Any]:
    return {"requests": figures.requests, "errors": figures.errors,
            "error_rate": figures.error_rate, "p50_ms": figures.p50_ms,
            "p99_ms": figures.p99_ms, "cost_usd": figures.cost_usd}


def _window(scope: Scope) -> str:
    query: dict[str, list[str]] = parse_qs(scope.get("query_string", b"").decode("latin-1"),
                                           keep_blank_values=True)
    unknown = set(query) - {"since"}
    if unknown:
        raise RequestError(f"unknown query parameter(s): {', '.join(sorted(unknown))}; "
                           "known: since.")
    values = query.get("since", ["1h"])
    if len(values) != 1 or values[0] not in WINDOWS:
        raise RequestError(f"since must be one of: {', '.join(WINDOWS)}.", param="since")
    return values[0]


async def stats(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    window = _window(scope)
    span_s, bucket_s = WINDOWS[window]
    until = datetime.now(UTC)
    series = await asyncio.to_thread(StatsStore.sharing(services.requests).series,
                                     until - timedelta(seconds=span_s), until, bucket_s)
    await send_json(send, {
        "object": "stats", "window": window, "since": series.since.isoformat(),
        "until": series.until.isoformat(), "bucket_s": series.bucket_s,
        "truncated": series.truncated, "totals": figures_view(series.totals),
        "data": [{"start": b.start.isoformat(), **figures_view(b.figures)}
                 for b in series.buckets],
    })


def routes() -> list[Route]:
    return [Route("/admin/stats", AsgiEndpoint(stats), methods=["GET"])]
