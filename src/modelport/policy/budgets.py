"""Spending budgets per key: US dollars per UTC day or month, reserved before a call, settled after.

This module owns the period arithmetic (a day starts at 00:00 UTC, a month on the 1st at
00:00 UTC) and the reserve-then-settle book of what each key spent and has in flight. It does
no I/O: the ledger seeds it at start-up through :meth:`BudgetBook.load`, and the wall clock
(epoch seconds) is injected.

The guarantee: a reservation is refused when ``spent + reserved + estimated`` would pass the
limit, and the check and the reservation are one synchronous step (everything runs on one
event-loop thread), so concurrent requests cannot overshoot together. What is spent in a
period is therefore at most the limit plus the sum of ``actual - estimated`` over settled
reservations whose actual cost exceeded their estimate.

Which period a cost lands in: always the period current when it is settled. A reservation
made before a rollover and settled after it is counted in the new period (its reservation
is carried over at the rollover, so it also holds back new requests there). This matches a
ledger summed by completion time, which is what :meth:`BudgetBook.load` is seeded from.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from modelport.errors import BudgetExceeded

Period = Literal["day", "month"]

# Sums of float costs drift by a few ulps; a budget is not refused over a billionth of a cent.
_EPS_USD = 1e-9


@dataclass(frozen=True, slots=True)
class Budget:
    """At most ``limit_usd`` per ``period``; a limit of 0 refuses every request."""

    limit_usd: float
    period: Period

    def __post_init__(self) -> None:
        if not self.limit_usd >= 0:
            raise ValueError(f"limit_usd must be >= 0, got {self.limit_usd}")
        if self.period not in ("day", "month"):
            raise ValueError(f"period must be 'day' or 'month', got {self.period!r}")


def period_start(period: Period, now_epoch: float) -> float:
    """Epoch seconds of the start (UTC) of the day or month containing ``now_epoch``."""
    now = datetime.fromtimestamp(now_epoch, UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return start.timestamp()


def period_end(period: Period, now_epoch: float) -> float:
    """Epoch seconds of the end (UTC) of the day or month containing ``now_epoch``."""
    start = datetime.fromtimestamp(period_start(period, now_epoch), UTC)
    if period == "day":
        return start.timestamp() + 86_400
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1).timestamp()
    return start.replace(month=start.month + 1).timestamp()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Account:
    """One key's current period; mutated in place so reservations can keep a reference."""

    __slots__ = ("end", "open", "period", "reserved", "spent", "start")

    def __init__(self) -> None:
        self.period: Period | None = None  # None: not yet matched to a budget (fresh or loaded)
        self.start = -math.inf
        self.end = -math.inf
        self.spent = 0.0
        self.reserved = 0.0
        self.open = 0

    def roll(self, period: Period, now: float) -> None:
        """Move to the period containing ``now``; spent restarts, in-flight stays reserved.

        Only forward: a wall clock stepping back within or before the period changes nothing.
        """
        if self.period == period and now < self.end:
            return
        start = period_start(period, now)
        if self.period == period and start < self.start:
            return
        if start != self.start:
            self.spent = 0.0
        self.period = period
        self.start = start
        self.end = period_end(period, now)

    def unreserve(self, amount: float) -> None:
        self.open -= 1
        # Exactly zero once nothing is in flight, so float drift cannot accumulate.
        self.reserved = max(0.0, self.reserved - amount) if self.open else 0.0


class Reservation:
    """An estimated cost held against a key's budget until it is settled or cancelled."""

    __slots__ = ("_account", "_clock", "_done", "_period", "estimated_usd")

    def __init__(
        self, account: _Account, period: Period, estimated_usd: float, clock: Callable[[], float]
    ) -> None:
        self._account = account
        self._period = period
        self._clock = clock
        self._done = False
        self.estimated_usd = estimated_usd

    def settle(self, actual_usd: float) -> None:
        """Release the reservation and spend ``actual_usd`` in the current period; once only."""
        if self._done:
            return
        if not actual_usd >= 0:
            raise ValueError(f"actual_usd must be >= 0, got {actual_usd}")
        self._done = True
        # The budget's period may have changed since (a config reload): follow the account.
        self._account.roll(self._account.period or self._period, self._clock())
        self._account.unreserve(self.estimated_usd)
        self._account.spent += actual_usd

    def cancel(self) -> None:
        """Release the reservation without spending (the provider never answered); once only."""
        if self._done:
            return
        self._done = True
        self._account.unreserve(self.estimated_usd)


class BudgetBook:
    """Spent and reserved dollars per key id, in the key's current budget period."""

    def __init__(self, clock: Callable[[], float]) -> None:
        """``clock`` returns wall-clock epoch seconds (``time.time`` in production)."""
        self._clock = clock
        self._accounts: dict[str, _Account] = {}

    def reserve(self, key_id: str, budget: Budget, estimated_usd: float) -> Reservation:
        """Hold ``estimated_usd`` against the key's budget, or raise BudgetExceeded."""
        if not estimated_usd >= 0:
            raise ValueError(f"estimated_usd must be >= 0, got {estimated_usd}")
        now = self._clock()
        account = self._account(key_id)
        account.roll(budget.period, now)
        spent_out = account.spent >= budget.limit_usd - _EPS_USD
        committed = account.spent + account.reserved + estimated_usd
        if spent_out or committed > budget.limit_usd + _EPS_USD:
            raise _exceeded(account.end, now, spent_out)
        account.reserved += estimated_usd
        account.open += 1
        return Reservation(account, budget.period, estimated_usd, self._clock)

    def spent(self, key_id: str, budget: Budget) -> float:
        """Dollars settled in the key's current period (reservations not included)."""
        account = self._accounts.get(key_id)
        if account is None:
            return 0.0
        account.roll(budget.period, self._clock())
        return account.spent

    def headroom(self, key_id: str, budget: Budget) -> float:
        """Dollars the key may still commit this period: its limit less what it spent and
        what its requests in flight hold."""
        account = self._account(key_id)
        account.roll(budget.period, self._clock())
        return max(budget.limit_usd - account.spent - account.reserved, 0.0)

    def reserved(self, key_id: str) -> float:
        """Dollars held by reservations not yet settled or cancelled."""
        account = self._accounts.get(key_id)
        return 0.0 if account is None else account.reserved

    def load(self, key_id: str, period_start: float, spent_usd: float) -> None:
        """Seed what the key spent in the period starting at ``period_start`` (from the ledger).

        Replaces the spent amount, unless this process has already counted more in that same
        period (the ledger is read late, after a store that was down at start came back, and
        may not hold yet what was answered meanwhile); reservations in flight are kept. If
        ``period_start`` is not the start of the period current at the next use, the amount is
        dropped then.
        """
        account = self._account(key_id)
        counted = account.spent if account.start == period_start else 0.0
        account.period = None
        account.start = period_start
        account.end = -math.inf
        account.spent = max(spent_usd, counted)

    def _account(self, key_id: str) -> _Account:
        account = self._accounts.get(key_id)
        if account is None:
            account = self._accounts[key_id] = _Account()
        return account


def _exceeded(end: float, now: float, spent_out: bool) -> BudgetExceeded:
    retry_after = max(1, math.ceil(end - now))
    why = "is spent" if spent_out else "would be exceeded by this request"
    message = f"The budget for this period {why}; it resets at {_iso(end)}."
    return BudgetExceeded(message, headers={"Retry-After": str(retry_after)})
