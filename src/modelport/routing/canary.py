"""A canary: one target of a route that gets a share of its traffic until it proves itself.

The route's other targets are its stable side. Each request goes to the canary side with
the configured probability (``percent``), or, when sticky, by a hash of the caller's key id
or of a header's value, so that one caller stays on one side. A request on the canary side
tries the canary first and the stable targets after it, so a failing canary costs callers
a retry, not an error.

Every attempt on either side is observed: its outcome and its time. Over the last
``window_s`` seconds the canary must keep its error rate at or under ``max_error_rate`` and,
when set, its 95th-percentile latency under ``max_p95_ms``, once it has ``min_requests``.
A breach, or its circuit breaker opening, rolls it back at once: no more traffic, and
``on_change`` tells the server, which records it (audit log, store, metrics, log line) so
that every replica and a restart follow.
By hand, ``promote`` sends all of the route's traffic to it, ``abort`` none, ``resume``
starts it again with an empty window. No I/O here.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from modelport.config.settings import CanarySettings

RUNNING, ROLLED_BACK, PROMOTED, ABORTED = "running", "rolled_back", "promoted", "aborted"
STATES = (RUNNING, ROLLED_BACK, ABORTED, PROMOTED)  # in the order of modelport_canary_state
_CHECK_EVERY_S = 0.25  # how often the window is judged, at most


@dataclass(frozen=True, slots=True)
class WindowFigures:
    requests: int
    errors: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


class _Window:
    """Outcomes of the last ``window_s`` seconds: (when, ok, milliseconds)."""

    __slots__ = ("_items", "_width", "errors")

    def __init__(self, window_s: float) -> None:
        self._width = window_s
        self._items: deque[tuple[float, bool, float]] = deque()
        self.errors = 0

    def add(self, now: float, ok: bool, ms: float) -> None:
        self._items.append((now, ok, ms))
        self.errors += not ok
        self.prune(now)

    def prune(self, now: float) -> None:
        items, oldest = self._items, now - self._width
        while items and items[0][0] < oldest:
            self.errors -= not items.popleft()[1]

    @property
    def count(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()
        self.errors = 0

    def figures(self, now: float) -> WindowFigures:
        self.prune(now)
        times = sorted(ms for _, _, ms in self._items)
        p95 = times[max(0, math.ceil(0.95 * len(times)) - 1)] if times else None
        return WindowFigures(len(times), self.errors, p95)


class Canary:
    def __init__(self, route: str, target: str, settings: CanarySettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.route = route
        self.target = target  # its label
        self.settings = settings
        self.state = RUNNING
        self.reason = ""
        self._clock = clock
        self._canary = _Window(settings.window_s)
        self._stable = _Window(settings.window_s)
        self._checked = 0.0
        # the server's hook: (canary, reason) after an automatic rollback
        self.on_change: Callable[[Canary, str], None] | None = None

    def on_canary_side(self, caller: str | None, rng: random.Random) -> bool:
        """Whether this request goes to the canary first."""
        state = self.state
        if state != RUNNING:
            return state == PROMOTED
        share = self.settings.percent / 100.0
        if caller is None:
            return rng.random() < share
        digest = hashlib.blake2b(f"{self.route}\0{caller}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < share

    def observe(self, canary: bool, ok: bool, seconds: float) -> None:
        """An attempt on the canary (``canary``) or a stable target ended."""
        now = self._clock()
        if not canary:
            self._stable.add(now, ok, seconds * 1000)
            return
        self._canary.add(now, ok, seconds * 1000)
        if self.state == RUNNING:
            self._judge(now, latency=now - self._checked >= _CHECK_EVERY_S)

    def _judge(self, now: float, *, latency: bool) -> None:
        """Roll back on a breach: the error rate after every outcome (counts only), the
        latency (a sort of the window) a few times a second at most."""
        slo, window = self.settings, self._canary
        requests = window.count
        if requests < slo.min_requests:
            return
        reason = ""
        rate = window.errors / requests
        if rate > slo.max_error_rate:
            reason = (f"error rate {rate:.1%} over {requests} requests in "
                      f"{slo.window_s:g} s is above {slo.max_error_rate:.1%}")
        elif slo.max_p95_ms is not None and latency:
            self._checked = now
            p95 = window.figures(now).p95_ms
            if p95 is not None and p95 > slo.max_p95_ms:
                reason = (f"p95 latency {p95:.0f} ms over {requests} requests in "
                          f"{slo.window_s:g} s is above {slo.max_p95_ms:g} ms")
        if reason:
            self._roll_back(reason)

    def breaker_opened(self) -> None:
        """The canary's circuit breaker opened: it failed too often to be judged further."""
        if self.state == RUNNING:
            self._roll_back("its circuit breaker opened")

    def _roll_back(self, reason: str) -> None:
        self.set_state(ROLLED_BACK, reason)
        if self.on_change is not None:
            self.on_change(self, reason)

    def set_state(self, state: str, reason: str = "") -> None:
        """Move to ``state`` (from the server's own judgement, the store, or an operator);
        running again starts from an empty window."""
        if state == RUNNING and self.state != RUNNING:
            self._canary.clear()
            self._stable.clear()
        self.state, self.reason = state, reason

    def figures(self) -> tuple[WindowFigures, WindowFigures]:
        """The canary's and the stable side's figures over the window, now."""
        now = self._clock()
        return self._canary.figures(now), self._stable.figures(now)
