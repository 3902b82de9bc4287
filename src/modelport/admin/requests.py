"""``/admin/requests``: the request ledger, one request or pages of them, and
``/admin/feedback``: what users thought of the answers, per route and model version."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from starlette.routing import Route

from modelport.admin.guard import require_admin
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_json
from modelport.api.services import services_of
from modelport.errors import NotFound, RequestError
from modelport.protocol.admin import parse_status, parse_time
from modelport.store.requests import RequestFilter

_PARAMS = {"route", "key", "batch", "status", "since", "until", "limit", "cursor"}


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if values is None:
        return None
    if len(values) != 1 or not values[0]:
        raise RequestError(f"{name} must be given once, with a value.", param=name)
    return values[0]


def _int(value: str | None, name: str, default: int | None) -> int | None:
    if value is None:
        return default
    if not value.isdecimal():
        raise RequestError(f"{name} must be a non-negative integer.", param=name)
    return int(value)


def request_filter(query: dict[str, list[str]]) -> RequestFilter:
    unknown = set(query) - _PARAMS
    if unknown:
        raise RequestError(f"unknown query parameter(s): {', '.join(sorted(unknown))}; "
                           f"known: {', '.join(sorted(_PARAMS))}.")
    status_text = _one(query, "status")
    status, status_class = (parse_status(status_text, "status") if status_text is not None
                            else (None, None))
    since, until = _one(query, "since"), _one(query, "until")
    return RequestFilter(
        route=_one(query, "route"), key_id=_one(query, "key"),
        batch_id=_one(query, "batch"), status=status,
        status_class=status_class,
        since=parse_time(since, "since") if since is not None else None,
        until=parse_time(until, "until") if until is not None else None,
    )


async def list_requests(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    where = request_filter(query)
    limit = _int(_one(query, "limit"), "limit", 50) or 50
    cursor = _int(_one(query, "cursor"), "cursor", None)
    rows, after = await asyncio.to_thread(services.requests.page, where, limit, cursor)
    await send_json(send, {"object": "list", "data": rows,
                           "next_cursor": str(after) if after is not None else None})


async def get_request(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    request_id = scope["path_params"]["request_id"]
    found = await asyncio.to_thread(services.requests.get, request_id)
    if found is None:
        raise NotFound(f"There is no request '{request_id}' in the ledger (it is written "
                       "within a second of the answer).")
    await send_json(send, found)


async def feedback_summary(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    since_text = _one(query, "since")
    since = (parse_time(since_text, "since") if since_text is not None
             else datetime.now(UTC) - timedelta(days=7))
    rows = await asyncio.to_thread(services.requests.feedback_summary, since)
    await send_json(send, {"object": "list", "since": since.isoformat(), "data": rows})


def routes() -> list[Route]:
    return [
        Route("/admin/requests", AsgiEndpoint(list_requests), methods=["GET"]),
        Route("/admin/requests/{request_id}", AsgiEndpoint(get_request), methods=["GET"]),
        Route("/admin/feedback", AsgiEndpoint(feedback_summary), methods=["GET"]),
    ]
