"""Short-lived browser tokens: one route, low limits, signed, dying with their parent key.

A browser token lets a web page call one route directly without holding a real key. It is
``mpt_`` + base64url(claims) + ``.`` + base64url(HMAC-SHA256 of the claims), so any replica
holding the same signing secret can check it without a shared store. The claims name the
parent key; a token is honoured only while that key is alive, so revoking the key kills its
tokens at once. Scope and limits are fixed at minting and can only be narrower than the
parent's; nothing in a token can widen them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

import orjson

from modelport.errors import AuthError, RequestError
from modelport.policy.limits import Limits
from modelport.policy.secrets import TOKEN_PREFIX

MAX_TTL_S = 3600
DEFAULT_TTL_S = 900
DEFAULT_LIMITS = Limits(rpm=20, tpm=20_000, max_concurrency=2)
_INVALID = "The API key is missing, unknown, expired or revoked."


@dataclass(frozen=True, slots=True)
class TokenClaims:
    token_id: str
    parent_id: str
    route: str
    expires_at: float
    limits: Limits


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def narrower(requested: Limits, parent: Limits) -> Limits:
    """The token's limits: what was asked (or the defaults), never above the parent's."""

    def pick(asked: int | None, default: int | None, cap: int | None) -> int | None:
        value = asked if asked is not None else default
        if cap is not None:
            value = cap if value is None else min(value, cap)
        return value

    return Limits(
        rpm=pick(requested.rpm, DEFAULT_LIMITS.rpm, parent.rpm),
        tpm=pick(requested.tpm, DEFAULT_LIMITS.tpm, parent.tpm),
        max_concurrency=pick(requested.max_concurrency, DEFAULT_LIMITS.max_concurrency,
                             parent.max_concurrency),
    )


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())

    def mint(
        self, parent_id: str, route: str, ttl_s: int, limits: Limits, now: float
    ) -> tuple[str, float]:
        if not 0 < ttl_s <= MAX_TTL_S:
            raise RequestError(f"ttl_s must be between 1 and {MAX_TTL_S} seconds.",
                               param="ttl_s")
        expires_at = now + ttl_s
        claims: dict[str, Any] = {"k": parent_id, "r": route, "e": expires_at,
                                  "l": [limits.rpm, limits.tpm, limits.max_concurrency]}
        body = _b64(orjson.dumps(claims))
        return f"{TOKEN_PREFIX}{body}.{self._sign(body)}", expires_at

    def verify(self, token: str, now: float) -> TokenClaims:
        body, _, signature = token.removeprefix(TOKEN_PREFIX).partition(".")
        if not body or not hmac.compare_digest(
            signature.encode("utf-8", "replace"), self._sign(body).encode()
        ):
            raise AuthError(_INVALID)
        try:
            claims = orjson.loads(_unb64(body))
            rpm, tpm, concurrency = claims["l"]
            parsed = TokenClaims(
                token_id=signature[:16],
                parent_id=str(claims["k"]),
                route=str(claims["r"]),
                expires_at=float(claims["e"]),
                limits=Limits(rpm=rpm, tpm=tpm, max_concurrency=concurrency),
            )
        except (ValueError, KeyError, TypeError):
            raise AuthError(_INVALID) from None
        if now >= parsed.expires_at:
            raise AuthError(_INVALID)
        return parsed
