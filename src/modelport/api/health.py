"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

import contextlib

from starlette.routing import Route

from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.body import header
from modelport.api.responses import send_bytes, send_json
from modelport.api.services import services_of
from modelport.errors import AuthError, ServiceUnavailable
from modelport.providers.base import HostedRuntime
from modelport.routing.canary import STATES

CANARY_STATES = {state: i for i, state in enumerate(STATES)}


async def live(scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, {"status": "live"})


async def ready(scope: Scope, receive: Receive, send: Send) -> None:
    """200 once every local model has finished loading; each one's state either way."""
    services = services_of(scope)
    runtimes = {name: p.state for name, p in services.providers.items()
                if isinstance(p, HostedRuntime)}
    if services.tensors is not None:
        runtimes.update({f"v2/{name}": state for name, state in services.tensors.states().items()})
    keys_read = (not services.settings.auth_required or services.key_sync is None
                 or services.key_sync.synced)
    ready = services.readiness.ready and keys_read
    body: dict[str, object] = {
        "status": "ready" if ready else "loading" if keys_read else "waiting for the store"}
    if ready:
        body["config_version"] = services.settings.config_version
    if not keys_read:
        body["store"] = "keys not read yet: the store does not answer"
    if runtimes:
        body["runtimes"] = runtimes
    await send_json(send, body, status=200 if ready else 503)


async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    if not services.access.may_scrape(header(scope, b"authorization")):
        raise AuthError("/metrics needs the admin key or the metrics token (metrics_token).")
    m = services.metrics
    m.ledger_pending.set(services.ledger.pending)
    m.ledger_lag.set(services.ledger.lag_s())
    access = services.access
    for principal in access.keyring.principals():
        if principal.budget is not None and not principal.revoked:
            m.key_budget.labels(principal.key_id).set(principal.budget.limit_usd)
            m.key_budget_spent.labels(principal.key_id).set(
                access.budgets.spent(principal.key_id, principal.budget))
    for canary in services.routes.canaries():
        m.canary_state.labels(canary.route, canary.target).set(CANARY_STATES[canary.state])
    m.switch_off.clear()
    for switch in services.switches.switches():
        m.switch_off.labels(switch.scope, switch.name).set(1)
    for route, target, queued, in_flight in services.routes.queued():
        m.queue_depth.labels(route, target).set(queued)
        m.target_in_flight.labels(route, target).set(in_flight)
    if services.reviews is not None and any(
            r.review is not None for r in services.settings.routes.values()):
        # the queue's depth, read from the store; with the store down, the last values
        with contextlib.suppress(ServiceUnavailable):
            await services.reviews.pending()
    await send_bytes(send, 200, services.metrics.render(), services.metrics.content_type)


def routes() -> list[Route]:
    return [
        Route("/health/live", AsgiEndpoint(live), methods=["GET"]),
        Route("/health/ready", AsgiEndpoint(ready), methods=["GET"]),
        Route("/metrics", AsgiEndpoint(metrics), methods=["GET"]),
    ]
