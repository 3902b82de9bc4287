"""``/admin/usage``: requests, tokens and cost per key or route for the current period."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from urllib.parse import parse_qs

from starlette.routing import Route

from modelport.admin.guard import client_of, require_admin
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_json
from modelport.api.services import services_of
from modelport.errors import RequestError
from modelport.policy.budgets import period_start


def _choice(query: dict[str, list[str]], name: str, allowed: tuple[str, ...]) -> str:
    values = query.get(name, [allowed[0]])
    if len(values) != 1 or values[0] not in allowed:
        raise RequestError(f"{name} must be one of: {', '.join(allowed)}.", param=name)
    return values[0]


async def usage_report(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    actor = require_admin(services, scope)
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    by = _choice(query, "by", ("key", "route"))
    period = _choice(query, "period", ("month", "day"))
    since = datetime.fromtimestamp(period_start(period, datetime.now(UTC).timestamp()), UTC)  # type: ignore[arg-type]
    await asyncio.to_thread(services.keys.audit, actor, "usage.read",
                            None, {"by": by, "period": period}, client_of(scope))
    rows = await asyncio.to_thread(services.usage.report, by, since, None)  # type: ignore[arg-type]
    await send_json(send, {
        "object": "list", "by": by, "period": period, "since": since.isoformat(),
        "data": [{by: r.group, "requests": r.requests, "prompt_tokens": r.prompt_tokens,
                  "completion_tokens": r.completion_tokens, "cost_usd": r.cost_usd}
                 for r in rows],
    })


def routes() -> list[Route]:
    return [Route("/admin/usage", AsgiEndpoint(usage_report), methods=["GET"])]
