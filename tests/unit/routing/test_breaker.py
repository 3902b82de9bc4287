"""Circuit breaker: tripping by count and by rate, cooldown, probes, transitions, the window."""

from __future__ import annotations

from typing import Any

import pytest

from modelport.routing.breaker import BreakerSettings, CircuitBreaker


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


COUNT_ONLY = BreakerSettings(failures=3, window_s=10.0, failure_rate=None, cooldown_s=5.0)
RATE_ONLY = BreakerSettings(failures=100, window_s=10.0, failure_rate=0.5, min_requests=10)


def breaker(
    settings: BreakerSettings = COUNT_ONLY,
) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, str]]]:
    clock = FakeClock()
    transitions: list[tuple[str, str]] = []
    b = CircuitBreaker(settings, clock, lambda old, new: transitions.append((old, new)))
    return b, clock, transitions


def state(b: CircuitBreaker) -> str:
    """The state, read afresh (mypy would keep an earlier assert's narrowing of ``b.state``)."""
    return b.state


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert b.allow()
        b.record_failure()


def open_breaker(settings: BreakerSettings = COUNT_ONLY) -> tuple[CircuitBreaker, FakeClock]:
    b, clock, _ = breaker(settings)
    fail(b, settings.failures)
    assert state(b) == "open"
    return b, clock


# --- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"failures": 0},
        {"failures": True},
        {"min_requests": 0},
        {"half_open_probes": 0},
        {"half_open_probes": 1.5},
        {"window_s": 0.0},
        {"window_s": float("inf")},
        {"cooldown_s": -1.0},
        {"cooldown_s": float("nan")},
        {"failure_rate": 0.0},
        {"failure_rate": 1.5},
        {"failure_rate": float("nan")},
    ],
)
def test_settings_reject_invalid_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BreakerSettings(**overrides)


def test_settings_defaults_are_valid_and_rate_rule_can_be_turned_off() -> None:
    assert BreakerSettings() == BreakerSettings(5, 10.0, 0.5, 10, 5.0, 1)
    assert BreakerSettings(failure_rate=None, cooldown_s=0.0).failure_rate is None


# --- closed -> open ------------------------------------------------------------------------


def test_closed_breaker_allows_every_call_and_successes_keep_it_closed() -> None:
    b, _, transitions = breaker()

    for _ in range(50):
        assert b.allow()
        b.record_success()

    assert state(b) == "closed"
    assert transitions == []
    assert b.seconds_until_retry() == 0.0


def test_opens_when_consecutive_failures_reach_the_count() -> None:
    b, _, transitions = breaker()

    fail(b, 2)
    assert state(b) == "closed"
    fail(b, 1)

    assert state(b) == "open"
    assert transitions == [("closed", "open")]
    assert not b.allow()


def test_a_success_resets_the_run_of_consecutive_failures() -> None:
    b, _, _ = breaker()

    for _ in range(5):
        fail(b, 2)
        b.record_success()

    assert state(b) == "closed"


def test_failures_older_than_the_window_do_not_count_toward_the_run() -> None:
    b, clock, _ = breaker()

    fail(b, 2)
    clock.advance(10.0)
    fail(b, 2)
    assert state(b) == "closed"
    fail(b, 1)

    assert state(b) == "open"


def test_opens_by_failure_rate_only_once_min_requests_calls_were_made() -> None:
    b, _, transitions = breaker(RATE_ONLY)

    # 9 calls at a failure rate above 0.5, never 100 in a row: below min_requests.
    for failed in (True, True, False, True, False, True, False, True, False):
        assert b.allow()
        if failed:
            b.record_failure()
        else:
            b.record_success()
    assert state(b) == "closed"

    fail(b, 1)  # the 10th call: 6 of 10 failed

    assert state(b) == "open"
    assert transitions == [("closed", "open")]


def test_rate_exactly_at_the_threshold_opens() -> None:
    b, _, _ = breaker(
        BreakerSettings(failures=100, failure_rate=0.3, min_requests=10, window_s=10.0)
    )
    for _ in range(7):
        b.record_success()
    fail(b, 2)
    assert state(b) == "closed"
    fail(b, 1)  # 3 of 10

    assert state(b) == "open"


def test_rate_below_the_threshold_keeps_it_closed_however_many_calls() -> None:
    b, _, _ = breaker(RATE_ONLY)

    for _ in range(100):
        b.record_success()
        b.record_success()
        b.record_failure()  # one in three

    assert state(b) == "closed"


def test_calls_older_than_the_window_do_not_count_toward_the_rate() -> None:
    b, clock, _ = breaker(RATE_ONLY)
    for _ in range(6):
        b.record_success()
    for _ in range(5):
        b.record_failure()  # 11 calls, 5 failed: below 0.5
    assert state(b) == "closed"

    clock.advance(10.0)
    fail(b, 9)  # 9 of 9 in the window, below min_requests

    assert state(b) == "closed"
    fail(b, 1)

    assert state(b) == "open"


def test_the_window_slides_by_bucket_so_calls_expire_gradually() -> None:
    b, clock, _ = breaker(RATE_ONLY)
    for _ in range(5):
        b.record_success()  # at t=0, expire at t=10
    clock.advance(5.0)
    for _ in range(4):
        b.record_failure()  # at t=5, expire at t=15
        b.record_success()
    clock.advance(5.0)  # the first five successes leave the window

    b.record_failure()  # 5 of 9 calls failed, below min_requests
    assert state(b) == "closed"
    b.record_failure()  # 6 of 10

    assert state(b) == "open"


def test_a_long_idle_gap_empties_the_whole_window() -> None:
    b, clock, _ = breaker(RATE_ONLY)
    for _ in range(9):
        b.record_failure()
    clock.advance(1_000_000.0)

    fail(b, 9)

    assert state(b) == "closed"


def test_a_clock_that_steps_back_counts_into_the_newest_bucket() -> None:
    b, clock, _ = breaker()
    fail(b, 2)
    clock.advance(-3.0)
    fail(b, 1)

    assert state(b) == "open"


# --- open -> half_open -> closed / open ----------------------------------------------------


def test_open_breaker_refuses_until_the_cooldown_then_turns_half_open_on_allow() -> None:
    b, clock = open_breaker()

    clock.advance(4.99)
    assert not b.allow()
    assert state(b) == "open"
    clock.advance(0.01)
    assert state(b) == "open"  # the change happens in allow()

    assert b.allow()
    assert state(b) == "half_open"


def test_seconds_until_retry_is_the_remaining_cooldown_while_open_else_zero() -> None:
    b, clock = open_breaker()

    assert b.seconds_until_retry() == pytest.approx(5.0)
    clock.advance(3.5)
    assert b.seconds_until_retry() == pytest.approx(1.5)
    clock.advance(2.0)
    assert b.seconds_until_retry() == 0.0  # never negative, even before allow()
    assert b.allow()
    assert b.seconds_until_retry() == 0.0


def test_half_open_admits_at_most_half_open_probes_at_a_time() -> None:
    b, clock = open_breaker(BreakerSettings(failures=1, failure_rate=None, half_open_probes=2))
    clock.advance(5.0)

    assert b.allow()
    assert b.allow()
    assert not b.allow()
    assert not b.allow()
    assert state(b) == "half_open"


def test_half_open_closes_after_half_open_probes_successes() -> None:
    settings = BreakerSettings(failures=1, failure_rate=None, half_open_probes=2)
    b, clock, transitions = breaker(settings)
    fail(b, 1)
    clock.advance(5.0)

    assert b.allow()
    b.record_success()
    assert state(b) == "half_open"
    assert b.allow()
    b.record_success()

    assert state(b) == "closed"
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert b.allow()


def test_a_probe_failure_reopens_for_another_full_cooldown() -> None:
    b, clock, transitions = breaker()
    fail(b, 3)
    clock.advance(5.0)
    assert b.allow()
    clock.advance(2.0)

    b.record_failure()

    assert state(b) == "open"
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]
    assert b.seconds_until_retry() == pytest.approx(5.0)
    clock.advance(4.9)
    assert not b.allow()
    clock.advance(0.1)
    assert b.allow()


def test_a_probe_failure_after_some_probe_successes_still_reopens() -> None:
    b, clock = open_breaker(BreakerSettings(failures=1, failure_rate=None, half_open_probes=3))
    clock.advance(5.0)
    for _ in range(2):
        assert b.allow()
        b.record_success()

    assert b.allow()
    b.record_failure()
    assert state(b) == "open"

    clock.advance(5.0)  # a new half-open period needs all three successes again
    for _ in range(2):
        assert b.allow()
        b.record_success()
    assert state(b) == "half_open"


def test_release_probe_without_result_frees_the_slot_without_a_verdict() -> None:
    b, clock, transitions = breaker()
    fail(b, 3)
    clock.advance(5.0)
    assert b.allow()
    assert not b.allow()

    b.release_probe_without_result()

    assert state(b) == "half_open"
    assert transitions[-1] == ("open", "half_open")
    assert b.allow()
    assert not b.allow()


def test_release_probe_without_result_is_a_no_op_when_not_half_open() -> None:
    b, _, transitions = breaker()
    b.release_probe_without_result()
    fail(b, 3)
    b.release_probe_without_result()

    assert state(b) == "open"
    assert transitions == [("closed", "open")]


def test_results_recorded_while_open_are_ignored() -> None:
    b, _, transitions = breaker()
    fail(b, 3)

    b.record_success()
    b.record_failure()

    assert state(b) == "open"
    assert transitions == [("closed", "open")]
    assert b.seconds_until_retry() == pytest.approx(5.0)


def test_closing_starts_a_fresh_window_so_old_failures_do_not_reopen_it() -> None:
    b, clock = open_breaker()
    clock.advance(5.0)
    assert b.allow()
    b.record_success()
    assert state(b) == "closed"

    fail(b, 2)

    assert state(b) == "closed"


def test_zero_cooldown_probes_on_the_next_allow() -> None:
    b, _ = open_breaker(BreakerSettings(failures=1, failure_rate=None, cooldown_s=0.0))

    assert b.allow()
    assert state(b) == "half_open"


def test_works_without_a_transition_callback() -> None:
    clock = FakeClock()
    b = CircuitBreaker(COUNT_ONLY, clock)
    fail(b, 3)
    clock.advance(5.0)
    assert b.allow()
    b.record_success()

    assert state(b) == "closed"
