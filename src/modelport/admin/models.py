"""``/admin/models``: the model catalogue, each model with its status in force, the routes
that use it, and its traffic, error rate and cost over the last day (from the ledger)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.routing import Route

from modelport.admin.guard import require_admin
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_json
from modelport.api.services import Services, services_of
from modelport.config.catalogue import CatalogueModel
from modelport.errors import NotFound
from modelport.store.stats import Figures, StatsStore

WINDOW = timedelta(days=1)


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def model_view(entry: CatalogueModel, routes: list[str], day: Figures) -> dict[str, Any]:
    return {
        "object": "model", "id": entry.id, "provider": entry.provider, "model": entry.model,
        "owner": entry.owner, "status": entry.status_at(time.time()),
        "declared_status": entry.status, "version": entry.version,
        "context_window": entry.context_window, "input_per_mtok": entry.input_per_mtok,
        "output_per_mtok": entry.output_per_mtok, "deprecated_at": _iso(entry.deprecated_at),
        "retire_at": _iso(entry.retire_at), "successor": entry.successor, "routes": routes,
        "last_day": {"requests": day.requests, "errors": day.errors,
                     "error_rate": day.error_rate, "cost_usd": day.cost_usd},
    }


async def _views(services: Services) -> list[dict[str, Any]]:
    since = datetime.now(UTC) - WINDOW
    ledger = await asyncio.to_thread(StatsStore.sharing(services.requests).by_target, since)
    per_label: dict[str, list[Figures]] = {}
    for (_route, target), figures in ledger.figures.items():
        if target is not None:
            per_label.setdefault(target, []).append(figures)
    views = []
    for entry in services.settings.models.values():
        routes = sorted(r.name for r in services.settings.routes.values()
                        if any(t.catalogue is entry for t in r.targets))
        parts = per_label.get(entry.label, [])
        requests = sum(f.requests for f in parts)
        day = Figures(requests, sum(f.errors for f in parts), None, None,
                      sum(f.cost_usd for f in parts))
        views.append(model_view(entry, routes, day))
    return views


async def list_models(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    await send_json(send, {"object": "list", "data": await _views(services)})


async def get_model(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    model_id = scope["path_params"]["model_id"]
    if model_id not in services.settings.models:
        raise NotFound(f"There is no model '{model_id}' in the catalogue.")
    found = [v for v in await _views(services) if v["id"] == model_id]
    await send_json(send, found[0])


def routes() -> list[Route]:
    return [
        Route("/admin/models", AsgiEndpoint(list_models), methods=["GET"]),
        Route("/admin/models/{model_id:path}", AsgiEndpoint(get_model), methods=["GET"]),
    ]
