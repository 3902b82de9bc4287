"""``GET /v1/reviews/{id}``: what became of an answer held for review.

The key that made the request asks (another key's item is a 404, as if it did not exist;
in open mode anyone may): pending; approved, with the answer as the reviewer approved it
(edited or not) in the shape of the original answer; or rejected, with the reason.
"""

from __future__ import annotations

import asyncio

from starlette.routing import Route

from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.body import header
from modelport.api.responses import send_json
from modelport.api.services import services_of
from modelport.errors import NotFound, ServiceUnavailable
from modelport.inference.reviews import review_view


async def get_review(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    principal = services.access.authenticate(header(scope, b"authorization"))
    review_id = scope["path_params"]["review_id"]
    if services.reviews is None:
        raise ServiceUnavailable("Reviews need the store.")
    row = await asyncio.to_thread(services.reviews.store.review, review_id)
    if row is None or (principal is not None and row.key_id != principal.key_id):
        raise NotFound(f"There is no review '{review_id}'.")
    await send_json(send, review_view(row))


def routes() -> list[Route]:
    return [Route("/v1/reviews/{review_id}", AsgiEndpoint(get_review), methods=["GET"])]
