"""``POST /v1/feedback``: a user's verdict on one answer, attached to its request.

The key that sends feedback must be the key that made the request (another key's request
is a 404, as if it did not exist); in open mode anyone may. The request is found among the
recent ones in memory first, so feedback sent right after an answer does not wait for the
ledger, then in the ledger. Each verdict counts in ``modelport_feedback_total`` by route,
model version and outcome: edited plus rejected over all is the correction rate. The
correction and the comment are masked like captured bodies (secrets, keys, e-mail addresses,
card and phone numbers) before they are stored.
"""

from __future__ import annotations

import asyncio

from starlette.routing import Route

from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.body import header, read_body
from modelport.api.middleware import CTX_KEY
from modelport.api.responses import send_json
from modelport.api.services import services_of
from modelport.errors import NotFound
from modelport.observability.metrics import UNKNOWN
from modelport.protocol.admin import FeedbackSpec, parse
from modelport.protocol.openai.request import parse_body
from modelport.store.requests import Feedback

_BODY_LIMIT = 128 * 1024


async def send_feedback(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    principal = services.access.authenticate(header(scope, b"authorization"))
    if principal is not None:
        scope[CTX_KEY].key_id = principal.key_id
    spec = parse(FeedbackSpec, parse_body(await read_body(scope, receive, _BODY_LIMIT)))
    answered = services.recorder.answered(spec.request_id)
    if answered is not None:
        key_id, route, version = answered
    else:
        found = await asyncio.to_thread(services.requests.answered, spec.request_id)
        if found is None:
            raise NotFound(f"There is no request '{spec.request_id}' to give feedback on.")
        key_id, route, version = found
    if principal is not None and key_id != principal.key_id:
        raise NotFound(f"There is no request '{spec.request_id}' to give feedback on.")
    mask = services.masker.text
    await asyncio.to_thread(services.requests.add_feedback, Feedback(
        request_id=spec.request_id, key_id=key_id, route=route, model_version=version,
        outcome=spec.outcome, score=spec.score,
        correction=None if spec.correction is None else mask(spec.correction),
        comment=None if spec.comment is None else mask(spec.comment),
    ))
    services.metrics.feedback.labels(route or UNKNOWN, version or UNKNOWN, spec.outcome).inc()
    await send_json(send, {"object": "feedback", "request_id": spec.request_id,
                           "outcome": spec.outcome, "route": route,
                           "model_version": version}, status=201)


def routes() -> list[Route]:
    return [Route("/v1/feedback", AsgiEndpoint(send_feedback), methods=["POST"])]
