"""Which hosts and web origins may reach the gateway: the defence of open mode against web pages.

In open mode (no keys) anything that can reach the socket is served, and the socket is on a
loopback address. A web page the user visits can still reach it: a cross-site ``fetch`` or
form POST to ``http://127.0.0.1:4000`` (the browser sends it without asking when its
Content-Type is a form or plain text), or DNS rebinding, where the page's own host name comes
to resolve to 127.0.0.1. So in open mode a request must name a loopback host (or one listed in
``server.allowed_hosts``) in ``Host``, a browser's ``Origin`` must be such a host too, and
without an ``Origin`` a body may not be declared a form or plain text (415): every current
browser sends ``Origin`` with a POST, so what posts a form without one is an old browser or
a program, which can send JSON as JSON. With keys, a page cannot add the
``Authorization`` header without the browser asking first, so only ``Host`` is checked, and
only when ``server.allowed_hosts`` is set.

Verdicts are cached per header value, so a client that keeps sending the same headers costs
one dictionary look-up per header.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from modelport.api.body import HEADERS_KEY, headers_of
from modelport.config.settings import Settings
from modelport.errors import UnsupportedMediaType, UntrustedOrigin

_MULTIPART = b"multipart/form-data"
_SIMPLE_TYPES = (b"text/plain", b"application/x-www-form-urlencoded", _MULTIPART)
_JSON_MEDIA = b"application/json"  # the usual content type, passed without parsing
FILES_PATH = "/v1/files"
_CACHE_LIMIT = 256


def is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(authority: str) -> str:
    """``example.com:4000`` -> ``example.com``; ``[::1]:4000`` -> ``::1``; lower case."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:authority.find("]")] if "]" in authority else authority
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


class OriginGuard:
    __slots__ = ("_allowed", "_check_origin", "_verdicts")

    def __init__(self, allowed_hosts: tuple[str, ...], *, open_mode: bool) -> None:
        self._allowed = frozenset(h.lower() for h in allowed_hosts)
        self._check_origin = open_mode
        self._verdicts: dict[bytes, bool] = {}

    @classmethod
    def of(cls, settings: Settings) -> OriginGuard | None:
        """The guard for these settings; ``None`` when nothing is to be checked."""
        open_mode = not settings.auth_required
        if not open_mode and not settings.server.allowed_hosts:
            return None
        return cls(settings.server.allowed_hosts, open_mode=open_mode)

    def check(self, scope: Any) -> None:
        headers = scope.get(HEADERS_KEY) or headers_of(scope)
        host = headers.get(b"host")
        # the verdict on a host seen before is read here, without a call
        if host is not None and not (self._verdicts.get(host)
                                     or self._trusted(host, origin=False)):
            raise UntrustedOrigin(
                "This gateway does not serve the host named in the request. Call it by a "
                "loopback address or a host listed in server.allowed_hosts.")
        if not self._check_origin:
            return
        origin = headers.get(b"origin")
        if origin is not None:
            if not self._trusted(origin, origin=True):
                raise UntrustedOrigin(
                    "In open mode this gateway answers web pages from this machine only; "
                    "set an admin key and use keys to call it from elsewhere.")
        elif (media := headers.get(b"content-type")) is not None \
                and media != _JSON_MEDIA:
            kind = media.split(b";", 1)[0].strip().lower()
            # no Origin: a browser too old to send one could be posting across sites. The
            # one form accepted is a file upload (the Files API is multipart by design): a
            # file alone runs nothing, and a batch is created only by a JSON request.
            if kind in _SIMPLE_TYPES and not (kind == _MULTIPART
                                              and scope["path"] == FILES_PATH):
                raise UnsupportedMediaType("Send the body as application/json.")

    def _trusted(self, value: bytes, *, origin: bool) -> bool:
        key = value if not origin else b"o:" + value
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._judge(value.decode("latin-1"), origin=origin)
            if len(self._verdicts) >= _CACHE_LIMIT:
                self._verdicts.clear()
            self._verdicts[key] = verdict
        return verdict

    def _judge(self, value: str, *, origin: bool) -> bool:
        if origin:
            scheme, sep, rest = value.partition("://")
            if not sep or scheme.lower() not in ("http", "https"):
                return False  # "null" (a sandboxed frame, a file) and anything odd
            value = rest.split("/", 1)[0]
        host = host_of(value)
        return is_loopback_name(host) or host in self._allowed
