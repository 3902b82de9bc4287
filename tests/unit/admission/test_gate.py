"""Admission gate: concurrency cap, fair priority queue, immediate refusals, no leaked slots."""

from __future__ import annotations

import asyncio
import time

import pytest

from modelport.admission.gate import BACKGROUND, PEAK_WINDOW_S, Gate, GateSettings, Slot
from modelport.errors import Overloaded, OverShare


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def gate(
    max_concurrency: int | None = 1,
    max_queue: int = 10,
    queue_timeout_s: float = 30.0,
    clock: FakeClock | None = None,
) -> Gate:
    return Gate(GateSettings(max_concurrency, max_queue, queue_timeout_s), clock or FakeClock())


async def queue_up(g: Gate, label: str, served: list[str], **kwargs: object) -> asyncio.Task[None]:
    """Start a caller that records ``label`` when served and releases at once; return once
    it waits in the queue."""

    async def caller() -> None:
        with await g.acquire(**kwargs):  # type: ignore[arg-type]
            served.append(label)

    before = g.queued
    task = asyncio.create_task(caller())
    await asyncio.sleep(0)
    assert g.queued == before + 1
    return task


def retry_after(error: Overloaded | OverShare) -> int:
    return int(error.headers["Retry-After"])


# --- fast path and cap --------------------------------------------------------------------


def test_fast_path_returns_a_slot_without_suspending() -> None:
    g = gate(max_concurrency=2)
    coro = g.acquire()

    with pytest.raises(StopIteration) as done:
        coro.send(None)  # a coroutine that never suspends finishes on its first step

    assert isinstance(done.value.value, Slot)
    assert g.in_flight == 1
    assert g.queued == 0


async def test_unlimited_gate_never_waits_and_counts_in_flight() -> None:
    g = gate(max_concurrency=None, max_queue=0)

    slots = [await g.acquire() for _ in range(1000)]

    assert g.in_flight == 1000
    for slot in slots:
        slot.release()
    assert g.in_flight == 0


async def test_cap_is_never_exceeded_by_many_concurrent_acquirers() -> None:
    g = gate(max_concurrency=3, max_queue=100)
    running = peak = served = 0

    async def caller() -> None:
        nonlocal running, peak, served
        with await g.acquire(tenant=f"t{served % 4}"):
            running += 1
            peak = max(peak, running)
            assert g.in_flight <= 3
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            running -= 1
            served += 1

    await asyncio.gather(*(caller() for _ in range(60)))

    assert (peak, served) == (3, 60)
    assert (g.in_flight, g.queued) == (0, 0)


async def test_release_is_idempotent() -> None:
    g = gate(max_concurrency=1)
    slot = await g.acquire()
    served: list[str] = []
    task = await queue_up(g, "w", served)

    slot.release()
    slot.release()
    await task

    assert served == ["w"]
    assert g.in_flight == 0


async def test_a_released_slot_passes_to_the_waiter_before_any_newcomer() -> None:
    g = gate(max_concurrency=1)
    slot = await g.acquire()
    served: list[str] = []
    task = await queue_up(g, "waiter", served)

    slot.release()  # the waiter's task has not run yet
    newcomer = g.acquire()
    suspended_on = newcomer.send(None)

    assert suspended_on is not None  # it queued instead of taking the fast path
    assert (g.in_flight, g.queued) == (1, 1)
    newcomer.close()  # a coroutine closed while waiting leaves the queue too
    assert g.queued == 0
    await task
    assert served == ["waiter"]
    assert_nothing_leaked(g)


async def await_all(*tasks: asyncio.Task[None]) -> None:
    await asyncio.gather(*tasks)


# --- ordering -----------------------------------------------------------------------------


async def test_waiters_of_one_tenant_are_served_in_arrival_order() -> None:
    g = gate(max_concurrency=1)
    slot = await g.acquire()
    served: list[str] = []
    tasks = [await queue_up(g, f"a{i}", served, tenant="a") for i in range(5)]

    slot.release()
    await await_all(*tasks)

    assert served == ["a0", "a1", "a2", "a3", "a4"]


async def test_higher_priority_is_served_first_and_ties_keep_arrival_order() -> None:
    g = gate(max_concurrency=1)
    slot = await g.acquire()
    served: list[str] = []
    tasks = [
        await queue_up(g, label, served, priority=priority)
        for label, priority in [("p0", 0), ("p5", 5), ("p1", 1), ("p5-later", 5), ("p0-later", 0)]
    ]

    slot.release()
    await await_all(*tasks)

    assert served == ["p5", "p5-later", "p1", "p0", "p0-later"]


async def test_round_robin_serves_a_later_tenant_second_not_after_a_flood() -> None:
    g = gate(max_concurrency=1)
    slot = await g.acquire()
    served: list[str] = []
    tasks = [await queue_up(g, f"a{i}", served, tenant="a") for i in range(5)]
    tasks.append(await queue_up(g, "b0", served, tenant="b"))

    slot.release()
    await await_all(*tasks)

    assert served == ["a0", "b0", "a1", "a2", "a3", "a4"]


async def test_round_robin_alternates_between_tenants_with_several_waiters() -> None:
    g = gate(max_concurrency=1)
    slot = await g.acquire()
    served: list[str] = []
    tasks = [await queue_up(g, f"a{i}", served, tenant="a") for i in range(3)]
    tasks += [await queue_up(g, f"b{i}", served, tenant="b") for i in range(3)]

    slot.release()
    await await_all(*tasks)

    assert served == ["a0", "b0", "a1", "b1", "a2", "b2"]


# --- refusals -----------------------------------------------------------------------------


async def timed_refusal(g: Gate, **kwargs: object) -> tuple[Overloaded | OverShare, float]:
    start = time.perf_counter()
    with pytest.raises((Overloaded, OverShare)) as info:
        await g.acquire(**kwargs)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    assert isinstance(info.value, Overloaded | OverShare)
    return info.value, elapsed


async def test_full_queue_refuses_at_once_with_503_or_429_by_fair_share() -> None:
    g = gate(max_concurrency=1, max_queue=3)
    slot = await g.acquire(tenant="a")
    served: list[str] = []
    tasks = [await queue_up(g, f"a{i}", served, tenant="a") for i in range(2)]
    tasks.append(await queue_up(g, "b0", served, tenant="b"))

    hog, hog_s = await timed_refusal(g, tenant="a")  # holds 2 of 3 > share 1.5
    fair, fair_s = await timed_refusal(g, tenant="b")  # holds 1, within its share
    newcomer, newcomer_s = await timed_refusal(g, tenant="c")  # holds none

    assert isinstance(hog, OverShare) and hog.status == 429
    assert isinstance(fair, Overloaded) and fair.status == 503
    assert isinstance(newcomer, Overloaded) and newcomer.status == 503
    assert max(hog_s, fair_s, newcomer_s) < 0.010
    assert min(retry_after(e) for e in (hog, fair, newcomer)) >= 1
    assert g.queued == 3
    slot.release()
    await await_all(*tasks)


async def test_no_queue_means_refusal_when_every_slot_is_taken() -> None:
    g = gate(max_concurrency=1, max_queue=0)
    slot = await g.acquire()

    error, _ = await timed_refusal(g)

    assert isinstance(error, Overloaded)
    assert retry_after(error) >= 1
    slot.release()
    assert g.in_flight == 0


async def test_retry_after_estimates_the_queue_from_hold_times() -> None:
    clock = FakeClock()
    g = gate(max_concurrency=2, max_queue=2, clock=clock)
    first = await g.acquire()
    clock.advance(4.0)
    first.release()  # hold-time average is now 4s
    slots = [await g.acquire(), await g.acquire()]
    served: list[str] = []
    tasks = [await queue_up(g, f"w{i}", served) for i in range(2)]

    error, _ = await timed_refusal(g)

    assert retry_after(error) == 6  # 4s x (2 queued + 1) / 2 slots
    for slot in slots:
        slot.release()
    await await_all(*tasks)


async def test_deadline_shorter_than_the_estimated_wait_is_refused_at_once() -> None:
    clock = FakeClock()
    g = gate(max_concurrency=1, max_queue=5, clock=clock)
    first = await g.acquire()
    clock.advance(10.0)
    first.release()  # hold-time average is now 10s
    slot = await g.acquire()

    error, seconds = await timed_refusal(g, deadline=clock() + 5.0)

    assert isinstance(error, Overloaded)
    assert retry_after(error) == 10
    assert seconds < 0.010
    assert g.queued == 0
    slot.release()


async def test_deadline_already_past_is_refused_at_once_when_it_would_wait() -> None:
    clock = FakeClock()
    g = gate(max_concurrency=1, max_queue=5, clock=clock)
    slot = await g.acquire()

    error, seconds = await timed_refusal(g, deadline=clock() - 1.0)

    assert isinstance(error, Overloaded)
    assert seconds < 0.010
    slot.release()


async def test_higher_priority_is_not_refused_for_a_lower_priority_backlog() -> None:
    clock = FakeClock()
    g = gate(max_concurrency=1, max_queue=10, clock=clock)
    first = await g.acquire()
    clock.advance(1.0)
    first.release()  # hold-time average is now 1s
    slot = await g.acquire()
    served: list[str] = []
    tasks = [await queue_up(g, f"low{i}", served) for i in range(5)]
    deadline = clock() + 2.5  # 6s behind the backlog, 1s ahead of it

    with pytest.raises(Overloaded):
        await g.acquire(deadline=deadline)
    tasks.append(await queue_up(g, "high", served, priority=1, deadline=deadline))

    slot.release()
    await await_all(*tasks)
    assert served[0] == "high"


async def test_queue_timeout_refuses_with_503_and_removes_the_waiter() -> None:
    g = gate(max_concurrency=1, max_queue=5, queue_timeout_s=0.05)
    slot = await g.acquire()
    start = time.perf_counter()

    with pytest.raises(Overloaded) as info:
        await g.acquire()

    assert 0.04 < time.perf_counter() - start < 0.5
    assert retry_after(info.value) >= 1
    assert (g.queued, g.in_flight) == (0, 1)
    slot.release()
    assert g.in_flight == 0


async def test_queue_timeout_is_503_even_for_a_tenant_over_its_share() -> None:
    g = Gate(GateSettings(1, 5, queue_timeout_s=5.0))  # the real monotonic clock
    slot = await g.acquire()
    served: list[str] = []
    early = asyncio.create_task(g.acquire(tenant="a", deadline=time.monotonic() + 0.03))
    await asyncio.sleep(0)
    tasks = [await queue_up(g, f"a{i}", served, tenant="a") for i in range(3)]
    tasks.append(await queue_up(g, "b0", served, tenant="b"))

    with pytest.raises(Overloaded):  # "a" still holds 3 of 5 queued, over a share of 2.5
        await early

    slot.release()
    await await_all(*tasks)
    assert_nothing_leaked(g)


async def test_deadline_bounds_the_wait_below_the_queue_timeout() -> None:
    g = Gate(GateSettings(1, 5, queue_timeout_s=30.0))  # the real monotonic clock
    slot = await g.acquire()
    start = time.perf_counter()

    with pytest.raises(Overloaded):
        await g.acquire(deadline=time.monotonic() + 0.05)

    assert time.perf_counter() - start < 0.5
    assert g.queued == 0
    slot.release()


# --- cancellation and leaks ---------------------------------------------------------------


async def test_cancelled_waiter_leaves_the_queue_and_leaks_no_slot() -> None:
    g = gate(max_concurrency=1)
    slot = await g.acquire()
    task = await queue_up(g, "w", [])

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert (g.queued, g.in_flight) == (0, 1)
    slot.release()
    assert g.in_flight == 0
    assert_nothing_leaked(g)


async def test_slot_handed_to_a_waiter_cancelled_before_it_ran_passes_to_the_next() -> None:
    g = gate(max_concurrency=1)
    slot = await g.acquire()
    served: list[str] = []
    doomed = await queue_up(g, "doomed", served)
    survivor = await queue_up(g, "survivor", served)

    slot.release()  # hands the slot to "doomed", whose task has not run yet
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await survivor

    assert served == ["survivor"]
    assert (g.queued, g.in_flight) == (0, 0)
    assert_nothing_leaked(g)


async def test_slot_handed_to_the_last_waiter_cancelled_before_it_ran_is_freed() -> None:
    g = gate(max_concurrency=1)
    slot = await g.acquire()
    doomed = await queue_up(g, "doomed", [])

    slot.release()
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed

    assert (g.queued, g.in_flight) == (0, 0)


async def test_many_cancellations_and_timeouts_leave_nothing_held() -> None:
    g = gate(max_concurrency=2, max_queue=50, queue_timeout_s=0.05)

    async def caller(i: int) -> None:
        with await g.acquire(tenant=f"t{i % 3}", priority=i % 2):
            await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(caller(i)) for i in range(30)]
    await asyncio.sleep(0.015)
    for task in tasks[::3]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert all(r is None or isinstance(r, asyncio.CancelledError | Overloaded) for r in results)
    assert (g.queued, g.in_flight) == (0, 0)
    assert_nothing_leaked(g)


def assert_nothing_leaked(g: Gate) -> None:
    """Nothing held or queued, and a new acquire takes the fast path."""
    assert (g.queued, g.in_flight) == (0, 0)
    coro = g.acquire()
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    done.value.value.release()


# --- metrics ------------------------------------------------------------------------------


async def test_on_wait_reports_each_waiters_queue_time_when_it_gets_a_slot() -> None:
    clock = FakeClock()
    waits: list[float] = []
    g = Gate(GateSettings(1, 5), clock, on_wait=waits.append)
    slot = await g.acquire()
    task = await queue_up(g, "w", [])

    clock.advance(2.5)
    slot.release()
    await task

    assert waits == [2.5]  # the fast path is not a wait and is not reported


def test_settings_reject_values_that_cannot_work() -> None:
    for bad in ({"max_concurrency": 0}, {"max_queue": -1}, {"queue_timeout_s": 0.0}):
        with pytest.raises(ValueError):
            GateSettings(**bad)


# --- the product spec's overload scenario -------------------------------------------------


async def test_overload_of_20_on_cap_2_queue_2_serves_4_and_refuses_16_at_once() -> None:
    g = Gate(GateSettings(max_concurrency=2, max_queue=2))
    served = 0
    refusal_delays: list[float] = []

    async def caller(i: int) -> None:
        nonlocal served
        start = time.perf_counter()
        try:
            slot = await g.acquire(tenant=f"t{i}")
        except Overloaded:
            refusal_delays.append(time.perf_counter() - start)
            return
        with slot:
            await asyncio.sleep(0.2)
            served += 1

    await asyncio.gather(*(caller(i) for i in range(20)))

    assert served == 4
    assert len(refusal_delays) == 16
    assert max(refusal_delays) < 0.100
    assert (g.queued, g.in_flight) == (0, 0)


# --- background (batch lines): spare capacity only ------------------------------------------


async def test_background_takes_only_what_the_foregrounds_recent_peak_leaves() -> None:
    clock = FakeClock()
    g = gate(max_concurrency=8, clock=clock)  # a quarter (2) is kept for new arrivals
    foreground = [await g.acquire(priority=1) for _ in range(3)]
    spare = [await g.acquire(priority=BACKGROUND) for _ in range(3)]  # 3 + 3 + 2 = 8
    with pytest.raises(Overloaded) as refused:
        await g.acquire(priority=BACKGROUND)
    assert retry_after(refused.value) == 1 and g.queued == 0  # refused at once, never queued
    assert not g.has_spare()
    for slot in [*spare, *foreground]:
        slot.release()
    # the foreground's peak (3) stays reserved for a while after it has gone quiet
    kept = [await g.acquire(priority=BACKGROUND) for _ in range(3)]
    with pytest.raises(Overloaded):
        await g.acquire(priority=BACKGROUND)
    clock.advance(PEAK_WINDOW_S + 0.1)
    assert g.has_spare()
    more = [await g.acquire(priority=BACKGROUND) for _ in range(3)]  # all but the quarter
    assert g.in_flight == 6 and not g.has_spare()
    assert (await g.acquire(priority=1)) is not None  # an arrival finds room
    for slot in [*kept, *more]:
        slot.release()


async def test_a_background_slot_goes_to_a_waiting_foreground_caller() -> None:
    clock = FakeClock()
    g = gate(max_concurrency=2, clock=clock)
    clock.advance(PEAK_WINDOW_S + 1)
    background = [await g.acquire(priority=BACKGROUND) for _ in range(2)]
    served: list[str] = []
    task = await queue_up(g, "interactive", served, priority=1)
    with pytest.raises(Overloaded):  # someone waits: no background caller goes ahead
        await g.acquire(priority=BACKGROUND)
    background[0].release()
    await await_all(task)
    assert served == ["interactive"]
    background[1].release()
    assert g.in_flight == 0


async def test_without_a_cap_background_goes_in_like_anyone() -> None:
    g = gate(max_concurrency=None, max_queue=0)
    slots = [await g.acquire(priority=BACKGROUND) for _ in range(50)]
    assert g.in_flight == 50
    for slot in slots:
        slot.release()


async def test_take_hands_out_a_free_slot_at_once_and_none_when_the_caller_must_wait() -> None:
    g = gate(max_concurrency=1)
    slot = g.take()
    assert isinstance(slot, Slot) and g.in_flight == 1
    assert g.take() is None  # full: acquire() would queue
    slot.release()
    assert g.in_flight == 0
    assert isinstance(g.take(), Slot)
    with pytest.raises(Overloaded):
        g.take(BACKGROUND)  # no spare slot for the background: refused, never queued
    assert isinstance(gate(max_concurrency=None).take(BACKGROUND), Slot)
