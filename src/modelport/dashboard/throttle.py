"""Throttling dashboard sign-ins: a client that fails ``MAX_FAILURES`` times within
``WINDOW_S`` seconds is refused (429, Retry-After) until the oldest of those failures is
``WINDOW_S`` old, even with the right key, so the admin key cannot be guessed at the server's
speed. A success forgets the client's failures.

Clients are told apart by the connection's address: behind a reverse proxy every user shares
the proxy's, so a run of wrong keys through it pauses sign-ins for everyone for up to a minute.
The table (address -> recent failure times on the monotonic clock) belongs to the app's
services (``Services.dashboard_failures``), lives in this process only and holds at most
``MAX_CLIENTS`` addresses: a new one pushes out the one whose failures are oldest. Used on the
event loop's thread only, so it needs no lock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MAX_FAILURES = 5
WINDOW_S = 60.0
MAX_CLIENTS = 1024


class SignInThrottle:
    """Counting failed sign-ins per client in ``table``."""

    __slots__ = ("_clock", "_table")

    def __init__(
        self, table: dict[str, deque[float]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._table = table
        self._clock = clock

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        failures = self._recent(client)
        if failures is None or len(failures) < MAX_FAILURES:
            return None
        return max(failures[0] + WINDOW_S - self._clock(), 0.001)

    def failed(self, client: str) -> None:
        failures = self._recent(client)
        if failures is None:
            while len(self._table) >= MAX_CLIENTS:
                del self._table[min(self._table, key=lambda c: self._table[c][-1])]
            failures = self._table[client] = deque(maxlen=MAX_FAILURES)
        failures.append(self._clock())

    def succeeded(self, client: str) -> None:
        self._table.pop(client, None)

    def _recent(self, client: str) -> deque[float] | None:
        """The client's failures within the window; None (and forgotten) when there are none."""
        failures = self._table.get(client)
        if failures is None:
            return None
        horizon = self._clock() - WINDOW_S
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._table[client]
            return None
        return failures
