"""Circuit breakers: stop sending requests to a target that keeps failing, then probe it.

One :class:`CircuitBreaker` guards one target. It is closed (calls pass) until failures trip
it open; while open it refuses calls for ``cooldown_s``; then the next :meth:`allow` turns it
half-open and admits up to ``half_open_probes`` probe calls at a time. That many successes in a
row close it; any probe failure opens it for another cooldown.

It trips on either of two rules, both over the last ``window_s`` seconds:

- count: ``failures`` consecutive failures (a success resets the run), all inside the window,
  so that a rarely used target does not open on failures spread over an hour;
- rate: at least ``min_requests`` calls and a failure fraction of at least ``failure_rate``.

Calls are counted in ten time buckets of ``window_s / 10`` each, so memory is fixed and a
result stops counting between 0.9 and 1.0 window after it was recorded.

This module decides; it does no I/O, reads no clock of its own (a monotonic one is injected),
and knows nothing of targets, providers or HTTP. Everything runs on the event loop's thread,
so there are no locks. The breaker cannot tell which call a result belongs to: a result
recorded while half-open is taken as a probe's verdict, and one recorded while open (a call
admitted before the breaker opened) is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from modelport.config.settings import BreakerSettings

BreakerState = Literal["closed", "open", "half_open"]

CLOSED: BreakerState = "closed"
OPEN: BreakerState = "open"
HALF_OPEN: BreakerState = "half_open"

_BUCKETS = 10


class CircuitBreaker:
    """The breaker of one target: ask :meth:`allow` before a call, record its result after.

    Every admitted call must end in exactly one of :meth:`record_success`,
    :meth:`record_failure` or (a probe that never reached the target)
    :meth:`release_probe_without_result`; otherwise a half-open breaker keeps a probe slot
    taken. ``on_transition(old, new)`` is called after every state change, with the new state
    already in force.
    """

    __slots__ = (
        "_calls",
        "_clock",
        "_consecutive",
        "_fails",
        "_head",
        "_on_transition",
        "_opened_at",
        "_probe_successes",
        "_probes_in_flight",
        "_settings",
        "_state",
        "_total_calls",
        "_total_fails",
        "_width",
    )

    def __init__(
        self,
        settings: BreakerSettings,
        clock: Callable[[], float],
        on_transition: Callable[[str, str], None] | None = None,
    ) -> None:
        """``clock`` returns monotonic seconds (``time.monotonic`` in production)."""
        self._settings = settings
        self._clock = clock
        self._on_transition = on_transition
        self._state: BreakerState = CLOSED
        self._width = settings.window_s / _BUCKETS
        self._calls = [0] * _BUCKETS
        self._fails = [0] * _BUCKETS
        # The bucket number (time // width) that the newest results went into.
        self._head = int(clock() // self._width)
        self._total_calls = 0
        self._total_fails = 0
        self._consecutive = 0
        self._opened_at = 0.0
        self._probes_in_flight = 0
        self._probe_successes = 0

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker turns half-open only in :meth:`allow`."""
        return self._state

    @property
    def settings(self) -> BreakerSettings:
        return self._settings

    def allow(self) -> bool:
        """Whether a call may go to the target now; a True while half-open takes a probe slot."""
        state = self._state
        if state == CLOSED:
            return True
        if state == OPEN:
            if self._clock() - self._opened_at < self._settings.cooldown_s:
                return False
            self._probes_in_flight = 0
            self._probe_successes = 0
            self._transition(HALF_OPEN)
        if self._probes_in_flight >= self._settings.half_open_probes:
            return False
        self._probes_in_flight += 1
        return True

    def record_success(self) -> None:
        state = self._state
        if state == CLOSED:
            self._consecutive = 0
            now = self._clock()
            if now // self._width > self._head:  # the window moves on first
                self._count(now, failed=False)
            else:  # the newest bucket: self._count(now, failed=False), without the call
                self._calls[self._head % _BUCKETS] += 1
                self._total_calls += 1
        elif state == HALF_OPEN:
            self._free_probe()
            self._probe_successes += 1
            if self._probe_successes >= self._settings.half_open_probes:
                self._reset_window()
                self._transition(CLOSED)

    def record_failure(self) -> None:
        state = self._state
        if state == CLOSED:
            now = self._clock()
            self._consecutive += 1
            self._count(now, failed=True)
            if self._should_open():
                self._open(now)
        elif state == HALF_OPEN:
            self._free_probe()
            self._open(self._clock())

    def release_probe_without_result(self) -> None:
        """Free the slot of a probe that was admitted but never ran (say, the client left)."""
        if self._state == HALF_OPEN:
            self._free_probe()

    def seconds_until_retry(self) -> float:
        """Remaining cooldown while open (for Retry-After); 0 when closed or half-open."""
        if self._state != OPEN:
            return 0.0
        return max(0.0, self._settings.cooldown_s - (self._clock() - self._opened_at))

    def _should_open(self) -> bool:
        settings = self._settings
        # The run of consecutive failures is the newest results, so the part of it inside the
        # window is whichever is smaller: the run, or all failures in the window.
        if min(self._consecutive, self._total_fails) >= settings.failures:
            return True
        rate = settings.failure_rate
        calls = self._total_calls
        return (
            rate is not None
            and calls >= settings.min_requests
            and self._total_fails / calls >= rate  # a division, so 3/10 meets 0.3
        )

    def _count(self, now: float, *, failed: bool) -> None:
        bucket = int(now // self._width)
        head = self._head
        if bucket > head:
            # Empty the buckets the clock moved past; at most all ten, however long the gap.
            calls, fails = self._calls, self._fails
            for number in range(max(head + 1, bucket - _BUCKETS + 1), bucket + 1):
                slot = number % _BUCKETS
                self._total_calls -= calls[slot]
                self._total_fails -= fails[slot]
                calls[slot] = 0
                fails[slot] = 0
            self._head = bucket
        # A clock that steps back counts into the newest bucket.
        slot = self._head % _BUCKETS
        self._calls[slot] += 1
        self._total_calls += 1
        if failed:
            self._fails[slot] += 1
            self._total_fails += 1

    def _reset_window(self) -> None:
        for slot in range(_BUCKETS):
            self._calls[slot] = 0
            self._fails[slot] = 0
        self._total_calls = 0
        self._total_fails = 0
        self._consecutive = 0

    def _free_probe(self) -> None:
        # Clamped: a call admitted while closed may finish while half-open and be counted here.
        if self._probes_in_flight > 0:
            self._probes_in_flight -= 1

    def _open(self, now: float) -> None:
        self._opened_at = now
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._transition(OPEN)

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        self._state = new
        if self._on_transition is not None:
            self._on_transition(old, new)
