"""Rate limits: token buckets, all-or-nothing admission across scopes, settle and release."""

from __future__ import annotations

import asyncio

import pytest

from modelport.errors import RateLimited
from modelport.policy.limits import Admission, Limiter, Limits, TokenBucket, format_duration


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


KEY = "key:k-7f3a9c1e"
ROUTE = "route:support-summary"


def refused(limiter: Limiter, scopes: list[tuple[str, Limits]], tokens: int = 0) -> RateLimited:
    with pytest.raises(RateLimited) as info:
        limiter.admit(scopes, tokens)
    return info.value


# --- TokenBucket ---------------------------------------------------------------------------


def test_bucket_starts_full_and_refills_at_capacity_per_minute() -> None:
    bucket = TokenBucket(10, now=0.0)

    assert bucket.remaining(0.0) == 10
    assert all(bucket.try_take(1, 0.0) for _ in range(10))
    assert not bucket.try_take(1, 0.0)
    assert bucket.remaining(5.9) == 0
    assert bucket.remaining(6.0) == 1
    assert bucket.remaining(60.0) == 10


def test_bucket_try_take_takes_nothing_when_refused() -> None:
    bucket = TokenBucket(10, now=0.0)
    bucket.try_take(8, 0.0)

    assert not bucket.try_take(3, 0.0)
    assert bucket.remaining(0.0) == 2


def test_bucket_give_back_never_exceeds_capacity() -> None:
    bucket = TokenBucket(10, now=0.0)
    bucket.try_take(2, 0.0)
    bucket.give_back(5, 0.0)

    assert bucket.remaining(0.0) == 10
    assert bucket.is_full(0.0)


def test_bucket_force_take_goes_negative_and_refills_from_below_zero() -> None:
    bucket = TokenBucket(60, now=0.0)
    bucket.force_take(90, 0.0)

    assert bucket.level(0.0) == -30
    assert bucket.remaining(0.0) == 0
    assert not bucket.try_take(0, 0.0)
    assert bucket.seconds_until(1, 0.0) == pytest.approx(31.0)
    assert bucket.remaining(31.0) == 1


def test_bucket_seconds_until_an_amount_above_capacity_is_time_until_full() -> None:
    bucket = TokenBucket(60, now=0.0)
    bucket.try_take(60, 0.0)

    assert bucket.seconds_until(10, 0.0) == pytest.approx(10.0)
    assert bucket.seconds_until(500, 0.0) == pytest.approx(60.0)
    assert bucket.seconds_until(0, 0.0) == 0.0


def test_bucket_amount_above_capacity_is_taken_only_from_a_full_bucket() -> None:
    bucket = TokenBucket(100, now=0.0)

    assert bucket.try_take(250, 0.0)
    assert bucket.level(0.0) == -150
    assert not bucket.try_take(250, 60.0)
    assert bucket.try_take(250, 150.0)


def test_bucket_ignores_a_clock_stepping_back() -> None:
    bucket = TokenBucket(10, now=100.0)
    bucket.try_take(10, 100.0)

    assert bucket.remaining(50.0) == 0
    assert bucket.remaining(106.0) == 1


# --- Limits --------------------------------------------------------------------------------


def test_limits_default_is_unlimited_and_any_value_makes_it_limited() -> None:
    assert Limits().is_unlimited()
    assert not Limits(rpm=1).is_unlimited()
    assert not Limits(tpm=1).is_unlimited()
    assert not Limits(max_concurrency=1).is_unlimited()


@pytest.mark.parametrize("field", ["rpm", "tpm", "max_concurrency"])
def test_limits_reject_zero_and_negative_values(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Limits(**{field: 0})


# --- Exactness -----------------------------------------------------------------------------


async def test_100_concurrent_admits_at_rpm_10_admit_exactly_10() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(KEY, Limits(rpm=10))]

    async def one() -> bool:
        await asyncio.sleep(0)
        try:
            limiter.admit(scopes, 0)
        except RateLimited:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(100)))

    assert results.count(True) == 10


def test_refill_after_six_seconds_admits_exactly_one_more() -> None:
    clock = FakeClock()
    limiter = Limiter(clock)
    scopes = [(KEY, Limits(rpm=10))]
    for _ in range(10):
        limiter.admit(scopes, 0)

    clock.advance(5.999)
    refused(limiter, scopes)
    clock.advance(0.001)
    limiter.admit(scopes, 0)
    refused(limiter, scopes)


def test_six_refills_of_one_second_add_up_to_exactly_one_request() -> None:
    clock = FakeClock()
    limiter = Limiter(clock)
    scopes = [(KEY, Limits(rpm=10))]
    for _ in range(10):
        limiter.admit(scopes, 0)

    for _ in range(6):
        clock.advance(1.0)
        if clock.now < 1006.0:
            refused(limiter, scopes)
    limiter.admit(scopes, 0)
    refused(limiter, scopes)


# --- Tokens per minute ---------------------------------------------------------------------


def test_tpm_reserves_the_estimate_and_refuses_what_would_not_fit() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(KEY, Limits(tpm=1000))]
    limiter.admit(scopes, 700)

    error = refused(limiter, scopes, 400)
    assert "tokens per minute" in error.message
    limiter.admit(scopes, 300)


def test_settle_below_the_estimate_gives_tokens_back() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(KEY, Limits(tpm=1000))]
    admission = limiter.admit(scopes, 800)

    admission.settle(100)

    limiter.admit(scopes, 900)


def test_settle_above_the_estimate_takes_the_difference_even_past_zero() -> None:
    clock = FakeClock()
    limiter = Limiter(clock)
    scopes = [(KEY, Limits(tpm=600))]
    admission = limiter.admit(scopes, 100)

    admission.settle(900)

    # 600 - 900 = -300 tokens; at 10 tokens per second, 30 s until the bucket is at zero.
    error = refused(limiter, scopes, 0)
    assert error.headers["Retry-After"] == "30"
    clock.advance(40.0)
    limiter.admit(scopes, 100)


def test_settle_is_idempotent() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(KEY, Limits(tpm=1000))]
    admission = limiter.admit(scopes, 500)

    admission.settle(0)
    admission.settle(0)
    admission.settle(5000)

    limiter.admit(scopes, 1000)


def test_estimate_above_tpm_is_admitted_from_a_full_bucket_only() -> None:
    clock = FakeClock()
    limiter = Limiter(clock)
    scopes = [(KEY, Limits(tpm=600))]

    limiter.admit(scopes, 1500)

    refused(limiter, scopes, 1500)
    clock.advance(150.0)  # -900 back up to 600 at 10 per second
    limiter.admit(scopes, 1500)


def test_negative_token_estimate_is_a_programming_error() -> None:
    limiter = Limiter(FakeClock())
    with pytest.raises(ValueError):
        limiter.admit([(KEY, Limits(tpm=10))], -1)


# --- Concurrency ---------------------------------------------------------------------------


def test_concurrency_slots_are_held_until_release() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(KEY, Limits(max_concurrency=2))]
    first = limiter.admit(scopes, 0)
    limiter.admit(scopes, 0)

    error = refused(limiter, scopes)
    assert "concurrent requests" in error.message
    assert error.headers == {"Retry-After": "1"}

    first.release()
    limiter.admit(scopes, 0)
    refused(limiter, scopes)


def test_release_is_idempotent() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(KEY, Limits(max_concurrency=2))]
    first = limiter.admit(scopes, 0)
    limiter.admit(scopes, 0)

    first.release()
    first.release()

    limiter.admit(scopes, 0)
    refused(limiter, scopes)


def test_settle_does_not_release_the_concurrency_slot() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(KEY, Limits(tpm=1000, max_concurrency=1))]
    admission = limiter.admit(scopes, 10)

    admission.settle(10)

    refused(limiter, scopes)


# --- Several scopes ------------------------------------------------------------------------


def test_a_failing_route_scope_does_not_consume_the_key_scope() -> None:
    limiter = Limiter(FakeClock())
    key = (KEY, Limits(rpm=5, tpm=1000, max_concurrency=5))
    route = (ROUTE, Limits(rpm=1))
    limiter.admit([route], 0)

    for _ in range(10):
        refused(limiter, [key, route], 100)

    admission = limiter.admit([key], 100)
    assert admission.headers()["x-ratelimit-remaining-requests"] == "4"
    assert admission.headers()["x-ratelimit-remaining-tokens"] == "900"
    for _ in range(4):
        limiter.admit([key], 0)


def test_admission_takes_from_every_scope() -> None:
    limiter = Limiter(FakeClock())
    key = (KEY, Limits(rpm=2))
    route = (ROUTE, Limits(rpm=2))
    limiter.admit([key, route], 0)
    limiter.admit([key], 0)

    error = refused(limiter, [key, route])
    assert "for this key" in error.message
    limiter.admit([route], 0)


def test_release_and_settle_apply_to_every_scope() -> None:
    limiter = Limiter(FakeClock())
    key = (KEY, Limits(tpm=100, max_concurrency=1))
    route = (ROUTE, Limits(tpm=100, max_concurrency=1))
    admission = limiter.admit([key, route], 100)

    admission.settle(0)
    admission.release()

    limiter.admit([key], 100).release()
    limiter.admit([route], 100).release()


def test_duplicate_scope_ids_are_a_programming_error() -> None:
    limiter = Limiter(FakeClock())
    with pytest.raises(ValueError):
        limiter.admit([(KEY, Limits(rpm=1)), (KEY, Limits(rpm=1))], 0)


# --- Headers and messages ------------------------------------------------------------------


def test_admission_headers_report_the_first_scope_with_per_minute_limits() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(KEY, Limits(max_concurrency=3)), (ROUTE, Limits(rpm=10, tpm=1000))]

    headers = limiter.admit(scopes, 200).headers()

    assert headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "800",
        "x-ratelimit-reset-tokens": "12s",
    }


def test_admission_headers_name_only_the_kinds_the_scope_limits() -> None:
    limiter = Limiter(FakeClock())

    headers = limiter.admit([(KEY, Limits(rpm=10)), (ROUTE, Limits(tpm=50))], 5).headers()

    assert set(headers) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }


def test_admission_headers_are_empty_without_per_minute_limits() -> None:
    limiter = Limiter(FakeClock())

    assert limiter.admit([(KEY, Limits(max_concurrency=1))], 0).headers() == {}


def test_refusal_carries_retry_after_and_the_ratelimit_headers() -> None:
    clock = FakeClock()
    limiter = Limiter(clock)
    scopes = [(KEY, Limits(rpm=10, tpm=600))]
    for _ in range(10):
        limiter.admit(scopes, 0)
    clock.advance(2.5)

    error = refused(limiter, scopes)

    assert error.status == 429
    assert error.headers == {
        "Retry-After": "4",
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "57.5s",
        "x-ratelimit-limit-tokens": "600",
        "x-ratelimit-remaining-tokens": "600",
        "x-ratelimit-reset-tokens": "0s",
    }


def test_retry_after_is_at_least_one_second() -> None:
    clock = FakeClock()
    limiter = Limiter(clock)
    scopes = [(KEY, Limits(rpm=60))]
    for _ in range(60):
        limiter.admit(scopes, 0)
    clock.advance(0.99)

    assert refused(limiter, scopes).headers["Retry-After"] == "1"


def test_retry_after_is_the_longest_wait_among_the_broken_scopes() -> None:
    limiter = Limiter(FakeClock())
    key = (KEY, Limits(rpm=2))  # after two requests: 30 s until the next
    route = (ROUTE, Limits(tpm=60))  # empty: 45 s until 45 tokens
    limiter.admit([key, route], 60)
    limiter.admit([key, route], 0)

    error = refused(limiter, [key, route], 45)

    assert "requests per minute" in error.message
    assert "this key" in error.message
    assert error.headers["Retry-After"] == "45"


def test_tokens_retry_after_waits_for_the_estimate() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(ROUTE, Limits(tpm=6000))]
    limiter.admit(scopes, 6000)

    error = refused(limiter, scopes, 250)

    assert error.headers["Retry-After"] == "3"
    assert "route" in error.message


@pytest.mark.parametrize(
    ("limits", "what"),
    [
        (Limits(rpm=1), "requests per minute"),
        (Limits(tpm=10), "tokens per minute"),
        (Limits(max_concurrency=1), "concurrent requests"),
    ],
)
@pytest.mark.parametrize(("scope_id", "kind"), [(KEY, "key"), (ROUTE, "route")])
def test_refusal_message_names_the_limit_and_scope_kind_but_never_the_scope_id(
    limits: Limits, what: str, scope_id: str, kind: str
) -> None:
    limiter = Limiter(FakeClock())
    limiter.admit([(scope_id, limits)], 10)

    message = refused(limiter, [(scope_id, limits)], 10).message

    assert what in message
    assert f"this {kind}" in message
    assert scope_id.partition(":")[2] not in message


def test_scope_id_without_a_kind_is_not_shown() -> None:
    limiter = Limiter(FakeClock())
    limiter.admit([("secret-id", Limits(rpm=1))], 0)

    message = refused(limiter, [("secret-id", Limits(rpm=1))]).message

    assert "secret-id" not in message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0s"),
        (0.02, "20ms"),
        (0.0201, "21ms"),
        (1.0, "1s"),
        (8.64, "8.64s"),
        (59.5, "59.5s"),
        (360.0, "6m0s"),
        (61.25, "1m1.25s"),
        (3723.0, "1h2m3s"),
    ],
)
def test_reset_durations_are_formatted_as_openai_does(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


# --- Cheap path, limit changes, pruning ----------------------------------------------------


def test_unlimited_scopes_share_one_admission_and_keep_no_state() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(KEY, Limits()), (ROUTE, Limits())]

    first = limiter.admit(scopes, 100)
    second = limiter.admit([], 100)

    assert first is second
    assert type(first) is Admission
    assert first.headers() == {}
    first.settle(5)
    first.release()
    assert len(limiter) == 0


def test_unlimited_scope_beside_a_limited_one_is_skipped() -> None:
    limiter = Limiter(FakeClock())

    limiter.admit([(KEY, Limits()), (ROUTE, Limits(rpm=1))], 0)

    assert len(limiter) == 1
    refused(limiter, [(KEY, Limits()), (ROUTE, Limits(rpm=1))])


def test_changed_limits_keep_what_was_used() -> None:
    limiter = Limiter(FakeClock())
    limiter.admit([(KEY, Limits(rpm=10))], 0)
    limiter.admit([(KEY, Limits(rpm=10))], 0)

    headers = limiter.admit([(KEY, Limits(rpm=3))], 0).headers()

    assert headers["x-ratelimit-remaining-requests"] == "0"
    refused(limiter, [(KEY, Limits(rpm=3))])


def test_prune_drops_only_full_scopes_with_nothing_in_flight() -> None:
    clock = FakeClock()
    limiter = Limiter(clock)
    limiter.admit([("key:a", Limits(rpm=10))], 0).release()
    held = limiter.admit([("key:b", Limits(max_concurrency=1))], 0)
    limiter.admit([("key:c", Limits(tpm=600))], 60).release()

    assert limiter.prune(clock.now + 5.0) == 0
    assert limiter.prune(clock.now + 6.0) == 2  # a refilled its request, c its 60 tokens
    assert len(limiter) == 1

    held.release()
    assert limiter.prune() == 1
    assert len(limiter) == 0


def test_prune_keeps_a_scope_whose_admission_is_not_released_so_settle_still_counts() -> None:
    clock = FakeClock()
    limiter = Limiter(clock)
    scopes = [(KEY, Limits(tpm=600))]
    admission = limiter.admit(scopes, 60)
    clock.advance(120.0)

    assert limiter.prune() == 0
    admission.settle(660)
    admission.release()

    refused(limiter, scopes, 1)


def test_retry_after_waits_for_every_broken_limit_of_one_scope() -> None:
    limiter = Limiter(FakeClock())
    scopes = [(KEY, Limits(rpm=10, tpm=60))]
    for _ in range(10):
        limiter.admit(scopes, 6)

    error = refused(limiter, scopes, 30)

    assert "requests per minute" in error.message
    assert error.headers["Retry-After"] == "30"
