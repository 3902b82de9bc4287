"""Signing in to the dashboard and out again: ``/dashboard/login``, ``/dashboard/logout`` and
``/dashboard/session``.

The admin key is typed into the page's form and posted (form or JSON body), never put in a
URL; it is checked with ``AccessPolicy.is_admin`` (constant time). Every failure is the same
401; after five in a minute from one address, sign-ins from it get 429 with Retry-After for
the rest of that minute (``dashboard.throttle``). In open mode (no admin key and no keys: the
server listens on loopback only) anyone who reaches the server may sign in, as they may call
everything else, but only through a loopback host name, so that a web page whose own name was
made to point at 127.0.0.1 (DNS rebinding) cannot.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import parse_qs

from starlette.routing import Route

from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.body import header, read_body
from modelport.api.origins import host_of, is_loopback_name
from modelport.api.responses import send_bytes, send_json
from modelport.api.services import Services, services_of
from modelport.dashboard.headers import add_header, protect
from modelport.dashboard.sessions import (
    DASHBOARD_HEADER,
    SESSION_TTL_S,
    Sessions,
    cleared_cookie,
    over_https,
    session_cookie,
    session_id,
)
from modelport.dashboard.throttle import SignInThrottle
from modelport.errors import AuthError, Forbidden, RateLimited
from modelport.protocol.openai.request import parse_body

_BODY_LIMIT = 8 * 1024
_FAILED = "Sign-in failed."
_FORM = b"application/x-www-form-urlencoded"


def open_mode(services: Services) -> bool:
    return not services.settings.auth_required and services.settings.admin_key is None


def _is_form(scope: Scope) -> bool:
    content_type = header(scope, b"content-type") or b""
    return content_type.split(b";")[0].strip().lower() == _FORM


def _typed_key(raw: bytes, form: bool) -> str | None:
    if form:
        values = parse_qs(raw.decode("utf-8", "replace")).get("key")
        return values[0] if values else None
    if not raw.strip():
        return None
    body: Any = parse_body(raw)
    key = body.get("key") if isinstance(body, dict) else None
    return key if isinstance(key, str) else None


def _may_sign_in(services: Services, scope: Scope, key: str | None) -> str | None:
    """Who signs in: ``admin``, or the key id of a reviewer's key (who sees the review
    queue only); None when nobody may."""
    if open_mode(services):
        host = (header(scope, b"host") or b"").decode("latin-1")
        return "admin" if is_loopback_name(host_of(host)) else None
    if key is None:
        return None
    if services.access.is_admin(b"Bearer " + key.encode()):
        return "admin"
    return services.access.reviewer(b"Bearer " + key.encode("utf-8", "replace"))


async def login(scope: Scope, receive: Receive, send: Send) -> None:
    """JSON for the page's script; a plain form post is sent back to the page."""
    protect(scope)
    services = services_of(scope)
    throttle = SignInThrottle(services.dashboard_failures)
    client = scope.get("client") or ("",)
    address: str = client[0]
    wait = throttle.retry_after(address)
    if wait is not None:
        raise RateLimited("Too many failed sign-ins from this address; try again later.",
                          headers={"Retry-After": str(math.ceil(wait))})
    form = _is_form(scope)
    key = _typed_key(await read_body(scope, receive, _BODY_LIMIT), form)
    who = _may_sign_in(services, scope, key)
    if who is None:
        throttle.failed(address)
        raise AuthError(_FAILED)
    throttle.succeeded(address)
    new_session = Sessions(services.dashboard_sessions).open()
    reviewers = services.dashboard_reviewers
    for gone in [s for s in reviewers if s not in services.dashboard_sessions]:
        del reviewers[gone]
    if who != "admin":
        reviewers[new_session] = who
    add_header(scope, b"set-cookie", session_cookie(new_session, secure=over_https(scope)))
    if form:
        add_header(scope, b"location", b"/dashboard")
        await send_bytes(send, 303, b"", "text/plain; charset=utf-8")
        return
    await send_json(send, {"object": "session", "signed_in": True, "expires_in_s": SESSION_TTL_S,
                           "role": "admin" if who == "admin" else "reviewer"})


async def logout(scope: Scope, receive: Receive, send: Send) -> None:
    """Only from the page's own script: a cross-site form cannot sign anyone out."""
    protect(scope)
    if header(scope, DASHBOARD_HEADER) != b"1":
        raise Forbidden("Signing out needs the header X-Modelport-Dashboard: 1.")
    services = services_of(scope)
    Sessions(services.dashboard_sessions).close(session_id(scope))
    services.dashboard_reviewers.pop(session_id(scope) or "", None)
    add_header(scope, b"set-cookie", cleared_cookie(secure=over_https(scope)))
    await send_json(send, {"object": "session", "signed_in": False})


async def session(scope: Scope, receive: Receive, send: Send) -> None:
    """Whether the cookie holds a live session, and whether the server runs in open mode."""
    protect(scope)
    services = services_of(scope)
    signed_in = Sessions(services.dashboard_sessions).valid(session_id(scope))
    role = None
    if signed_in:
        role = "reviewer" if session_id(scope) in services.dashboard_reviewers else "admin"
    await send_json(send, {"object": "session", "signed_in": signed_in,
                           "open_mode": open_mode(services), "role": role})


def routes() -> list[Route]:
    return [
        Route("/dashboard/login", AsgiEndpoint(login), methods=["POST"]),
        Route("/dashboard/logout", AsgiEndpoint(logout), methods=["POST"]),
        Route("/dashboard/session", AsgiEndpoint(session), methods=["GET"]),
    ]
