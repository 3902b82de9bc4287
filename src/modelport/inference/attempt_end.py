"""The end of one attempt: the one object that lets go of what the attempt holds.

From the moment an attempt has its target's admission slot it holds, until it ends: the
slot, the breaker's verdict on the target (and, while the breaker is half-open, its probe),
the time spent upstream, and, once it is the attempt that answers, the request's ticket
(its limit slots and budget reservation), handed over by the request. ``AttemptEnd`` owns
all of them and lets them go together, exactly once, by one of:

- ``succeed(usage, cost)``: the target answered (a stream: it ran to its end); the breaker
  hears a success and the ticket settles with the usage (none known: the estimate stands);
- ``refuse()``: the target is healthy but refused this request (a client error it answered);
  the breaker hears a success and the ticket gives everything back;
- ``fail(target_fault)``: the attempt failed; the breaker hears a failure when it was the
  target's fault, a success when the target refused the request itself (its length, its
  content, its input);
- ``abandon()``: no verdict on the target (the client left, the task was cancelled).

``fail`` and ``abandon`` take ``served=True`` with the usage seen so far when part of an
answer already reached the client (a stream cut short), so the ticket charges it. The first
end wins; any later call does nothing. The attempt loop creates it, and hands it with a
stream to the relay, which ends it when the stream does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Generic, TypeVar

from modelport.core.context import RequestContext
from modelport.core.usage import Usage

if TYPE_CHECKING:
    from modelport.admission.gate import Slot
    from modelport.policy.access import Ticket
    from modelport.routing.table import Target

R = TypeVar("R")


class AttemptEnd(Generic[R]):
    """``result``: what the attempt answered with, once it answered (the attempt loop's
    outcome is its end: one object per attempt)."""

    __slots__ = ("_ctx", "_slot", "_started", "_ticket", "ended", "result", "target")
    result: R  # set by the attempt loop when the attempt answers

    def __init__(self, target: Target, slot: Slot, ctx: RequestContext,
                 started: float | None = None) -> None:
        """``started``: when the attempt began, on ``time.perf_counter``'s clock (now)."""
        self.target = target
        self._slot = slot
        self._ctx = ctx
        self._ticket: Ticket | None = None
        self._started = time.perf_counter() if started is None else started
        self.ended: str | None = None  # how it ended: "succeeded", "refused", "failed", ...

    def take_ticket(self, ticket: Ticket | None) -> None:
        """The answering attempt takes over the request's ticket; it settles it when it ends."""
        self._ticket = ticket

    def succeed(self, usage: Usage | None = None, cost_usd: float | None = None) -> None:
        if self._end("succeeded", True):
            self.target.breaker.record_success()
            if self._ticket is not None:
                self._settle(usage, cost_usd, served=True)

    def refuse(self) -> None:
        if self._end("refused", True):
            self.target.breaker.record_success()
            self._settle(None, None, served=False)

    def fail(self, target_fault: bool = True, *, usage: Usage | None = None,
             cost_usd: float | None = None, served: bool = False) -> None:
        if self._end("failed", not target_fault):
            if target_fault:
                self.target.breaker.record_failure()
                if self.target.is_canary and self.target.breaker.state == "open":
                    self.target.watch.breaker_opened()  # type: ignore[union-attr]
            else:
                self.target.breaker.record_success()
            self._settle(usage, cost_usd, served=served)

    def abandon(self, *, usage: Usage | None = None, cost_usd: float | None = None,
                served: bool = False) -> None:
        if self._end("abandoned", None):
            self.target.breaker.release_probe_without_result()
            self._settle(usage, cost_usd, served=served)

    def _end(self, how: str, ok: bool | None) -> bool:
        """True the first time: the slot goes back, the time upstream is counted, and the
        route's canary, if any, sees the outcome (``ok`` None: no verdict)."""
        if self.ended is not None:
            return False
        self.ended = how
        elapsed = time.perf_counter() - self._started
        self._ctx.upstream_s += elapsed
        self._slot.release()
        watch = self.target.watch
        if watch is not None and ok is not None:
            watch.observe(self.target.is_canary, ok, elapsed)
        return True

    def _settle(self, usage: Usage | None, cost_usd: float | None, *, served: bool) -> None:
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            ticket.finish(usage, cost_usd, served=served)
