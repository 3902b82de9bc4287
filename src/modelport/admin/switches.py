"""``/admin/switches``: turn everything, a route, a key, a provider or a model off and on.

A change is written to the store with its audit entry (who, why) in a worker thread, then
applied to this server's switchboard, so it holds from the very next request here; other
servers sharing the store pick it up within their key poll (a second by default).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.routing import Route

from modelport.admin.guard import client_of, require_admin
from modelport.admin.keys import read_admin_json
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_json
from modelport.api.services import Services, services_of
from modelport.config.settings import switch_problem
from modelport.errors import RequestError, ServiceUnavailable
from modelport.policy.switches import Switch
from modelport.policy.sync import switch_of
from modelport.protocol.admin import SwitchSpec, parse
from modelport.store.switches import SwitchStore


def switch_view(switch: Switch) -> dict[str, Any]:
    return {
        "object": "switch", "scope": switch.scope, "name": switch.name or None,
        "state": "off", "behaviour": switch.behaviour, "message": switch.message,
        "fallback_route": switch.fallback_route, "reason": switch.reason,
        "actor": switch.actor, "since": switch.created_at.isoformat(),
    }


def _store(services: Services) -> SwitchStore:
    if services.switch_store is None:
        raise ServiceUnavailable("Switches need the store.")
    return services.switch_store


def check(services: Services, spec: SwitchSpec) -> None:
    """A clear 400 naming the field for a switch that cannot be turned off as asked (one
    that is off can always be turned back on, whatever became of its route)."""
    if spec.state == "on":
        if (spec.scope == "all") != (not spec.name):
            raise RequestError("name: give the name of what the switch is for (none for all)",
                               param="name")
        return
    problem = switch_problem(services.settings, spec.scope, spec.name, spec.behaviour,
                             spec.fallback_route, spec.message)
    if problem is None and spec.scope == "key" \
            and services.access.keyring.principal(spec.name) is None:
        problem = ("name", f"unknown key '{spec.name}' (give its id)")
    if problem is not None:
        raise RequestError(f"{problem[0]}: {problem[1]}", param=problem[0])


async def list_switches(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    await send_json(send, {"object": "list",
                           "data": [switch_view(s) for s in services.switches.switches()]})


async def set_switch(scope: Scope, receive: Receive, send: Send) -> None:
    """``{"scope", "name", "state": "off"|"on", "behaviour", "message", "fallback_route",
    "reason"}``: 201 with the switch turned off, 200 when turned back on."""
    services = services_of(scope)
    actor = require_admin(services, scope)
    spec = parse(SwitchSpec, await read_admin_json(scope, receive))
    check(services, spec)
    store, board = _store(services), services.switches
    if spec.state == "on":
        await asyncio.to_thread(store.turn_on, scope=spec.scope, name=spec.name,
                                reason=spec.reason, actor=actor, client=client_of(scope))
        board.remove(spec.scope, spec.name)
        await send_json(send, {"object": "switch", "scope": spec.scope,
                               "name": spec.name or None, "state": "on"})
        return
    row = await asyncio.to_thread(
        store.turn_off, scope=spec.scope, name=spec.name, behaviour=spec.behaviour,
        message=spec.message, fallback_route=spec.fallback_route, reason=spec.reason,
        actor=actor, client=client_of(scope))
    switch = switch_of(row)
    board.put(switch)
    await send_json(send, switch_view(switch), status=201)


def routes() -> list[Route]:
    return [
        Route("/admin/switches", AsgiEndpoint(list_switches), methods=["GET"]),
        Route("/admin/switches", AsgiEndpoint(set_switch), methods=["POST"]),
    ]
