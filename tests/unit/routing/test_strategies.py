"""Selection strategies: try orders for ordered, weighted, least_busy and fastest; TargetStats."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from modelport.routing.strategies import STRATEGIES, Strategy, TargetStats, order

DRAWS = 20_000


def stats_with(*, in_flight: list[int] | None = None, ewma: list[float | None] | None = None
               ) -> list[TargetStats]:
    n = len(in_flight if in_flight is not None else ewma or [])
    out = [TargetStats() for _ in range(n)]
    for s, value in zip(out, in_flight or [0] * n, strict=True):
        s.in_flight = value
    for s, latency in zip(out, ewma or [None] * n, strict=True):
        s.ewma_s = latency
    return out


def weighted(weights: list[float], rng: random.Random) -> list[int]:
    return order("weighted", weights, (), weights, rng)


# --- TargetStats ---------------------------------------------------------------------------


def test_stats_ewma_is_none_until_the_first_observation_which_sets_it() -> None:
    s = TargetStats()
    assert s.ewma_s is None
    assert s.in_flight == 0

    s.observe(2.0)

    assert s.ewma_s == 2.0


def test_stats_ewma_moves_a_fifth_of_the_way_to_each_new_latency() -> None:
    s = TargetStats()
    s.observe(1.0)
    s.observe(2.0)
    assert s.ewma_s == pytest.approx(1.2)
    s.observe(0.2)
    assert s.ewma_s == pytest.approx(1.2 + 0.2 * (0.2 - 1.2))


def test_stats_started_and_finished_track_in_flight_and_finished_observes_latency() -> None:
    s = TargetStats()
    s.started()
    s.started()
    assert s.in_flight == 2

    s.finished(0.5)
    assert s.in_flight == 1
    assert s.ewma_s == 0.5
    s.finished()  # a failure: no measurement
    assert s.in_flight == 0
    assert s.ewma_s == 0.5


def test_stats_in_flight_never_goes_below_zero() -> None:
    s = TargetStats()
    s.finished()
    assert s.in_flight == 0


def test_stats_reject_an_alpha_outside_zero_to_one() -> None:
    with pytest.raises(ValueError):
        TargetStats(alpha=0.0)


# --- common --------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_one_target_returns_zero_without_reading_stats_weights_or_randomness(
    strategy: Strategy,
) -> None:
    rng = random.Random(1)
    state = rng.getstate()

    assert order(strategy, ["only"], (), (), rng, explore=1.0) == [0]
    assert rng.getstate() == state


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_targets_returns_an_empty_order(strategy: Strategy) -> None:
    assert order(strategy, [], (), (), random.Random(1)) == []


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        order("cheapest", ["a", "b"], (), (), random.Random(1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("strategy", "stats", "weights"),
    [
        ("weighted", [], [1.0]),
        ("least_busy", [TargetStats()], []),
        ("fastest", [TargetStats()] * 3, []),
    ],
)
def test_stats_or_weights_of_the_wrong_length_are_refused(
    strategy: Strategy, stats: list[TargetStats], weights: list[float]
) -> None:
    with pytest.raises(ValueError, match="candidates"):
        order(strategy, ["a", "b"], stats, weights, random.Random(1))


# --- ordered -------------------------------------------------------------------------------


def test_ordered_keeps_the_configured_order_and_ignores_stats() -> None:
    stats = stats_with(in_flight=[9, 0, 5, 1], ewma=[9.0, 0.1, None, 1.0])

    assert order("ordered", "abcd", stats, [0.0, 1.0, 5.0, 1.0], random.Random(1)) == [
        0, 1, 2, 3,
    ]


# --- weighted ------------------------------------------------------------------------------


def test_weighted_first_pick_follows_the_weights() -> None:
    rng = random.Random(20240601)

    firsts = Counter(weighted([3.0, 1.0], rng)[0] for _ in range(DRAWS))

    assert firsts[0] / DRAWS == pytest.approx(0.75, abs=0.03)
    assert firsts[0] + firsts[1] == DRAWS


def test_weighted_is_sampling_without_replacement_for_every_position() -> None:
    rng = random.Random(7)
    expected = {
        (0, 1, 2): 0.5 * 0.5,
        (0, 2, 1): 0.5 * 0.5,
        (1, 0, 2): 0.25 * 2 / 3,
        (1, 2, 0): 0.25 * 1 / 3,
        (2, 0, 1): 0.25 * 2 / 3,
        (2, 1, 0): 0.25 * 1 / 3,
    }

    seen = Counter(tuple(weighted([2.0, 1.0, 1.0], rng)) for _ in range(DRAWS))

    assert set(seen) == set(expected)
    for permutation, probability in expected.items():
        assert seen[permutation] / DRAWS == pytest.approx(probability, abs=0.02)


def test_weighted_puts_zero_weights_last_in_configured_order() -> None:
    rng = random.Random(3)

    orders = [weighted([0.0, 1.0, 0.0, 2.0], rng) for _ in range(2000)]

    assert all(o[2:] == [0, 2] for o in orders)
    assert {tuple(o[:2]) for o in orders} == {(1, 3), (3, 1)}


def test_weighted_with_one_positive_weight_needs_no_randomness() -> None:
    rng = random.Random(3)
    state = rng.getstate()

    assert weighted([0.0, 0.0, 4.0], rng) == [2, 0, 1]
    assert rng.getstate() == state


def test_weighted_with_all_weights_zero_keeps_the_configured_order() -> None:
    assert weighted([0.0, 0.0, 0.0], random.Random(3)) == [0, 1, 2]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_weighted_refuses_negative_infinite_or_nan_weights(bad: float) -> None:
    with pytest.raises(ValueError, match="weights"):
        weighted([1.0, bad], random.Random(3))


# --- least_busy ----------------------------------------------------------------------------


def test_least_busy_orders_by_calls_in_flight() -> None:
    stats = stats_with(in_flight=[3, 0, 1, 2])

    assert order("least_busy", "abcd", stats, (), random.Random(1)) == [1, 2, 3, 0]


def test_least_busy_keeps_the_configured_order_among_ties() -> None:
    stats = stats_with(in_flight=[2, 0, 1, 0, 2])

    assert order("least_busy", "abcde", stats, (), random.Random(1)) == [1, 3, 2, 0, 4]


# --- fastest -------------------------------------------------------------------------------


def test_fastest_puts_unmeasured_targets_first_then_by_latency_with_stable_ties() -> None:
    stats = stats_with(ewma=[0.5, None, 0.2, None, 0.2])

    assert order("fastest", "abcde", stats, (), random.Random(1), explore=0.0) == [
        1, 3, 2, 4, 0,
    ]


def test_fastest_without_exploration_draws_no_randomness() -> None:
    rng = random.Random(1)
    state = rng.getstate()

    order("fastest", "ab", stats_with(ewma=[0.3, 0.1]), (), rng, explore=0.0)

    assert rng.getstate() == state


def test_fastest_explores_another_target_with_probability_explore_uniformly() -> None:
    rng = random.Random(11)
    stats = stats_with(ewma=[0.4, 0.1, 0.3, 0.2])  # fastest first: [1, 3, 2, 0]

    orders = Counter(
        tuple(order("fastest", "abcd", stats, (), rng, explore=0.2)) for _ in range(DRAWS)
    )

    assert set(orders) == {(1, 3, 2, 0), (3, 1, 2, 0), (2, 1, 3, 0), (0, 1, 3, 2)}
    assert orders[(1, 3, 2, 0)] / DRAWS == pytest.approx(0.8, abs=0.015)
    for explored in [(3, 1, 2, 0), (2, 1, 3, 0), (0, 1, 3, 2)]:
        assert orders[explored] / DRAWS == pytest.approx(0.2 / 3, abs=0.01)


def test_fastest_refuses_an_explore_probability_outside_zero_to_one() -> None:
    with pytest.raises(ValueError, match="explore"):
        order("fastest", "ab", stats_with(ewma=[0.1, 0.2]), (), random.Random(1), explore=1.5)
