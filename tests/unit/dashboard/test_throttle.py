"""Failed dashboard sign-ins per client address: the lockout, its end, and the table's bound."""

from __future__ import annotations

from collections import deque

import pytest

from modelport.dashboard.throttle import MAX_CLIENTS, MAX_FAILURES, WINDOW_S, SignInThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_fifth_failure_in_a_window_locks_the_address_until_the_first_is_old(
    clock: Clock,
) -> None:
    table: dict[str, deque[float]] = {}
    throttle = SignInThrottle(table, clock)
    for _ in range(MAX_FAILURES - 1):
        throttle.failed("10.0.0.1")
        clock.now += 1
        assert throttle.retry_after("10.0.0.1") is None
    throttle.failed("10.0.0.1")  # the fifth, 4 s after the first
    assert throttle.retry_after("10.0.0.1") == pytest.approx(WINDOW_S - 4)
    assert throttle.retry_after("10.0.0.2") is None  # other addresses are not affected
    clock.now += WINDOW_S - 4 - 0.5
    assert throttle.retry_after("10.0.0.1") == pytest.approx(0.5)
    clock.now += 0.5  # the first failure leaves the window: one more try
    assert throttle.retry_after("10.0.0.1") is None
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == pytest.approx(1.0)


def test_a_success_forgets_the_failures_and_old_failures_are_dropped(clock: Clock) -> None:
    table: dict[str, deque[float]] = {}
    throttle = SignInThrottle(table, clock)
    for _ in range(MAX_FAILURES - 1):
        throttle.failed("a")
    throttle.succeeded("a")
    assert table == {}
    throttle.failed("a")
    assert throttle.retry_after("a") is None
    clock.now += WINDOW_S
    assert throttle.retry_after("a") is None
    assert table == {}  # nothing left in the window: the address is forgotten


def test_the_table_keeps_at_most_max_clients_dropping_the_stalest(clock: Clock) -> None:
    table: dict[str, deque[float]] = {}
    throttle = SignInThrottle(table, clock)
    for n in range(MAX_CLIENTS):
        throttle.failed(f"c{n}")
        clock.now += 0.001
    throttle.failed("newcomer")
    assert len(table) == MAX_CLIENTS
    assert "c0" not in table and "newcomer" in table and f"c{MAX_CLIENTS - 1}" in table
