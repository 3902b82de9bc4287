"""``POST /v1/tokens``: mint a short-lived browser token from a normal key.

The token is restricted to one route the parent key may call, with limits no higher than the
parent's (low ones by default), lives at most an hour, and dies with its parent key.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.routing import Route

from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.body import header, read_body
from modelport.api.middleware import CTX_KEY
from modelport.api.responses import send_json
from modelport.api.services import services_of
from modelport.errors import Forbidden, RequestError
from modelport.policy.limits import Limits
from modelport.policy.secrets import TOKEN_PREFIX
from modelport.policy.tokens import narrower
from modelport.protocol.admin import TokenSpec, parse
from modelport.protocol.openai.request import parse_body

_BODY_LIMIT = 16 * 1024


async def mint_token(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    access = services.access
    principal = access.authenticate(header(scope, b"authorization"))
    if principal is None:
        raise RequestError("Browser tokens need keys: configure an admin key first.")
    if (access.bearer(header(scope, b"authorization")) or "").startswith(TOKEN_PREFIX):
        raise Forbidden("A browser token cannot mint other tokens.")
    scope[CTX_KEY].key_id = principal.key_id
    spec = parse(TokenSpec, parse_body(await read_body(scope, receive, _BODY_LIMIT)))
    route = services.routes.get(spec.route)
    access.authorize(principal, route.settings)
    limits = narrower(Limits(spec.rpm, spec.tpm, spec.max_concurrency), principal.limits)
    now = time.time()
    ttl = spec.ttl_s
    if principal.expires_at is not None:
        ttl = min(ttl, int(principal.expires_at - now))
        if ttl <= 0:
            raise Forbidden("This key expires too soon to mint a token.")
    token, expires_at = access.signer.mint(principal.key_id, route.name, ttl, limits, now)
    await send_json(send, {
        "object": "token", "token": token, "route": route.name,
        "expires_at": datetime.fromtimestamp(expires_at, UTC).isoformat(),
        "rpm": limits.rpm, "tpm": limits.tpm, "max_concurrency": limits.max_concurrency,
    }, status=201)


def routes() -> list[Route]:
    return [Route("/v1/tokens", AsgiEndpoint(mint_token), methods=["POST"])]
