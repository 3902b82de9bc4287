"""Dashboard sessions: who signed in to the dashboard, until when, and the cookie that says so.

A session is a random id (``secrets.token_urlsafe(32)``, about 256 bits) in the
``modelport_session`` cookie: HttpOnly, SameSite=Strict, Path=/, 12 hours, and Secure when the
request came over https. The table of live sessions (session id -> expiry on the monotonic
clock) belongs to the app's services (``Services.dashboard_sessions``) and lives in this
process's memory only: a restart signs everyone out, and replicas do not share sessions.
:class:`Sessions` is the one reader and writer of that table; it is used on the event loop's
thread only, so it needs no lock. The table holds at most ``MAX_SESSIONS``: a new session
pushes out the one closest to its end. This module decides nothing about who may sign in.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from modelport.api.asgi import Scope
from modelport.api.body import header

SESSION_COOKIE = "modelport_session"
SESSION_TTL_S = 12 * 3600
MAX_SESSIONS = 64
# Changes made with a session must carry this header: a cross-site form cannot send it, and a
# cross-site script cannot without a CORS preflight, which Modelport never answers.
DASHBOARD_HEADER = b"x-modelport-dashboard"


class Sessions:
    """Opening, checking and closing sessions in ``table``."""

    __slots__ = ("_clock", "_table")

    def __init__(
        self, table: dict[str, float], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._table = table
        self._clock = clock

    def open(self) -> str:
        now = self._clock()
        for expired in [sid for sid, until in self._table.items() if until <= now]:
            del self._table[expired]
        while len(self._table) >= MAX_SESSIONS:
            del self._table[min(self._table, key=self._table.__getitem__)]
        session_id = secrets.token_urlsafe(32)
        self._table[session_id] = now + SESSION_TTL_S
        return session_id

    def valid(self, session_id: str | None) -> bool:
        """Whether ``session_id`` is a live session; an expired one is forgotten."""
        if not session_id:
            return False
        until = self._table.get(session_id)
        if until is None:
            return False
        if until <= self._clock():
            del self._table[session_id]
            return False
        return True

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._table.pop(session_id, None)


def session_id(scope: Scope) -> str | None:
    """The session id the request's cookie carries, if any."""
    for name, value in scope["headers"]:
        if name != b"cookie":
            continue
        text: str = value.decode("latin-1")
        for part in text.split(";"):
            key, sep, found = part.strip().partition("=")
            if sep and key == SESSION_COOKIE and found:
                return found
    return None


def over_https(scope: Scope) -> bool:
    """Whether the browser used https: directly, or through a TLS proxy that says so. Trusting
    the proxy's header here can only add ``Secure`` to the cookie, never take it away."""
    forwarded = header(scope, b"x-forwarded-proto")
    return scope.get("scheme") == "https" or (
        forwarded is not None and forwarded.split(b",")[0].strip().lower() == b"https")


def session_cookie(session_id: str, *, secure: bool) -> bytes:
    return _cookie(session_id, SESSION_TTL_S, secure)


def cleared_cookie(*, secure: bool) -> bytes:
    return _cookie("", 0, secure)


def _cookie(value: str, max_age: int, secure: bool) -> bytes:
    attributes = f"{SESSION_COOKIE}={value}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict"
    return (attributes + ("; Secure" if secure else "")).encode()
