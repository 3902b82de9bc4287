"""The security headers of every answer under ``/dashboard``, error answers included.

The page runs only the package's own scripts and styles (no inline ones, no other origin),
cannot be framed, sends no referrer, and nothing it serves is cached.
"""

from __future__ import annotations

from modelport.api.asgi import Scope
from modelport.api.middleware import CTX_KEY

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)


def protect(scope: Scope) -> None:
    """Add the headers to the answer, whatever it turns out to be (the middleware adds the
    request context's headers to every response it starts)."""
    scope[CTX_KEY].response_headers.extend(SECURITY_HEADERS)


def add_header(scope: Scope, name: bytes, value: bytes) -> None:
    scope[CTX_KEY].response_headers.append((name, value))
