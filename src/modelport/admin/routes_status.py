"""``/admin/routes``: each route and its targets as they stand now.

Live state comes from this server's route table: each target's circuit breaker, requests in
flight and waiting in its queue (the same numbers ``/metrics`` exports). Latency percentiles
and error rates come from the ledger's last hour (``store.stats``), so with several replicas
they cover all of them, while the live state is this replica's own.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.routing import Route

from modelport.admin.guard import client_of, require_admin
from modelport.admin.keys import read_admin_json
from modelport.admin.stats import figures_view
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_json
from modelport.api.services import services_of
from modelport.errors import ServiceUnavailable
from modelport.protocol.admin import CanarySpec, parse
from modelport.routing.canary import Canary, WindowFigures
from modelport.routing.table import Route as ServedRoute
from modelport.routing.table import Target
from modelport.store.shadows import ShadowStore
from modelport.store.stats import Figures, StatsStore, TargetFigures

WINDOW = timedelta(hours=1)
_NONE = Figures()


def target_view(route: str, target: Target, ledger: TargetFigures) -> dict[str, Any]:
    t = target.settings
    breaker = target.breaker
    return {
        "target": target.label, "provider": t.provider, "model": t.model,
        "model_version": t.model_version, "weight": t.weight,
        "breaker": breaker.state,
        "retry_in_s": round(breaker.seconds_until_retry(), 3) if breaker.state == "open"
        else None,
        "in_flight": target.gate.in_flight, "queued": target.gate.queued,
        "max_concurrency": t.max_concurrency, "max_queue": t.max_queue,
        **figures_view(ledger.figures.get((route, target.label), _NONE)),
    }


def canary_view(canary: Canary) -> dict[str, Any]:
    """The canary's state and, over its window on this server, its figures beside the
    stable targets'."""
    mine, stable = canary.figures()
    s = canary.settings

    def side(f: WindowFigures) -> dict[str, Any]:
        return {"requests": f.requests, "errors": f.errors, "error_rate": f.error_rate,
                "p95_ms": f.p95_ms}

    return {"target": canary.target, "state": canary.state, "reason": canary.reason,
            "percent": s.percent, "sticky": s.sticky, "window_s": s.window_s,
            "slo": {"max_error_rate": s.max_error_rate, "max_p95_ms": s.max_p95_ms,
                    "min_requests": s.min_requests},
            "canary": side(mine), "stable": side(stable)}


def route_view(route: ServedRoute, ledger: TargetFigures) -> dict[str, Any]:
    s = route.settings
    return {
        "route": s.name, "description": s.description, "owner": s.owner,
        "environment": s.environment, "strategy": s.strategy,
        **figures_view(ledger.figures.get((s.name, None), _NONE)),
        "targets": [target_view(s.name, t, ledger) for t in route.targets],
        "canary": None if route.canary is None else canary_view(route.canary),
        "shadow": None if s.shadow is None else {
            "target": s.shadow.target.label, "percent": s.shadow.percent,
            "budget_usd": s.shadow.budget_usd, "budget_period": s.shadow.budget_period},
    }


async def routes_status(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    since = datetime.now(UTC) - WINDOW
    ledger = await asyncio.to_thread(StatsStore.sharing(services.requests).by_target, since)
    await send_json(send, {
        "object": "list", "since": since.isoformat(), "truncated": ledger.truncated,
        "data": [route_view(r, ledger) for r in services.routes],
    })


async def shadow_comparison(scope: Scope, receive: Receive, send: Send) -> None:
    """``GET /admin/routes/{route}/shadow``: the route's shadow calls over the last day
    against the answers they copied (all servers: from the ledger)."""
    services = services_of(scope)
    require_admin(services, scope)
    route = services.routes.get(scope["path_params"]["route"])
    since = datetime.now(UTC) - timedelta(days=1)
    found = await asyncio.to_thread(ShadowStore.sharing(services.requests).compare,
                                    route.name, since)
    shadow = route.settings.shadow
    await send_json(send, {
        "object": "shadow_comparison", "route": route.name, "since": since.isoformat(),
        "target": shadow.target.label if shadow is not None else found.target,
        "percent": shadow.percent if shadow is not None else None,
        "shadows": found.shadows, "errors": found.errors, "matches": found.matches,
        "differs": found.differs, "match_rate": found.match_rate,
        "shadow": {"p50_ms": found.shadow_p50_ms, "p95_ms": found.shadow_p95_ms,
                   "cost_usd": found.shadow_cost_usd},
        "served": {"p50_ms": found.served_p50_ms, "p95_ms": found.served_p95_ms,
                   "cost_usd": found.served_cost_usd},
        "truncated": found.truncated,
    })


async def canary_action(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /admin/routes/{route}/canary`` ``{"action": "promote"|"abort"|"resume",
    "reason"}``: applied here at once, stored and audited for the other servers."""
    services = services_of(scope)
    actor = require_admin(services, scope)
    spec = parse(CanarySpec, await read_admin_json(scope, receive))
    if services.canaries is None:
        raise ServiceUnavailable("Canaries need the store.")
    canary = await services.canaries.act(scope["path_params"]["route"], spec.action,
                                         spec.reason, actor, client_of(scope))
    await send_json(send, canary_view(canary))


def routes() -> list[Route]:
    return [Route("/admin/routes", AsgiEndpoint(routes_status), methods=["GET"]),
            Route("/admin/routes/{route}/canary", AsgiEndpoint(canary_action),
                  methods=["POST"]),
            Route("/admin/routes/{route}/shadow", AsgiEndpoint(shadow_comparison),
                  methods=["GET"])]
