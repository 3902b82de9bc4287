"""``/admin/keys``: create, list, revoke and rotate keys; ``/admin/audit``.

Each change is written to the store (with its audit entry) in a worker thread, then applied
to this server's key ring at once, so a revoked key fails on its very next request.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.routing import Route

from modelport.admin.guard import client_of, require_admin
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.body import read_body
from modelport.api.responses import send_json
from modelport.api.services import Services, services_of
from modelport.config.settings import key_route_problem
from modelport.errors import NotFound, RequestError
from modelport.policy.budgets import period_start
from modelport.policy.keys import CONFIG_KEY_PREFIX
from modelport.policy.secrets import display_prefix, hash_key, new_key, new_key_id
from modelport.protocol.admin import KeySpec, RotateSpec, parse
from modelport.protocol.openai.request import parse_body
from modelport.store.keys import AuditEntry, KeyRow
from modelport.store.usage import UsageRow

_ADMIN_BODY_LIMIT = 64 * 1024
_NO_USAGE = UsageRow(group=None, requests=0, prompt_tokens=0, completion_tokens=0, cost_usd=0.0)


def key_view(
    row: KeyRow, last_used: datetime | None = None, usage: UsageRow | None = None
) -> dict[str, Any]:
    """A key as the admin API shows it: everything but its secrets."""
    view: dict[str, Any] = {
        "id": row.id,
        "object": "key",
        "name": row.name,
        "prefix": row.prefix,
        "environment": row.environment,
        "routes": list(row.routes) if row.routes is not None else None,
        "rpm": row.rpm,
        "tpm": row.tpm,
        "max_concurrency": row.max_concurrency,
        "budget_usd": row.budget_usd,
        "budget_period": row.budget_period,
        "priority": row.priority,
        "role": row.role,
        "tools": row.tools,
        "created_at": _iso(row.created_at),
        "expires_at": _iso(row.expires_at),
        "revoked_at": _iso(row.revoked_at),
        "last_used_at": _iso(last_used),
    }
    if usage is not None:
        view["usage_this_month"] = {
            "requests": usage.requests if usage else 0,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "cost_usd": usage.cost_usd if usage else 0.0,
        }
    return view


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def read_admin_json(scope: Scope, receive: Receive, *, optional: bool = False) -> Any:
    raw = await read_body(scope, receive, _ADMIN_BODY_LIMIT)
    if optional and not raw.strip():
        return {}
    return parse_body(raw)


def _check_routes(services: Services, spec: KeySpec) -> None:
    for route in spec.routes or ():
        problem = key_route_problem(services.settings.routes, route, spec.environment,
                                    services.settings.tensor_models())
        if problem is not None:
            raise RequestError(f"routes: {problem}", param="routes")


async def create_key(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    actor = require_admin(services, scope)
    spec = parse(KeySpec, await read_admin_json(scope, receive))
    _check_routes(services, spec)
    secret = new_key()
    row = await asyncio.to_thread(
        services.keys.create,
        key_id=new_key_id(), name=spec.name, prefix=display_prefix(secret),
        secret_hash=hash_key(secret), environment=spec.environment,
        routes=tuple(spec.routes) if spec.routes is not None else None,
        rpm=spec.rpm, tpm=spec.tpm, max_concurrency=spec.max_concurrency,
        budget_usd=spec.budget_usd,
        budget_period=spec.budget_period if spec.budget_usd is not None else None,
        expires_at=spec.expires_at, actor=actor, client=client_of(scope),
        priority=spec.priority, role=spec.role,
        tools=None if spec.tools is None else spec.tools.model_dump(),
    )
    services.access.keyring.put(row)
    await send_json(send, {**key_view(row), "key": secret}, status=201)


async def list_keys(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    actor = require_admin(services, scope)
    await asyncio.to_thread(services.keys.audit, actor, "key.list", None, None,
                            client_of(scope))
    rows = await asyncio.to_thread(services.keys.list_keys)
    month = datetime.fromtimestamp(period_start("month", time.time()), UTC)
    usage = {u.group: u for u in await asyncio.to_thread(services.usage.report, "key",
                                                          month, None)}
    # read after the usage, so that a request it counts has its time here too (rows are
    # written meanwhile)
    used = await asyncio.to_thread(services.usage.last_used_by_key)
    await send_json(send, {"object": "list", "data": [
        key_view(r, used.get(r.id), usage.get(r.id) or _NO_USAGE) for r in rows]})


async def revoke_key(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    actor = require_admin(services, scope)
    key_id = scope["path_params"]["key_id"]
    _not_a_config_key(key_id)
    services.access.keyring.revoke(key_id)  # before the store write: no window at all
    row = await asyncio.to_thread(services.keys.revoke, key_id, actor=actor,
                                  client=client_of(scope))
    if row is None:
        raise NotFound("No such key.")
    await send_json(send, key_view(row))


async def rotate_key(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    actor = require_admin(services, scope)
    _not_a_config_key(scope["path_params"]["key_id"])
    spec = parse(RotateSpec, await read_admin_json(scope, receive, optional=True))
    secret = new_key()
    grace = datetime.now(UTC) + timedelta(seconds=spec.grace_seconds)
    row = await asyncio.to_thread(
        services.keys.rotate, scope["path_params"]["key_id"], new_hash=hash_key(secret),
        new_prefix=display_prefix(secret), grace_until=grace, actor=actor,
        client=client_of(scope),
    )
    if row is None:
        raise NotFound("No such key, or it is revoked.")
    services.access.keyring.put(row)
    await send_json(send, {**key_view(row), "key": secret,
                           "previous_key_valid_until": grace.isoformat()})


def _not_a_config_key(key_id: str) -> None:
    if key_id.startswith(CONFIG_KEY_PREFIX):
        raise RequestError("Keys declared in the config file change with the file, not here.")


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at.isoformat(), "actor": entry.actor,
            "action": entry.action, "target": entry.target, "detail": entry.detail,
            "client": entry.client}


async def list_audit(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    entries = await asyncio.to_thread(services.keys.audit_entries, 200)
    await send_json(send, {"object": "list", "data": [audit_view(e) for e in entries]})


def routes() -> list[Route]:
    return [
        Route("/admin/keys", AsgiEndpoint(create_key), methods=["POST"]),
        Route("/admin/keys", AsgiEndpoint(list_keys), methods=["GET"]),
        Route("/admin/keys/{key_id}", AsgiEndpoint(revoke_key), methods=["DELETE"]),
        Route("/admin/keys/{key_id}/rotate", AsgiEndpoint(rotate_key), methods=["POST"]),
        Route("/admin/audit", AsgiEndpoint(list_audit), methods=["GET"]),
    ]
