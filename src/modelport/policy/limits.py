"""Rate limits per scope: requests and tokens per minute, and concurrent requests.

This module owns the limit arithmetic (token buckets, concurrency counters) and the
reserve-then-settle protocol of :class:`Limiter`: ``admit`` checks every scope and takes from
all of them in one synchronous step, or from none; the caller later ``settle``s the actual
token count and ``release``s the concurrency slots. It does no I/O, reads no clock of its own
(one is injected) and knows nothing of keys or routes beyond an opaque scope id such as
``"key:abc"``, whose part before ``:`` ("key", "route") is the only part ever shown to clients.

Exactness rests on the event loop: everything runs on one thread, and there is no ``await``
between a check and its take, so 100 concurrent admits against rpm 10 admit exactly 10.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelport.errors import RateLimited

# Refill is continuous and fractional; this absorbs float error so that, say, six refills of
# 1/6 token count as one whole token.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of one scope; ``None`` is unlimited. Values must be positive."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "max_concurrency"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be a positive integer or None, got {value}")

    def is_unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None and self.max_concurrency is None


class TokenBucket:
    """A bucket of ``capacity`` tokens refilled continuously at ``capacity / 60`` per second.

    It starts full. The level may go negative through :meth:`force_take` (usage above an
    estimate); it then refills from below zero, so overuse is paid back in time.
    """

    __slots__ = ("_level", "_rate", "_updated", "capacity")

    def __init__(self, capacity: int, now: float) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._rate = capacity / 60.0
        self._level = float(capacity)
        self._updated = now

    def _refill(self, now: float) -> float:
        # A clock that stands still or steps back adds nothing.
        elapsed = now - self._updated
        if elapsed > 0:
            self._level = min(float(self.capacity), self._level + elapsed * self._rate)
            self._updated = now
        return self._level

    def level(self, now: float) -> float:
        """The exact (fractional, possibly negative) number of tokens available."""
        return self._refill(now)

    def is_full(self, now: float) -> bool:
        return self._refill(now) >= self.capacity - _EPS

    def can_take(self, amount: int, now: float) -> bool:
        """Whether :meth:`try_take` would succeed; an amount above capacity needs a full bucket."""
        level = self._refill(now)
        if amount > self.capacity:
            return level >= self.capacity - _EPS
        return level >= amount - _EPS

    def try_take(self, amount: int, now: float) -> bool:
        """Take ``amount`` if available (an amount above capacity: if full); else take nothing."""
        if not self.can_take(amount, now):
            return False
        self._level -= amount
        return True

    def force_take(self, amount: int, now: float) -> None:
        """Take ``amount`` unconditionally; the level may go below zero."""
        self._refill(now)
        self._level -= amount

    def give_back(self, amount: int, now: float) -> None:
        """Return ``amount`` tokens, never above capacity."""
        level = self._refill(now)
        self._level = min(float(self.capacity), level + amount)

    def remaining(self, now: float) -> int:
        """Whole tokens available now, at least 0."""
        return max(0, math.floor(self._refill(now) + _EPS))

    def seconds_until(self, amount: int, now: float) -> float:
        """Seconds until ``amount`` tokens are available (above capacity: until full)."""
        deficit = min(amount, self.capacity) - self._refill(now)
        if deficit <= _EPS:
            return 0.0
        return deficit / self._rate


_REQUESTS = "requests per minute"
_TOKENS = "tokens per minute"
_CONCURRENCY = "concurrent requests"


class _Scope:
    """Bucket state of one scope id; mutated in place so admissions can keep a reference."""

    __slots__ = ("in_flight", "kind", "limits", "requests", "tokens")

    def __init__(self, scope_id: str, limits: Limits, now: float) -> None:
        kind, sep, _ = scope_id.partition(":")
        self.kind = kind if sep else "scope"
        self.in_flight = 0
        self.limits = limits
        self.requests = TokenBucket(limits.rpm, now) if limits.rpm else None
        self.tokens = TokenBucket(limits.tpm, now) if limits.tpm else None

    def reconfigure(self, limits: Limits, now: float) -> None:
        """Adopt changed limits, keeping what was used (clamped to the new capacity)."""
        self.requests = _resized(self.requests, limits.rpm, now)
        self.tokens = _resized(self.tokens, limits.tpm, now)
        self.limits = limits

    def refusal(self, estimated_tokens: int, now: float) -> tuple[str, int, float] | None:
        """The first limit this request would break, its value, and the longest wait of all."""
        first: tuple[str, int] | None = None
        wait = 0.0
        requests, tokens = self.requests, self.tokens
        if requests is not None and not requests.can_take(1, now):
            first = (_REQUESTS, requests.capacity)
            wait = requests.seconds_until(1, now)
        if tokens is not None and not tokens.can_take(estimated_tokens, now):
            first = first or (_TOKENS, tokens.capacity)
            wait = max(wait, tokens.seconds_until(estimated_tokens, now))
        cap = self.limits.max_concurrency
        if cap is not None and self.in_flight >= cap:
            first = first or (_CONCURRENCY, cap)
        return None if first is None else (*first, wait)

    def take(self, estimated_tokens: int, now: float) -> None:
        if self.requests is not None:
            self.requests.force_take(1, now)
        if self.tokens is not None:
            self.tokens.force_take(estimated_tokens, now)
        self.in_flight += 1

    def is_idle(self, now: float) -> bool:
        return (
            self.in_flight == 0
            and (self.requests is None or self.requests.is_full(now))
            and (self.tokens is None or self.tokens.is_full(now))
        )

    def headers(self, now: float) -> dict[str, str]:
        out: dict[str, str] = {}
        for bucket, name in ((self.requests, "requests"), (self.tokens, "tokens")):
            if bucket is not None:
                out[f"x-ratelimit-limit-{name}"] = str(bucket.capacity)
                out[f"x-ratelimit-remaining-{name}"] = str(bucket.remaining(now))
                reset = bucket.seconds_until(bucket.capacity, now)
                out[f"x-ratelimit-reset-{name}"] = format_duration(reset)
        return out


def _resized(bucket: TokenBucket | None, capacity: int | None, now: float) -> TokenBucket | None:
    if capacity is None:
        return None
    if bucket is not None and bucket.capacity == capacity:
        return bucket
    fresh = TokenBucket(capacity, now)
    if bucket is not None:
        used = bucket.capacity - bucket.level(now)
        fresh.force_take(math.ceil(max(0.0, used) - _EPS), now)
    return fresh


class Admission:
    """What :meth:`Limiter.admit` returns; settle the actual tokens, then release.

    This base class is the admission of a request that no limit applies to: every method is
    a no-op and one shared instance serves all such requests.
    """

    __slots__ = ()

    def headers(self) -> dict[str, str]:
        """The x-ratelimit-* values right after admission (empty when nothing is limited)."""
        return {}

    def settle(self, actual_tokens: int) -> None:
        """Correct the token buckets from the estimate to ``actual_tokens``; once only."""

    def release(self) -> None:
        """Free the concurrency slots; once only."""


_UNLIMITED = Admission()  # stateless, so sharing it is safe


class _HeldAdmission(Admission):
    __slots__ = ("_clock", "_estimated", "_headers", "_released", "_scopes", "_settled")

    def __init__(
        self,
        scopes: list[_Scope],
        estimated_tokens: int,
        clock: Callable[[], float],
        headers: dict[str, str],
    ) -> None:
        self._scopes = scopes
        self._estimated = estimated_tokens
        self._clock = clock
        self._headers = headers
        self._settled = False
        self._released = False

    def headers(self) -> dict[str, str]:
        return self._headers

    def settle(self, actual_tokens: int) -> None:
        if self._settled:
            return
        self._settled = True
        delta = actual_tokens - self._estimated
        if delta == 0:
            return
        now = self._clock()
        for scope in self._scopes:
            if scope.tokens is None:
                continue
            if delta < 0:
                scope.tokens.give_back(-delta, now)
            else:
                scope.tokens.force_take(delta, now)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        for scope in self._scopes:
            scope.in_flight -= 1


class Limiter:
    """Bucket state per scope id, and the all-or-nothing admission across several scopes."""

    def __init__(self, clock: Callable[[], float]) -> None:
        """``clock`` returns monotonic seconds (``time.monotonic`` in production)."""
        self._clock = clock
        self._scopes: dict[str, _Scope] = {}

    def admit(self, scopes: Sequence[tuple[str, Limits]], estimated_tokens: int) -> Admission:
        """Take one request and ``estimated_tokens`` from every scope, or raise RateLimited.

        Scope ids must be distinct. Nothing is taken from any scope unless all of them pass.
        A token estimate above a scope's tpm is admitted when that bucket is full.
        """
        for _, limits in scopes:
            if not limits.is_unlimited():
                break
        else:
            return _UNLIMITED
        if estimated_tokens < 0:
            raise ValueError(f"estimated_tokens must be >= 0, got {estimated_tokens}")
        now = self._clock()
        held: list[_Scope] = []
        for scope_id, limits in scopes:
            if limits.is_unlimited():
                continue
            scope = self._scope(scope_id, limits, now)
            if scope in held:
                raise ValueError("scope ids passed to admit() must be distinct")
            if scope.refusal(estimated_tokens, now) is not None:
                raise self._refuse(scopes, estimated_tokens, now)
            held.append(scope)
        for scope in held:
            scope.take(estimated_tokens, now)
        return _HeldAdmission(held, estimated_tokens, self._clock, _headers_of(held, now))

    def prune(self, now: float | None = None) -> int:
        """Drop the state of scopes that are full and have nothing in flight; return how many."""
        at = self._clock() if now is None else now
        idle = [scope_id for scope_id, scope in self._scopes.items() if scope.is_idle(at)]
        for scope_id in idle:
            del self._scopes[scope_id]
        return len(idle)

    def __len__(self) -> int:
        """How many scopes hold state."""
        return len(self._scopes)

    def _scope(self, scope_id: str, limits: Limits, now: float) -> _Scope:
        scope = self._scopes.get(scope_id)
        if scope is None:
            scope = self._scopes[scope_id] = _Scope(scope_id, limits, now)
        elif scope.limits is not limits and scope.limits != limits:
            scope.reconfigure(limits, now)
        return scope

    def _refuse(
        self, scopes: Sequence[tuple[str, Limits]], estimated_tokens: int, now: float
    ) -> RateLimited:
        """Build the error: names the first broken limit, waits for the longest one."""
        first: tuple[str, str, int] | None = None
        wait = 0.0
        limited: list[_Scope] = []
        for scope_id, limits in scopes:
            if limits.is_unlimited():
                continue
            scope = self._scope(scope_id, limits, now)
            limited.append(scope)
            broken = scope.refusal(estimated_tokens, now)
            if broken is not None:
                what, limit, seconds = broken
                first = first or (scope.kind, what, limit)
                wait = max(wait, seconds)
        assert first is not None
        kind, what, limit = first
        retry_after = max(1, math.ceil(wait - _EPS))
        headers = {"Retry-After": str(retry_after), **_headers_of(limited, now)}
        message = (
            f"Rate limit reached for this {kind}: {what} (limit {limit}). "
            f"Try again in {retry_after}s."
        )
        return RateLimited(message, headers=headers)


def _headers_of(scopes: list[_Scope], now: float) -> dict[str, str]:
    """The x-ratelimit-* headers of the first scope with a per-minute limit."""
    for scope in scopes:
        if scope.requests is not None or scope.tokens is not None:
            return scope.headers(now)
    return {}


def format_duration(seconds: float) -> str:
    """A duration as OpenAI writes its reset headers: "20ms", "6s", "8.64s", "6m0s", "1h2m3s".

    Rounded up to the millisecond, so a client that waits this long finds the limit reset.
    """
    ms = max(0, math.ceil(seconds * 1000 - 1e-6))
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    out = f"{secs}s"
    if hours or minutes:
        out = f"{minutes}m{out}"
    if hours:
        out = f"{hours}h{out}"
    return out
