"""Running a request's attempts: targets in the route's order, retries, fallbacks, deadline.

One ``AttemptLoop`` per request. It walks the route's plan (the strategy's order), skipping
targets whose breaker is open or whose context window is too small, waits for each target's
admission gate, calls it under the per-attempt timeout and the request's deadline, and on a
failure applies the route's rule for that error class: ``retry`` (the next target, after a
backoff when it is the same target again, honouring the provider's Retry-After up to a cap)
or ``fail``. It never retries after a stream has started: the caller only hands it the call
that opens one.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from modelport.admission.gate import Slot
from modelport.config.catalogue import CatalogueModel
from modelport.core.context import RequestContext
from modelport.errors import (
    ModelportError,
    Overloaded,
    OverShare,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
)
from modelport.inference.attempt_end import AttemptEnd
from modelport.inference.attempts import TARGET_FAULTS, Attempt, classify_error, classify_reply
from modelport.observability.tracing import Tracing, end_span
from modelport.policy.switches import Switch, Switchboard
from modelport.providers.base import UpstreamReply
from modelport.routing.table import Route, Target

R = TypeVar("R")
_TIMER_SLACK_S = 0.05  # how late the provider's own timeout may end a call past ours


class AttemptLoop:
    # What a request learns as it goes, at its start value until it does (class defaults:
    # one loop is made per request, and most requests change none of them).
    switched: Switch | None = None  # a target was skipped: a switch took it out
    retired: CatalogueModel | None = None  # a target was skipped: its model retired
    last_error: ModelportError | None = None
    last_reply: UpstreamReply | None = None
    policy_refusal = False
    too_long = False  # some target was skipped only because the prompt is too long
    _pos = 0
    _min_window: float = 0.0
    _stream = False
    # targets that cannot help this request again: they refused its credential, its
    # length or its content, which no retry changes (made at the first)
    _excluded: set[str] | None = None
    # per target: (failures in this request, when the last one happened, its error)
    _failed: dict[str, tuple[int, float, ModelportError]] | None = None

    def __init__(
        self,
        route: Route,
        ctx: RequestContext,
        *,
        rng: random.Random,
        deadline: float,
        prompt_tokens: int,
        priority: int,
        tenant: str,
        tracing: Tracing | None = None,
        switches: Switchboard | None = None,
        caller: str | None = None,
    ) -> None:
        self._switches = switches if switches is not None and switches.targets_off else None
        self._route = route
        self._tracing = tracing
        self._ctx = ctx
        self._rng = rng
        self._deadline = deadline
        self._prompt = prompt_tokens
        self._priority = priority
        self._tenant = tenant
        self._plan = route.fixed_plan or route.plan(rng, caller)

    def _next_target(self) -> Target | None:
        """The next target in the plan that may be called now, cycling through the plan."""
        plan, excluded = self._plan, self._excluded
        for _ in range(len(plan)):
            target = plan[self._pos % len(plan)]
            self._pos += 1
            if excluded is not None and target.label in excluded:
                continue
            if self._switches is not None:
                switch = self._switches.for_target(target.provider.name, target.model)
                if switch is not None:
                    self.switched = switch
                    continue
            entry = target.settings.catalogue
            if entry is not None and time.time() >= entry.retired_from:
                self.retired = entry
                continue
            window = target.settings.context_window
            if window is not None and (window <= self._min_window or self._prompt > window):
                self.too_long = True
                continue
            if target.breaker.allow():
                return target
        return None

    def _record(self, target: Target, status: int, error_class: str | None, ms: float) -> None:
        self._ctx.attempts.append(Attempt(target.label, status, error_class, ms))
        target.attempts[error_class or "ok"].value += 1.0

    def _exclude(self, target: Target) -> None:
        if self._excluded is None:
            self._excluded = set()
        self._excluded.add(target.label)

    async def run(
        self, call: Callable[[Target], Awaitable[R]], *, stream: bool = False
    ) -> AttemptEnd[R] | None:
        """Try targets until one answers; ``None`` when every allowed attempt failed (see
        ``last_error`` / ``last_reply``). The answer comes with its attempt's end, for the
        caller to end once it knows how the answer went (a stream: when it is over); every
        failed attempt has ended here. ``stream``: the call opens a stream, so the wait for
        its first byte is idle time too."""
        if stream:
            self._stream = True
        settings = self._route.settings
        max_calls = settings.retries + 1
        calls = 0
        refused: ModelportError | None = None
        while calls < max_calls:
            target = self._next_target()
            if target is None:
                break
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                target.breaker.release_probe_without_result()
                self.last_error = UpstreamTimeout("The request's deadline passed.")
                break
            if self._failed is not None and target.label in self._failed \
                    and not await self._backoff(target, remaining):
                target.breaker.release_probe_without_result()
                break
            try:
                if self._tracing is None:
                    slot = target.gate.take(self._priority) or await target.gate.acquire(
                        priority=self._priority, tenant=self._tenant, deadline=self._deadline)
                else:
                    slot = await self._traced_acquire(self._tracing, target)
            except (Overloaded, OverShare) as exc:
                target.breaker.release_probe_without_result()
                refused = exc
                if self._pos >= len(self._plan) * (settings.retries + 1):
                    break
                continue
            calls += 1
            self._ctx.queue_s += slot.waited_s
            if self._tracing is None:
                outcome = await self._call(target, slot, call)
            else:
                outcome = await self._traced_call(self._tracing, target, slot, call)
            if outcome is not None:
                return outcome
            error_class = self._ctx.attempts[-1].error_class
            if error_class is None or settings.fallback_on.get(error_class, "retry") != "retry":
                break
        if self.last_error is None and self.last_reply is None and refused is not None:
            self.last_error = refused
        return None

    async def _traced_acquire(self, tracing: Tracing, target: Target) -> Slot:
        """The admission gate's wait in a span, for targets with a concurrency cap (the
        others admit at once)."""
        gate = target.gate
        if gate.settings.max_concurrency is None:
            return await gate.acquire(priority=self._priority, tenant=self._tenant,
                                      deadline=self._deadline)
        span = tracing.span("modelport.queue", {"modelport.target": target.label})
        try:
            slot = await gate.acquire(priority=self._priority, tenant=self._tenant,
                                      deadline=self._deadline)
        except BaseException as exc:
            end_span(span, exc)
            raise
        end_span(span)
        return slot

    async def _traced_call(
        self, tracing: Tracing, target: Target, slot: Slot,
        call: Callable[[Target], Awaitable[R]],
    ) -> AttemptEnd[R] | None:
        """``_call`` in its attempt span, the current span while the provider is called so
        that the provider names it as the parent of its request."""
        with tracing.attempt(target.label, len(self._ctx.attempts) + 1) as span:
            outcome = await self._call(target, slot, call)
            attempt = self._ctx.attempts[-1]
            span.outcome(attempt.status, attempt.error_class)
        return outcome

    async def _call(
        self, target: Target, slot: Slot, call: Callable[[Target], Awaitable[R]]
    ) -> AttemptEnd[R] | None:
        settings = self._route.settings
        self._ctx.target = target.label
        started = time.perf_counter()
        stats = target.stats
        stats.in_flight += 1  # stats.started(), without the call
        timeout = self._deadline - time.monotonic()
        if settings.timeout_s is not None:
            timeout = min(timeout, settings.timeout_s)
        if self._stream and settings.stream_idle_timeout_s is not None:
            # a stream's wait for the provider's first byte is idle time too
            timeout = min(timeout, settings.stream_idle_timeout_s)
        end: AttemptEnd[R] = AttemptEnd(target, slot, self._ctx, started)
        error: ModelportError
        try:
            if target.provider_timeout_s > timeout + _TIMER_SLACK_S:
                async with asyncio.timeout(max(timeout, 0.0)):
                    result = await call(target)
            else:  # the provider's own timeout ends the call in time: no second timer
                result = await call(target)
        except TimeoutError:
            error = UpstreamTimeout(f"Target '{target.label}' did not answer in time.")
        except UpstreamError as exc:
            error = exc
        except BaseException:
            stats.finished(None)
            end.abandon()
            raise
        else:
            elapsed = time.perf_counter() - started
            stats.finished(elapsed)
            if isinstance(result, UpstreamReply) and not 200 <= result.status < 300:
                return self._client_error(end, result, elapsed)
            self._ctx.attempts.append(Attempt(target.label, 200, None, elapsed * 1000))
            target.attempts["ok"].value += 1.0  # self._record(...), without the call
            end.result = result
            return end
        elapsed = time.perf_counter() - started
        stats.finished(None)
        error_class = classify_error(error)
        end.fail(target_fault=error_class in TARGET_FAULTS)
        if error_class == "auth":
            self._exclude(target)
        self._record(target, error.status, error_class, elapsed * 1000)
        self.last_error = error
        if self._failed is None:
            self._failed = {}
        failures = self._failed.get(target.label, (0, 0.0, error))[0] + 1
        self._failed[target.label] = (failures, time.monotonic(), error)
        return None

    def _client_error(
        self, end: AttemptEnd[R], reply: UpstreamReply, elapsed: float
    ) -> AttemptEnd[R] | None:
        """A provider's 4xx: passed back as the answer, unless its class has a rule (the
        context length, the content policy), which ends the attempt here."""
        target = end.target
        error_class = classify_reply(reply)
        self._record(target, reply.status, error_class, elapsed * 1000)
        if error_class is None:
            end.result = reply  # type: ignore[assignment]
            return end
        end.refuse()  # the target is healthy; the request was refused
        self.last_reply = reply
        self.last_error = None
        self._exclude(target)
        if error_class == "context_length":
            self._min_window = max(self._min_window, target.settings.context_window or 0)
        if error_class == "content_policy":
            self.policy_refusal = True
        return None

    async def _backoff(self, target: Target, remaining: float) -> bool:
        """Wait before calling a target that already failed in this request (exponential
        backoff with jitter, and at least its Retry-After, capped); False when the deadline
        forbids it."""
        settings = self._route.settings
        failures, failed_at, error = self._failed[target.label]  # type: ignore[index]
        delay = min(settings.backoff_max_s, settings.backoff_s * 2 ** (failures - 1))
        delay *= self._rng.uniform(0.5, 1.0)
        if isinstance(error, UpstreamRateLimited) and error.retry_after_s:
            delay = max(delay, min(error.retry_after_s, settings.retry_after_max_s))
        delay -= time.monotonic() - failed_at  # time spent on other targets counts
        if delay >= remaining:
            return False
        if delay > 0:
            await asyncio.sleep(delay)
        return True
