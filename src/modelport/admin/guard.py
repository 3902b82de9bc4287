"""Admin authentication: the admin key, compared in constant time, and nothing else."""

from __future__ import annotations

from modelport.api.asgi import Scope
from modelport.api.body import header
from modelport.api.services import Services
from modelport.errors import AuthError


def require_admin(services: Services, scope: Scope) -> str:
    """The actor name for the audit log; 401 for anything but the admin key."""
    if not services.access.is_admin(header(scope, b"authorization")):
        raise AuthError("The admin API needs the admin key (MODELPORT_ADMIN_KEY).")
    return "admin"


def client_of(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
