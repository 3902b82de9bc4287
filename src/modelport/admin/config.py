"""``/admin/config``: the config in force, its kept versions, applying one, rolling back.

``PUT /admin/config`` takes the new config as YAML (``Content-Type: application/yaml`` or
text), or as JSON ``{"text", "reason", "dry_run"}``, validates it as ``modelport serve``
would and puts it in force on this server (``api.reload``); a config that does not validate
is a 400 ``config_invalid`` listing every problem with its key path, and the running one
stays. Versions are numbered in the order they were applied and never change.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.routing import Route

from modelport.admin.guard import client_of, require_admin
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.body import header, read_body
from modelport.api.reload import RELOADER_KEY, Applied, ConfigReloader
from modelport.api.responses import send_json
from modelport.api.services import services_of
from modelport.config.versions import diff_text
from modelport.errors import ConfigError, InvalidConfig, MalformedBody, NotFound, RequestError
from modelport.protocol.admin import ConfigSpec, RollbackSpec, parse
from modelport.store.config_versions import ConfigVersionRow

_CONFIG_BODY_LIMIT = 4 * 1024 * 1024
_ACTOR_HEADER = b"x-modelport-actor"


def version_view(row: ConfigVersionRow, *, text: bool = False) -> dict[str, Any]:
    view = {
        "object": "config_version", "number": row.id, "config_version": row.config_version,
        "action": row.action, "source": row.source, "reason": row.reason,
        "actor": row.actor, "client": row.client, "restores": row.restores,
        "applied_at": row.created_at.isoformat(),
    }
    if text:
        view["text"] = row.text
    return view


def _reloader(scope: Scope) -> ConfigReloader:
    reloader: ConfigReloader = scope["state"][RELOADER_KEY]
    return reloader


def _actor(scope: Scope, actor: str) -> str:
    """``admin``, or ``admin:NAME`` when the client says who it acts for (the CLI sends
    its user), for the audit log."""
    named = header(scope, _ACTOR_HEADER)
    if named and len(named) <= 64 and all(0x21 <= b < 0x7F for b in named):
        return f"{actor}:{named.decode()}"
    return actor


def _query(scope: Scope) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


def _applied_view(applied: Applied, dry_run: bool) -> dict[str, Any]:
    return {
        "object": "config_apply", "applied": applied.row is not None,
        "unchanged": applied.unchanged, "dry_run": dry_run,
        "config_version": applied.config_version,
        "version": version_view(applied.row) if applied.row is not None else None,
        "changes": applied.changes,
    }


async def _applying(send: Send, work: Any, dry_run: bool = False) -> None:
    try:
        applied = await work
    except ConfigError as exc:
        raise InvalidConfig(exc.problems) from None
    await send_json(send, _applied_view(applied, dry_run))


async def current_config(scope: Scope, receive: Receive, send: Send) -> None:
    """The config in force here: its version (with the text when it was kept)."""
    services = services_of(scope)
    require_admin(services, scope)
    number = services.generation.number
    row = None
    if number is not None and services.config_store is not None:
        row = await asyncio.to_thread(services.config_store.find, str(number))
    if row is None:
        await send_json(send, {"object": "config_version", "number": None,
                               "config_version": services.settings.config_version,
                               "source": services.settings.source})
        return
    await send_json(send, version_view(row, text=True))


async def apply_config(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    actor = _actor(scope, require_admin(services, scope))
    raw = await read_body(scope, receive, _CONFIG_BODY_LIMIT)
    content_type = (header(scope, b"content-type") or b"").split(b";")[0].strip().lower()
    if content_type == b"application/json":
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise MalformedBody("The request body is not valid JSON.") from None
        spec = parse(ConfigSpec, body)
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("The config must be UTF-8 text.") from None
        query = _query(scope)
        spec = parse(ConfigSpec, {
            "text": text, "reason": query.get("reason", [""])[-1],
            "dry_run": query.get("dry_run", ["false"])[-1].lower() in ("1", "true", "yes")})
    if not spec.text.strip():
        raise RequestError("text: the config is empty.", param="text")
    await _applying(send, _reloader(scope).apply(
        spec.text, source="admin api", action="apply", actor=actor, client=client_of(scope),
        reason=spec.reason, dry_run=spec.dry_run), spec.dry_run)


async def rollback_config(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    actor = _actor(scope, require_admin(services, scope))
    body = await read_body(scope, receive, 64 * 1024)
    try:
        spec = parse(RollbackSpec, orjson.loads(body))
    except orjson.JSONDecodeError:
        raise MalformedBody("The request body is not valid JSON.") from None
    await _applying(send, _reloader(scope).rollback(
        str(spec.version), actor=actor, client=client_of(scope), reason=spec.reason))


async def list_versions(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    require_admin(services, scope)
    limit_text = _query(scope).get("limit", ["50"])[-1]
    if not limit_text.isdecimal() or not 1 <= int(limit_text) <= 1000:
        raise RequestError("limit: a whole number from 1 to 1000", param="limit")
    rows = await asyncio.to_thread(_reloader(scope).store.history, int(limit_text))
    await send_json(send, {"object": "list", "current": services.generation.number,
                           "data": [version_view(r) for r in rows]})


async def _find(scope: Scope, ref: str) -> ConfigVersionRow:
    row = await asyncio.to_thread(_reloader(scope).store.find, ref)
    if row is None:
        raise NotFound(f"No config version '{ref}' is kept (give its number, or at least "
                       "6 characters of its hash).")
    return row


async def get_version(scope: Scope, receive: Receive, send: Send) -> None:
    require_admin(services_of(scope), scope)
    row = await _find(scope, scope["path_params"]["ref"])
    await send_json(send, version_view(row, text=True))


async def diff_versions(scope: Scope, receive: Receive, send: Send) -> None:
    """``?from=V1&to=V2`` (``to``: the version in force when left out): a unified diff."""
    services = services_of(scope)
    require_admin(services, scope)
    query = _query(scope)
    if "from" not in query:
        raise RequestError("from: give the version to compare from", param="from")
    before = await _find(scope, query["from"][-1])
    to_ref = query.get("to", [str(services.generation.number or "")])[-1]
    if not to_ref:
        raise RequestError("to: the config in force was not kept; name a version",
                           param="to")
    after = await _find(scope, to_ref)
    await send_json(send, {"object": "config_diff", "from": before.id, "to": after.id,
                           "diff": diff_text(before, after)})


def routes() -> list[Route]:
    return [
        Route("/admin/config", AsgiEndpoint(current_config), methods=["GET"]),
        Route("/admin/config", AsgiEndpoint(apply_config), methods=["PUT"]),
        Route("/admin/config/rollback", AsgiEndpoint(rollback_config), methods=["POST"]),
        Route("/admin/config/versions", AsgiEndpoint(list_versions), methods=["GET"]),
        Route("/admin/config/versions/{ref}", AsgiEndpoint(get_version), methods=["GET"]),
        Route("/admin/config/diff", AsgiEndpoint(diff_versions), methods=["GET"]),
    ]
