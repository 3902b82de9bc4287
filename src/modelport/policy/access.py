"""The access decision for one request: who is asking, may they, and is there room.

``authenticate`` turns the ``Authorization`` header into a principal (a key or a browser
token) or raises 401; ``authorize`` checks the route and environment (403, naming nothing
else); ``admit`` takes a slot from every limit that applies and reserves the estimated cost
against the key's budget, or raises 429. The returned ticket is finished once the answer is
known, settling tokens and cost with what the provider reported.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from modelport.config.settings import LimitSettings, RouteSettings, Secret
from modelport.core.pricing import Price
from modelport.core.usage import Usage
from modelport.errors import AuthError, Forbidden
from modelport.policy.budgets import Budget, BudgetBook, Reservation
from modelport.policy.keys import KeyRing, Principal, limits_of
from modelport.policy.limits import Admission, Limiter, Limits
from modelport.policy.secrets import TOKEN_PREFIX
from modelport.policy.tokens import TokenSigner

_MISSING = "The API key is missing, unknown, expired or revoked."
# The most completion tokens a budgeted request that names no limit is given (and reserved).
BUDGETED_COMPLETION_CAP = 4096
_DENIED = "This key may not call this route."
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+").fullmatch
Scope = tuple[str, Limits]


class Callee(Protocol):
    """What a request calls, as access sees it: a route, or a tensor model named like one."""

    @property
    def name(self) -> str: ...

    @property
    def environment(self) -> str: ...

    @property
    def limits(self) -> LimitSettings: ...


class Ticket:
    """What a request holds while it runs: its limit slots and its budget reservation, and
    the completion tokens per answer the request may use when the budget set them."""

    __slots__ = ("_admission", "_done", "_reservation", "completion_cap")

    def __init__(self, admission: Admission | None, reservation: Reservation | None,
                 completion_cap: int | None = None) -> None:
        self._admission = admission
        self._reservation = reservation
        self.completion_cap = completion_cap
        self._done = False

    def headers(self) -> dict[str, str]:
        return self._admission.headers() if self._admission is not None else {}

    def finish(self, usage: Usage | None, cost_usd: float | None, *, served: bool = False) -> None:
        """Settle with what happened. ``usage`` None and not ``served``: nothing was served,
        so everything is given back. ``served`` with no usage (a stream cut short before
        its usage arrived): the estimate stands. Idempotent."""
        if self._done:
            return
        self._done = True
        unknown = usage is None and served
        if self._admission is not None:
            if not unknown:
                self._admission.settle(usage.total_tokens if usage is not None else 0)
            self._admission.release()
        if self._reservation is not None:
            if unknown:
                self._reservation.settle(self._reservation.estimated_usd)
            elif cost_usd is None:
                self._reservation.cancel()
            else:
                self._reservation.settle(cost_usd)


class AccessPolicy:
    def __init__(
        self,
        keyring: KeyRing,
        signer: TokenSigner,
        limiter: Limiter,
        budgets: BudgetBook,
        routes: Mapping[str, RouteSettings],
        *,
        auth_required: bool,
        admin_key: Secret | None,
        metrics_token: Secret | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keyring = keyring
        self.signer = signer
        self.limiter = limiter
        self.budgets = budgets
        self.auth_required = auth_required
        self._admin = admin_key.reveal().encode() if admin_key is not None else None
        self._metrics = metrics_token.reveal().encode() if metrics_token is not None else None
        self._clock = clock
        self._route_scopes: dict[str, tuple[Scope, ...]] = {
            name: () if limits_of(r.limits).is_unlimited()
            else ((f"route:{name}", limits_of(r.limits)),)
            for name, r in routes.items()
        }

    @staticmethod
    def bearer(header: bytes | None) -> str | None:
        """The credential of an ``Authorization: Bearer`` header; ``None`` when there is
        none or it is malformed. A credential is visible ASCII only (RFC 6750's token68 and
        every key and token Modelport issues), so nothing else reaches a comparison."""
        if not header:
            return None
        scheme, _, token = header.decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not _VISIBLE_ASCII(token):
            return None
        return token

    def is_admin(self, header: bytes | None) -> bool:
        token = self.bearer(header)
        if token is None or self._admin is None:
            return False
        return hmac.compare_digest(token.encode(), self._admin)

    def may_scrape(self, header: bytes | None) -> bool:
        """``/metrics`` (which names routes, key ids and budgets): open in open mode; with
        keys, for the admin key or the metrics token."""
        if not self.auth_required:
            return True
        token = self.bearer(header)
        if token is None:
            return False
        return self.is_admin(header) or (
            self._metrics is not None and hmac.compare_digest(token.encode(), self._metrics))

    def reviewer(self, header: bytes | None) -> str | None:
        """The key id of a valid reviewer's key (``role: reviewer``) in the header, if that
        is what it carries."""
        token = self.bearer(header)
        if token is None or not self.auth_required:
            return None
        try:
            principal = self.keyring.authenticate(token)
        except AuthError:
            return None
        return principal.key_id if principal.role == "reviewer" else None

    def authenticate(self, header: bytes | None) -> Principal | None:
        """The caller's principal; ``None`` in open mode (no keys configured at all)."""
        if not self.auth_required:
            return None
        token = self.bearer(header)
        if token is None or self.is_admin(header):
            raise AuthError(_MISSING)
        if token.startswith(TOKEN_PREFIX):
            return self._token_principal(token)
        return self.keyring.authenticate(token)

    def _token_principal(self, token: str) -> Principal:
        now = self._clock()
        claims = self.signer.verify(token, now)
        parent = self.keyring.principal(claims.parent_id)
        if parent is None or not parent.alive(now) or not parent.may_call(
            claims.route, parent.environment
        ):
            raise AuthError(_MISSING)
        return Principal(
            key_id=parent.key_id,
            name=parent.name,
            environment=parent.environment,
            routes=frozenset((claims.route,)),
            limits=claims.limits,
            budget=parent.budget,
            expires_at=claims.expires_at,
            scopes=(*parent.scopes, (f"token:{claims.token_id}", claims.limits)),
            priority=parent.priority,
            tools=parent.tools,
        )

    def authorize(self, principal: Principal | None, route: Callee) -> None:
        if principal is not None and not principal.may_call(route.name, route.environment):
            raise Forbidden(_DENIED)

    def _scopes_of(self, callee: Callee) -> tuple[Scope, ...]:
        """The callee's own limit scope: a route's from the config (worked out once), a
        tensor model's from its repository config, which may change when it is reloaded."""
        scopes = self._route_scopes.get(callee.name)
        if scopes is not None:
            return scopes
        limits = limits_of(callee.limits)
        return () if limits.is_unlimited() else ((f"route:{callee.name}", limits),)

    def admit(
        self,
        principal: Principal | None,
        route: Callee,
        price: Price,
        estimate: Callable[[], tuple[int, int]],
        *,
        open_completion: int = 0,
    ) -> Ticket | None:
        """Take limit slots and reserve budget; ``None`` when nothing applies (the common,
        cheap case). Raises ``RateLimited`` or ``BudgetExceeded``.

        ``open_completion`` is the number of answers (``n``) of a request that set no limit
        on its completion tokens, 0 for one that did. Under a budget such a request is given
        one (``Ticket.completion_cap``, per answer): what the key's headroom can pay, at most
        ``BUDGETED_COMPLETION_CAP``, and that is what is reserved. A provider cannot then
        answer past the reservation, so a budget is overshot by no more than the prompts of
        the requests in flight were underestimated."""
        scopes = self._route_scopes.get(route.name)  # self._scopes_of(route), in one read
        if scopes is None:
            scopes = self._scopes_of(route)
        budget = None
        if principal is not None:
            scopes = principal.scopes + scopes
            budget = principal.budget
        if not scopes and budget is None:
            return None
        prompt, completion = estimate()
        reservation, cap = None, None
        if budget is not None and principal is not None:
            if open_completion and price.output_per_mtok > 0:
                cap = self._affordable(principal.key_id, budget, price, prompt, open_completion)
                completion = cap * open_completion
            reservation = self.budgets.reserve(
                principal.key_id, budget, price.estimate(prompt, completion)
            )
        try:
            admission = self.limiter.admit(scopes, prompt + completion) if scopes else None
        except BaseException:
            if reservation is not None:
                reservation.cancel()
            raise
        return Ticket(admission, reservation, cap)

    def _affordable(self, key_id: str, budget: Budget, price: Price, prompt: int,
                    answers: int) -> int:
        """Completion tokens per answer that the key's headroom pays for after the prompt;
        at least 1 (a budget that cannot pay it is refused by the reservation)."""
        left = self.budgets.headroom(key_id, budget) - price.estimate(prompt, 0)
        per_token = price.output_per_mtok / 1_000_000
        tokens = int(left / per_token / answers) if left > 0 else 0
        return max(1, min(tokens, BUDGETED_COMPLETION_CAP))
