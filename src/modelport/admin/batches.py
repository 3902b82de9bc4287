"""``GET /admin/batches``: every key's batches, newest first, with their progress (the
dashboard's Batches panel). Each key sees its own over ``/v1/batches``."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs

from starlette.routing import Route

from modelport.admin.guard import require_admin
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_json
from modelport.api.services import services_of
from modelport.batch.output import batch_object
from modelport.errors import RequestError, ServiceUnavailable


async def list_batches(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    if services.batches is None:
        raise ServiceUnavailable("Batches are not available on this server.")
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    limit_text = query.get("limit", ["50"])[-1]
    if not limit_text.isdecimal() or not 1 <= int(limit_text) <= 500:
        raise RequestError("limit: a whole number from 1 to 500", param="limit")
    rows = await asyncio.to_thread(services.batches.store.batches, None,
                                   limit=int(limit_text), everyone=True)
    await send_json(send, {"object": "list", "data": [
        {**batch_object(r), "key_id": r.key_id} for r in rows]})


def routes() -> list[Route]:
    return [Route("/admin/batches", AsgiEndpoint(list_batches), methods=["GET"])]
