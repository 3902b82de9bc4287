"""Admission to one target: a concurrency cap in front of a bounded, fair priority queue.

A :class:`Gate` hands out :class:`Slot` objects, at most ``max_concurrency`` at a time. When
none is free a caller waits in a queue of at most ``max_queue`` entries, ordered by strict
priority (higher first) and, within one priority, round-robin between tenants, each tenant's
own waiters in arrival order, so one caller flooding the queue cannot starve another.

A request with no chance of service is refused at once, never parked: when the queue is full,
or when the estimated wait (an EWMA of slot hold times times the queue ahead of it, divided by
the cap) exceeds the time it is willing to wait. The refusal is ``OverShare`` (429) when the
caller already holds more than its fair share of the queue, else ``Overloaded`` (503); both
carry ``Retry-After``. A waiter not served within its time gets ``Overloaded``, whatever its
share.

Background callers (``priority`` below zero: batch lines) use spare capacity only. They
never queue, and are admitted only while the slots they hold leave room for the most
foreground requests seen in flight over the last ``PEAK_WINDOW_S`` seconds and for a
quarter of the cap besides (for arrivals beyond that peak); otherwise they are refused at
once (``Overloaded``) and come back later. So a batch fills what interactive
traffic leaves, and an interactive request never waits behind a batch line it could have
been let in before. A gate without a cap has no capacity to protect: background callers go
in like any other.

Waiting is event-driven: each waiter is a future that :meth:`Slot.release` resolves with a
fresh slot (the slot passes hand to hand, so a newcomer cannot overtake the queue), and its
timeout is a timer on the event loop. Everything runs on one event loop and there is no
``await`` between a check and its update, which is what keeps the counts exact; a gate is not
thread-safe. This module does no I/O and knows nothing of routes or keys: a tenant is an
opaque string, and statuses are chosen by :mod:`modelport.errors`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from modelport.errors import Overloaded, OverShare

# Weight of the newest hold time in the moving average: about the last ten releases count.
_HOLD_ALPHA = 0.2
# Absorbs float error so that an estimate of exactly 2.0s is not answered "Retry-After: 3".
_EPS = 1e-9
BACKGROUND = -1  # the priority of batch lines: spare capacity only
PEAK_WINDOW_S = 5.0  # how long the foreground's busiest moment is kept free of background


@dataclass(frozen=True, slots=True)
class GateSettings:
    """Admission settings of one target.

    ``max_concurrency`` None is unlimited (acquire never waits); ``max_queue`` is how many
    callers may wait beyond the running ones; ``queue_timeout_s`` is the longest one waits.
    """

    max_concurrency: int | None = None
    max_queue: int = 0
    queue_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(
                f"max_concurrency must be positive or None, got {self.max_concurrency}"
            )
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {self.max_queue}")
        if not self.queue_timeout_s > 0:
            raise ValueError(f"queue_timeout_s must be positive, got {self.queue_timeout_s}")


class Slot:
    """The right to send one request to the target; release it once the request is done.

    ``release`` is idempotent. A slot is also a context manager: ``with await gate.acquire():``.
    """

    __slots__ = ("_acquired_at", "_background", "_gate", "_released", "waited_s")

    def __init__(self, gate: Gate, acquired_at: float, background: bool = False) -> None:
        self._gate = gate
        self._acquired_at = acquired_at
        self._background = background
        self._released = False
        self.waited_s = 0.0  # how long its caller queued for it

    def release(self) -> None:
        """Record the hold time, then hand the slot to the next waiter or free it."""
        if self._released:
            return
        self._released = True
        gate = self._gate
        if gate._cap is None:  # gate._release(...), without the call: no one waits
            gate._in_flight -= 1
        else:
            gate._release(self._acquired_at, record=True, background=self._background)

    def _pass_on(self) -> None:
        """Give back a slot its waiter never used; its hold time means nothing."""
        if not self._released:
            self._released = True
            self._gate._release(self._acquired_at, record=False,
                                background=self._background)

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _Waiter:
    """One queued caller. The future resolves to its slot, or to None when its time is up."""

    __slots__ = ("enqueued_at", "future", "priority", "queued", "tenant", "timer")

    def __init__(
        self, future: asyncio.Future[Slot | None], priority: int, tenant: str, now: float
    ) -> None:
        self.future = future
        self.priority = priority
        self.tenant = tenant
        self.enqueued_at = now
        self.queued = True
        self.timer: asyncio.TimerHandle | None = None


class _Level:
    """The waiters of one priority: a FIFO per tenant, tenants served round-robin."""

    __slots__ = ("count", "tenants")

    def __init__(self) -> None:
        self.count = 0
        # Insertion order is the round-robin order: a served tenant with more waiters goes last.
        self.tenants: dict[str, deque[_Waiter]] = {}

    def push(self, waiter: _Waiter) -> None:
        fifo = self.tenants.get(waiter.tenant)
        if fifo is None:
            fifo = self.tenants[waiter.tenant] = deque()
        fifo.append(waiter)
        self.count += 1

    def pop(self) -> _Waiter:
        tenant = next(iter(self.tenants))
        fifo = self.tenants.pop(tenant)
        waiter = fifo.popleft()
        if fifo:
            self.tenants[tenant] = fifo
        self.count -= 1
        return waiter

    def remove(self, waiter: _Waiter) -> None:
        fifo = self.tenants[waiter.tenant]
        fifo.remove(waiter)  # usually the head: waiters of one tenant time out in order
        if not fifo:
            del self.tenants[waiter.tenant]
        self.count -= 1


class Gate:
    """Concurrency cap and fair priority queue of one target; see the module docstring."""

    def __init__(
        self,
        settings: GateSettings,
        clock: Callable[[], float] = time.monotonic,
        *,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        """``clock`` returns monotonic seconds, the clock of ``deadline``; ``on_wait`` is
        called with each queued caller's wait in seconds when it gets its slot."""
        self.settings = settings
        self._cap = settings.max_concurrency
        self._clock = clock
        self._on_wait = on_wait
        self._in_flight = 0
        self._queued = 0
        self._levels: dict[int, _Level] = {}
        self._by_tenant: dict[str, int] = {}
        self._hold_s: float | None = None
        self._background = 0  # background slots held now
        self._peak = 0  # the most foreground slots held at once lately ...
        self._peak_at = -math.inf  # ... and when that was last seen

    @property
    def in_flight(self) -> int:
        """Slots held now."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Callers waiting for a slot now."""
        return self._queued

    async def acquire(
        self, *, priority: int = 0, tenant: str = "", deadline: float | None = None
    ) -> Slot:
        """A slot, at once if one is free and no one waits; else wait for one, or be refused.

        ``deadline`` is an absolute time on the gate's clock after which the caller gives up;
        it bounds the wait in the queue only. Raises ``OverShare`` or ``Overloaded``.
        """
        slot = self.take(priority)
        if slot is not None:
            return slot
        return await self._wait(priority, tenant, deadline)

    def take(self, priority: int = 0) -> Slot | None:
        """A slot at once if one is free and no one waits (a background caller's: if one is
        spare, else ``Overloaded``); None when the caller must wait for one (``acquire``).
        The request path tries this first: no coroutine when the slot is there."""
        if priority < 0 and self._cap is not None:
            return self._spare()
        if self._cap is None:  # no cap: nothing waits, and no wait is estimated
            self._in_flight += 1
            return Slot(self, 0.0)
        if not self._queued and self._in_flight < self._cap:
            self._in_flight += 1
            now = self._clock()
            self._seen(now)
            return Slot(self, now)
        return None

    def _seen(self, now: float) -> None:
        """Note how many foreground slots are held, for the background's reserve."""
        foreground = self._in_flight - self._background
        if foreground >= self._peak or now - self._peak_at > PEAK_WINDOW_S:
            self._peak, self._peak_at = foreground, now

    def has_spare(self) -> bool:
        """Whether a background caller would get a slot now (always, without a cap)."""
        return self._cap is None or self._spare_at(self._clock())

    def _spare_at(self, now: float) -> bool:
        """No one waits, and beside the background's slots there is still room for the
        foreground's recent peak and a quarter of the cap for new arrivals."""
        cap = self._cap
        assert cap is not None
        foreground = self._in_flight - self._background
        reserve = self._peak if now - self._peak_at <= PEAK_WINDOW_S else foreground
        return not self._queued and self._in_flight < cap and \
            self._background + reserve + cap // 4 < cap

    def _spare(self) -> Slot:
        """A background slot, if one is spare; else ``Overloaded`` at once."""
        now = self._clock()
        if not self._spare_at(now):
            raise Overloaded("The model's capacity is in use by interactive requests; batch "
                             "lines wait for spare capacity.", headers={"Retry-After": "1"})
        self._in_flight += 1
        self._background += 1
        return Slot(self, now, background=True)

    async def _wait(self, priority: int, tenant: str, deadline: float | None) -> Slot:
        now = self._clock()
        if self._queued >= self.settings.max_queue:
            raise self._refusal(tenant, "its queue is full")
        timeout = self.settings.queue_timeout_s
        if deadline is not None:
            timeout = min(timeout, deadline - now)
        if timeout <= 0 or self._estimated_wait(self._ahead_of(priority)) > timeout:
            raise self._refusal(tenant, "the expected wait is longer than this request may wait")
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), priority, tenant, now)
        self._push(waiter)
        waiter.timer = loop.call_later(timeout, self._expire, waiter)
        try:
            slot = await waiter.future
        except BaseException:  # cancelled, or the coroutine closed: leave no trace
            self._abandon(waiter)
            raise
        if slot is None:
            # A timeout is the target's slowness, not this caller's greed: always a 503.
            raise self._refusal(None, f"no slot freed within {timeout:.3g}s")
        slot.waited_s = self._clock() - waiter.enqueued_at
        if self._on_wait is not None:
            try:
                self._on_wait(slot.waited_s)
            except BaseException:
                slot._pass_on()
                raise
        return slot

    def _abandon(self, waiter: _Waiter) -> None:
        """The waiting caller went away: leave the queue, or pass on a slot just handed."""
        if waiter.timer is not None:
            waiter.timer.cancel()
        if waiter.queued:
            self._remove(waiter)
            return
        future = waiter.future
        if future.done() and not future.cancelled():
            handed = future.result()
            if handed is not None:
                handed._pass_on()

    def _expire(self, waiter: _Waiter) -> None:
        """Timer callback: a waiter still queued when its time is up is told so."""
        if waiter.queued:
            self._remove(waiter)
            if not waiter.future.done():
                waiter.future.set_result(None)

    def _release(self, acquired_at: float, *, record: bool, background: bool = False) -> None:
        if self._cap is None:  # no cap: no one waits, no hold time is needed
            self._in_flight -= 1
            return
        now = self._clock()
        if background:
            self._background -= 1
        if record:
            held = max(0.0, now - acquired_at)
            last = self._hold_s
            self._hold_s = held if last is None else last + _HOLD_ALPHA * (held - last)
        while self._queued:
            waiter = self._pop()
            if waiter.future.done():  # cancelled; its task has not run its cleanup yet
                continue
            if waiter.timer is not None:
                waiter.timer.cancel()
            waiter.future.set_result(Slot(self, now))
            self._seen(now)
            return
        self._in_flight -= 1

    def _push(self, waiter: _Waiter) -> None:
        level = self._levels.get(waiter.priority)
        if level is None:
            level = self._levels[waiter.priority] = _Level()
        level.push(waiter)
        self._queued += 1
        self._by_tenant[waiter.tenant] = self._by_tenant.get(waiter.tenant, 0) + 1

    def _pop(self) -> _Waiter:
        # Few distinct priorities are expected, so max() beats keeping a heap in order.
        priority = max(self._levels)
        level = self._levels[priority]
        waiter = level.pop()
        if not level.count:
            del self._levels[priority]
        self._forget(waiter)
        return waiter

    def _remove(self, waiter: _Waiter) -> None:
        level = self._levels[waiter.priority]
        level.remove(waiter)
        if not level.count:
            del self._levels[waiter.priority]
        self._forget(waiter)

    def _forget(self, waiter: _Waiter) -> None:
        waiter.queued = False
        self._queued -= 1
        left = self._by_tenant[waiter.tenant] - 1
        if left:
            self._by_tenant[waiter.tenant] = left
        else:
            del self._by_tenant[waiter.tenant]

    def _ahead_of(self, priority: int) -> int:
        """Waiters that may be served before a newcomer of ``priority``, at worst."""
        return sum(level.count for p, level in self._levels.items() if p >= priority)

    def _estimated_wait(self, ahead: int) -> float:
        """Seconds until a slot frees for the ``ahead + 1``-th in line; 0 before any release."""
        if self._hold_s is None or self._cap is None:
            return 0.0
        return self._hold_s * (ahead + 1) / self._cap

    def _refusal(self, tenant: str | None, why: str) -> Overloaded | OverShare:
        """``OverShare`` if ``tenant`` holds more than its fair share of the queue, else
        ``Overloaded``; both with Retry-After from the estimated wait of the whole queue."""
        retry_after = max(1, math.ceil(self._estimated_wait(self._queued) - _EPS))
        headers = {"Retry-After": str(retry_after)}
        if tenant is not None and self._over_share(tenant):
            return OverShare(
                f"The model is at capacity and {why}; your requests already hold more than "
                f"their fair share of the queue. Try again in {retry_after}s.",
                headers=headers,
            )
        return Overloaded(
            f"The model is at capacity and {why}. Try again in {retry_after}s.", headers=headers
        )

    def _over_share(self, tenant: str) -> bool:
        held = self._by_tenant.get(tenant, 0)
        if not held:
            return False
        share = max(1.0, self.settings.max_queue / len(self._by_tenant))
        return held > share
