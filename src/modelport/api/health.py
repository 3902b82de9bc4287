"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

from starlette.routing import Route

from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_bytes, send_json
from modelport.api.services import services_of


async def live(scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, {"status": "live"})


async def ready(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    if services.readiness.ready:
        await send_json(
            send, {"status": "ready", "config_version": services.settings.config_version}
        )
    else:
        await send_json(send, {"status": "not ready"}, status=503)


async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    m = services.metrics
    m.ledger_pending.set(services.ledger.pending)
    m.ledger_lag.set(services.ledger.lag_s())
    access = services.access
    for principal in access.keyring.principals():
        if principal.budget is not None and not principal.revoked:
            m.key_budget.labels(principal.key_id).set(principal.budget.limit_usd)
            m.key_budget_spent.labels(principal.key_id).set(
                access.budgets.spent(principal.key_id, principal.budget))
    for route, target, queued, in_flight in services.routes.queued():
        m.queue_depth.labels(route, target).set(queued)
        m.target_in_flight.labels(route, target).set(in_flight)
    await send_bytes(send, 200, services.metrics.render(), services.metrics.content_type)


def routes() -> list[Route]:
    return [
        Route("/health/live", AsgiEndpoint(live), methods=["GET"]),
        Route("/health/ready", AsgiEndpoint(ready), methods=["GET"]),
        Route("/metrics", AsgiEndpoint(metrics), methods=["GET"]),
    ]
