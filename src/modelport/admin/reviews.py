"""``/admin/reviews``: the review queue for reviewers (the admin key, a dashboard session,
or a key with ``role: reviewer``, which may do nothing else).

``GET /admin/reviews?status=pending&route=R&limit=N`` lists items oldest first, each with
the request and the answer; ``POST /admin/reviews/{id}`` decides one: ``{"decision":
"approve", "answer": "edited text (optional)", "reason": "..."}`` or ``{"decision":
"reject", "reason": "..."}``. A second decision is 409 ``review_decided``.
"""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from starlette.routing import Route

from modelport.admin.guard import client_of, require_admin
from modelport.admin.keys import read_admin_json
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_json
from modelport.api.services import Services, services_of
from modelport.errors import NotFound, RequestError, ServiceUnavailable
from modelport.inference.reviews import ReviewQueue, review_view
from modelport.protocol.admin import DecisionSpec, parse

_STATUSES = ("pending", "approved", "rejected")


def _queue(services: Services) -> ReviewQueue:
    if services.reviews is None:
        raise ServiceUnavailable("Reviews need the store.")
    return services.reviews


async def list_reviews(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope, reviewers=True)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    status = query.get("status", [None])[-1]
    if status is not None and status not in _STATUSES:
        raise RequestError(f"status: one of {', '.join(_STATUSES)}", param="status")
    limit_text = query.get("limit", ["50"])[-1]
    if not limit_text.isdecimal() or not 1 <= int(limit_text) <= 500:
        raise RequestError("limit: a whole number from 1 to 500", param="limit")
    rows = await asyncio.to_thread(_queue(services).store.page, status=status,
                                   route=query.get("route", [None])[-1], limit=int(limit_text))
    await send_json(send, {"object": "list", "data": [review_view(r, full=True) for r in rows]})


async def get_review(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope, reviewers=True)
    review_id = scope["path_params"]["review_id"]
    row = await asyncio.to_thread(_queue(services).store.review, review_id)
    if row is None:
        raise NotFound(f"There is no review '{review_id}'.")
    await send_json(send, review_view(row, full=True))


async def decide(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    actor = require_admin(services, scope, reviewers=True)
    spec = parse(DecisionSpec, await read_admin_json(scope, receive))
    if spec.decision == "reject" and spec.answer is not None:
        raise RequestError("answer: only an approval carries an answer", param="answer")
    row = await _queue(services).decide(
        scope["path_params"]["review_id"], approve=spec.decision == "approve",
        text=spec.answer, reason=spec.reason, actor=actor, client=client_of(scope),
        routes=services.settings.routes)
    await send_json(send, review_view(row, full=True))


def routes() -> list[Route]:
    return [
        Route("/admin/reviews", AsgiEndpoint(list_reviews), methods=["GET"]),
        Route("/admin/reviews/{review_id}", AsgiEndpoint(get_review), methods=["GET"]),
        Route("/admin/reviews/{review_id}", AsgiEndpoint(decide), methods=["POST"]),
    ]
