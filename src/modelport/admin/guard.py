"""Admin authentication: the admin key, compared in constant time, or a dashboard session.

A dashboard session (``modelport.dashboard.sessions``) comes from signing in with the admin
key and travels in a SameSite=Strict cookie; a request that changes something (any method but
GET and HEAD) with it must also carry ``X-Modelport-Dashboard: 1``, which a cross-site form
cannot send. Every answer of the admin API is marked ``Cache-Control: no-store``.
"""

from __future__ import annotations

from modelport.api.asgi import Scope
from modelport.api.body import header
from modelport.api.middleware import CTX_KEY
from modelport.api.services import Services
from modelport.dashboard.sessions import DASHBOARD_HEADER, Sessions, session_id
from modelport.errors import AuthError, Forbidden

_READS = frozenset({"GET", "HEAD"})


def require_admin(services: Services, scope: Scope, *, reviewers: bool = False) -> str:
    """The actor name for the audit log (``admin`` with the key, ``dashboard`` with a
    session, ``reviewer:<key id>`` with a reviewer's key where ``reviewers`` allows it);
    403 for a reviewer's key anywhere else and for a change made with a session but without
    the dashboard's header, 401 for anything else."""
    ctx = scope.get(CTX_KEY)
    if ctx is not None:
        ctx.response_headers.append((b"cache-control", b"no-store"))
    if services.access.is_admin(header(scope, b"authorization")):
        return "admin"
    session = session_id(scope)
    if Sessions(services.dashboard_sessions).valid(session):
        if scope["method"] not in _READS and header(scope, DASHBOARD_HEADER) != b"1":
            raise Forbidden("Changes made with a dashboard session need the header "
                            "X-Modelport-Dashboard: 1.")
        reviewer = services.dashboard_reviewers.get(session or "")
        if reviewer is None:
            return "dashboard"
        if not reviewers:
            raise Forbidden("This session is a reviewer's: it may decide reviews and do "
                            "nothing else.")
        return f"reviewer:{reviewer}"
    reviewer = services.access.reviewer(header(scope, b"authorization"))
    if reviewer is not None:
        if not reviewers:
            raise Forbidden("This key is a reviewer's: it may decide reviews and do nothing "
                            "else.")
        return f"reviewer:{reviewer}"
    raise AuthError("The admin API needs the admin key (MODELPORT_ADMIN_KEY).")


def client_of(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
