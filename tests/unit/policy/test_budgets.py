"""Budgets: UTC periods, reserve then settle or cancel, rollover, and the overshoot bound."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from modelport.errors import BudgetExceeded, RateLimited
from modelport.policy.budgets import (
    Budget,
    BudgetBook,
    Period,
    Reservation,
    period_end,
    period_start,
)

KEY_ID = "key-7f3a9c1e"


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


class FakeWallClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def exceeded(book: BudgetBook, budget: Budget, estimated: float) -> BudgetExceeded:
    with pytest.raises(BudgetExceeded) as info:
        book.reserve(KEY_ID, budget, estimated)
    return info.value


# --- Periods -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "now", "start", "end"),
    [
        ("day", at(2024, 3, 15, 13, 5), at(2024, 3, 15), at(2024, 3, 16)),
        ("day", at(2024, 3, 15), at(2024, 3, 15), at(2024, 3, 16)),
        ("day", at(2024, 3, 15, 23, 59, 59), at(2024, 3, 15), at(2024, 3, 16)),
        ("day", at(2024, 12, 31, 18), at(2024, 12, 31), at(2025, 1, 1)),
        ("month", at(2024, 3, 15, 13, 5), at(2024, 3, 1), at(2024, 4, 1)),
        ("month", at(2024, 3, 1), at(2024, 3, 1), at(2024, 4, 1)),
        ("month", at(2024, 2, 29, 12), at(2024, 2, 1), at(2024, 3, 1)),
        ("month", at(2024, 12, 31, 23, 59, 59), at(2024, 12, 1), at(2025, 1, 1)),
        ("month", at(2025, 1, 1), at(2025, 1, 1), at(2025, 2, 1)),
    ],
)
def test_periods_start_and_end_at_utc_midnight_and_the_first_of_the_month(
    period: Period, now: float, start: float, end: float
) -> None:
    assert period_start(period, now) == start
    assert period_end(period, now) == end


def test_budget_rejects_a_negative_limit_and_an_unknown_period() -> None:
    with pytest.raises(ValueError):
        Budget(-1.0, "day")
    with pytest.raises(ValueError):
        Budget(1.0, "week")  # type: ignore[arg-type]


# --- Reserve, settle, cancel ---------------------------------------------------------------


def test_reserve_holds_the_estimate_and_settle_spends_the_actual() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(1.0, "day")

    reservation = book.reserve(KEY_ID, budget, 0.30)
    assert book.reserved(KEY_ID) == pytest.approx(0.30)
    assert book.spent(KEY_ID, budget) == 0.0

    reservation.settle(0.25)
    assert book.reserved(KEY_ID) == 0.0
    assert book.spent(KEY_ID, budget) == pytest.approx(0.25)


def test_reservations_in_flight_count_against_the_limit() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(1.0, "day")
    book.reserve(KEY_ID, budget, 0.60)

    error = exceeded(book, budget, 0.50)

    assert "would be exceeded" in error.message
    book.reserve(KEY_ID, budget, 0.40)


def test_a_reservation_may_fill_the_budget_exactly() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(0.3, "day")
    book.reserve(KEY_ID, budget, 0.1).settle(0.1)
    book.reserve(KEY_ID, budget, 0.2).settle(0.2)  # 0.1 + 0.2 is not quite 0.3 in floats

    assert "is spent" in exceeded(book, budget, 0.0).message


def test_cancel_releases_without_spending() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(1.0, "day")
    reservation = book.reserve(KEY_ID, budget, 0.90)

    reservation.cancel()

    assert book.reserved(KEY_ID) == 0.0
    assert book.spent(KEY_ID, budget) == 0.0
    book.reserve(KEY_ID, budget, 1.0)


def test_settle_and_cancel_are_idempotent_and_exclusive() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(10.0, "day")
    settled = book.reserve(KEY_ID, budget, 1.0)
    cancelled = book.reserve(KEY_ID, budget, 2.0)
    held = book.reserve(KEY_ID, budget, 3.0)

    settled.settle(1.5)
    settled.settle(1.5)
    settled.cancel()
    cancelled.cancel()
    cancelled.cancel()
    cancelled.settle(2.0)

    assert book.spent(KEY_ID, budget) == pytest.approx(1.5)
    assert book.reserved(KEY_ID) == pytest.approx(3.0)
    held.settle(0.0)
    assert book.reserved(KEY_ID) == 0.0


def test_a_zero_estimate_is_refused_once_the_budget_is_spent() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(1.0, "day")
    book.reserve(KEY_ID, budget, 0.0).settle(1.0)

    error = exceeded(book, budget, 0.0)

    assert "is spent" in error.message


def test_a_zero_estimate_passes_while_budget_remains() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(1.0, "day")
    book.reserve(KEY_ID, budget, 0.0).settle(0.99)

    book.reserve(KEY_ID, budget, 0.0)


def test_a_zero_budget_refuses_every_request() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))

    exceeded(book, Budget(0.0, "month"), 0.0)


def test_negative_amounts_are_programming_errors() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(1.0, "day")
    with pytest.raises(ValueError):
        book.reserve(KEY_ID, budget, -0.1)
    reservation = book.reserve(KEY_ID, budget, 0.1)
    with pytest.raises(ValueError):
        reservation.settle(-0.1)


def test_keys_have_separate_books() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(1.0, "day")
    book.reserve(KEY_ID, budget, 1.0).settle(1.0)

    book.reserve("other-key", budget, 1.0)

    assert book.spent("other-key", budget) == 0.0
    assert book.spent("never-seen", budget) == 0.0


# --- The error -----------------------------------------------------------------------------


def test_budget_exceeded_says_when_it_resets_and_retry_after_counts_down_to_it() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 23, 59, 30) + 0.25))
    budget = Budget(1.0, "day")
    book.reserve(KEY_ID, budget, 1.0).settle(1.0)

    error = exceeded(book, budget, 0.1)

    assert isinstance(error, RateLimited)
    assert (error.status, error.code, error.fallback_class) == (429, "budget_exceeded", None)
    assert error.headers == {"Retry-After": "30"}
    assert "budget for this period is spent" in error.message
    assert "2024-03-16T00:00:00Z" in error.message
    assert KEY_ID not in error.message


def test_monthly_budget_retry_after_runs_to_the_first_of_next_month() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 12, 31)))
    budget = Budget(1.0, "month")
    book.reserve(KEY_ID, budget, 1.0).settle(1.0)

    error = exceeded(book, budget, 0.0)

    assert error.headers == {"Retry-After": str(86_400)}
    assert "2025-01-01T00:00:00Z" in error.message


# --- Rollover ------------------------------------------------------------------------------


def test_daily_spend_resets_at_midnight_utc() -> None:
    clock = FakeWallClock(at(2024, 3, 15, 23, 59, 59))
    book = BudgetBook(clock)
    budget = Budget(1.0, "day")
    book.reserve(KEY_ID, budget, 1.0).settle(1.0)
    exceeded(book, budget, 0.0)

    clock.now = at(2024, 3, 16)

    assert book.spent(KEY_ID, budget) == 0.0
    book.reserve(KEY_ID, budget, 1.0)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (at(2024, 3, 31, 23, 59), at(2024, 4, 1)),
        (at(2024, 2, 29, 12), at(2024, 3, 1, 0, 0, 1)),
        (at(2024, 12, 31, 23, 59, 59), at(2025, 1, 1)),
    ],
    ids=["mar-apr", "leap-feb-mar", "dec-jan"],
)
def test_monthly_spend_resets_on_the_first_at_midnight_utc(before: float, after: float) -> None:
    clock = FakeWallClock(before)
    book = BudgetBook(clock)
    budget = Budget(5.0, "month")
    book.reserve(KEY_ID, budget, 5.0).settle(5.0)
    exceeded(book, budget, 0.0)

    clock.now = after

    assert book.spent(KEY_ID, budget) == 0.0
    book.reserve(KEY_ID, budget, 5.0)


def test_monthly_spend_does_not_reset_at_midnight_within_the_month() -> None:
    clock = FakeWallClock(at(2024, 3, 15, 23))
    book = BudgetBook(clock)
    budget = Budget(5.0, "month")
    book.reserve(KEY_ID, budget, 1.0).settle(5.0)

    clock.now = at(2024, 3, 16, 1)

    assert book.spent(KEY_ID, budget) == pytest.approx(5.0)
    exceeded(book, budget, 0.0)


def test_a_reservation_settled_after_rollover_counts_in_the_new_period() -> None:
    clock = FakeWallClock(at(2024, 3, 15, 23, 59))
    book = BudgetBook(clock)
    budget = Budget(1.0, "day")
    book.reserve(KEY_ID, budget, 0.5).settle(0.5)
    crossing = book.reserve(KEY_ID, budget, 0.4)

    clock.now = at(2024, 3, 16, 0, 1)
    assert book.spent(KEY_ID, budget) == 0.0
    exceeded(book, budget, 0.7)  # the crossing reservation still holds 0.4 in the new day

    crossing.settle(0.3)
    assert book.spent(KEY_ID, budget) == pytest.approx(0.3)
    assert book.reserved(KEY_ID) == 0.0


def test_a_wall_clock_stepping_back_does_not_reset_the_period() -> None:
    clock = FakeWallClock(at(2024, 3, 16, 0, 0, 5))
    book = BudgetBook(clock)
    budget = Budget(1.0, "day")
    book.reserve(KEY_ID, budget, 1.0).settle(1.0)

    clock.now = at(2024, 3, 15, 23, 59, 58)

    assert book.spent(KEY_ID, budget) == pytest.approx(1.0)
    exceeded(book, budget, 0.0)


# --- Seeding from the ledger ---------------------------------------------------------------


def test_load_seeds_the_current_period_from_the_ledger() -> None:
    clock = FakeWallClock(at(2024, 3, 15, 12))
    book = BudgetBook(clock)
    budget = Budget(10.0, "month")

    book.load(KEY_ID, at(2024, 3, 1), 9.5)

    assert book.spent(KEY_ID, budget) == pytest.approx(9.5)
    exceeded(book, budget, 0.6)
    book.reserve(KEY_ID, budget, 0.5)


def test_a_late_load_never_lowers_what_this_process_counted_in_the_period() -> None:
    """The store came back after requests were answered: the ledger may not hold them yet."""
    clock = FakeWallClock(at(2024, 3, 15, 12))
    book = BudgetBook(clock)
    budget = Budget(10.0, "month")
    book.reserve(KEY_ID, budget, 3.0).settle(3.0)

    book.load(KEY_ID, at(2024, 3, 1), 1.0)
    assert book.spent(KEY_ID, budget) == pytest.approx(3.0)
    book.load(KEY_ID, at(2024, 3, 1), 5.0)
    assert book.spent(KEY_ID, budget) == pytest.approx(5.0)


def test_load_of_a_past_period_is_dropped_at_first_use() -> None:
    clock = FakeWallClock(at(2024, 3, 15, 12))
    book = BudgetBook(clock)
    budget = Budget(10.0, "month")

    book.load(KEY_ID, at(2024, 2, 1), 10.0)

    assert book.spent(KEY_ID, budget) == 0.0
    book.reserve(KEY_ID, budget, 10.0)


# --- The overshoot bound -------------------------------------------------------------------


async def interleave(rng: random.Random) -> None:
    """Yield to the event loop a random number of times (no real sleeping)."""
    for _ in range(rng.randrange(5)):
        await asyncio.sleep(0)


async def test_100_concurrent_reservations_admit_exactly_what_fits() -> None:
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(5.0, "day")

    async def one() -> Reservation | None:
        await asyncio.sleep(0)
        try:
            return book.reserve(KEY_ID, budget, 0.125)
        except BudgetExceeded:
            return None

    results = await asyncio.gather(*(one() for _ in range(100)))

    assert sum(r is not None for r in results) == 40


@pytest.mark.parametrize("seed", range(20))
async def test_concurrent_spend_never_exceeds_limit_plus_the_excess_over_estimates(
    seed: int,
) -> None:
    rng = random.Random(seed)
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(5.0, "day")
    excess = 0.0

    async def one() -> None:
        nonlocal excess
        await interleave(rng)
        try:
            reservation = book.reserve(KEY_ID, budget, rng.uniform(0.0, 0.5))
        except BudgetExceeded:
            return
        await interleave(rng)
        if rng.random() < 0.1:
            reservation.cancel()
            return
        actual = reservation.estimated_usd * rng.uniform(0.0, 1.6)
        excess += max(0.0, actual - reservation.estimated_usd)
        reservation.settle(actual)

    await asyncio.gather(*(one() for _ in range(200)))

    assert book.reserved(KEY_ID) == 0.0
    assert book.spent(KEY_ID, budget) <= budget.limit_usd + excess + 1e-9


async def test_when_every_actual_matches_its_estimate_spend_stays_within_the_limit() -> None:
    rng = random.Random(7)
    book = BudgetBook(FakeWallClock(at(2024, 3, 15, 12)))
    budget = Budget(3.0, "day")

    async def one() -> None:
        try:
            reservation = book.reserve(KEY_ID, budget, rng.uniform(0.01, 0.2))
        except BudgetExceeded:
            return
        await asyncio.sleep(0)
        reservation.settle(reservation.estimated_usd)

    await asyncio.gather(*(one() for _ in range(500)))

    assert 2.8 <= book.spent(KEY_ID, budget) <= 3.0 + 1e-9
