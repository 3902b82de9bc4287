"""Selection strategies: the order in which to try a route's targets.

:func:`order` returns the indexes of all candidates, first choice first; the rest are the
fallbacks in that order. Each strategy is one branch of it:

- ``ordered``: as configured;
- ``weighted``: a random permutation drawn by weight without replacement (the first pick is
  target ``i`` with probability ``w_i / sum(w)``, the second likewise among the rest, ...);
  weight 0 is a last resort, after every positive weight, in configured order;
- ``least_busy``: fewest calls in flight first, ties in configured order;
- ``fastest``: lowest latency EWMA first, never-measured targets before all others (they need a
  measurement), ties in configured order; with probability ``explore`` a uniformly chosen
  other target moves to the front, so that a slow target's estimate can recover.

:class:`TargetStats` holds what ``least_busy`` and ``fastest`` read; the caller keeps one per
target and reports calls through it. This module does no I/O, owns no state between calls and
takes its randomness from an injected ``random.Random``; breakers and retries live elsewhere.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Literal

Strategy = Literal["ordered", "weighted", "least_busy", "fastest"]

STRATEGIES: tuple[Strategy, ...] = ("ordered", "weighted", "least_busy", "fastest")

EWMA_ALPHA = 0.2


class TargetStats:
    """Calls in flight and a latency EWMA of one target; mutated in place by the caller."""

    __slots__ = ("alpha", "ewma_s", "in_flight")

    def __init__(self, alpha: float = EWMA_ALPHA) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha = alpha
        self.in_flight = 0
        self.ewma_s: float | None = None  # None until the first observation

    def observe(self, latency_s: float) -> None:
        """Fold one latency (seconds) into the EWMA; the first one sets it."""
        ewma = self.ewma_s
        self.ewma_s = latency_s if ewma is None else ewma + self.alpha * (latency_s - ewma)

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, latency_s: float | None = None) -> None:
        """End a call; pass its latency only when it is a fair measurement (a success).

        ``in_flight`` never goes below 0, so a stray extra call cannot poison least_busy.
        """
        if self.in_flight > 0:
            self.in_flight -= 1
        if latency_s is not None:  # self.observe(latency_s), without the call
            ewma = self.ewma_s
            self.ewma_s = latency_s if ewma is None else ewma + self.alpha * (latency_s - ewma)


def order(
    strategy: Strategy,
    candidates: Sequence[object],
    stats: Sequence[TargetStats],
    weights: Sequence[float],
    rng: random.Random,
    explore: float = 0.1,
) -> list[int]:
    """Indexes into ``candidates``, all of them, in the order to try them.

    ``weights`` is read only by ``weighted`` and ``stats`` only by ``least_busy`` and
    ``fastest``; where read, each must be as long as ``candidates``. One candidate returns
    ``[0]`` without reading anything else.
    """
    n = len(candidates)
    if n == 1:
        return [0]
    if n == 0:
        return []
    if strategy == "ordered":
        return list(range(n))
    if strategy == "weighted":
        _check_length("weights", weights, n)
        return _weighted(weights, n, rng)
    if strategy == "least_busy":
        _check_length("stats", stats, n)
        return sorted(range(n), key=lambda i: stats[i].in_flight)
    if strategy == "fastest":
        _check_length("stats", stats, n)
        return _fastest(stats, n, rng, explore)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")


def _check_length(name: str, values: Sequence[object], n: int) -> None:
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} candidates")


def _weighted(weights: Sequence[float], n: int, rng: random.Random) -> list[int]:
    result: list[int] = []
    total = 0.0
    for i in range(n):
        weight = weights[i]
        if 0.0 < weight < math.inf:
            result.append(i)
            total += weight
        elif weight != 0.0:  # negative, infinite or NaN
            raise ValueError(f"weights must be finite and >= 0, got {weight!r} at {i}")
    positive = len(result)
    if positive < n:
        result.extend(i for i in range(n) if weights[i] == 0.0)
    # Successive weighted draws, in place: position p gets one of result[p:] by weight, which
    # is swapped into p. The last position needs no draw.
    random_ = rng.random
    for p in range(positive - 1):
        r = random_() * total
        j = p
        last = positive - 1
        while j < last:
            r -= weights[result[j]]
            if r < 0.0:
                break
            j += 1
        chosen = result[j]
        result[j] = result[p]
        result[p] = chosen
        total -= weights[chosen]
    return result


def _fastest(
    stats: Sequence[TargetStats], n: int, rng: random.Random, explore: float
) -> list[int]:
    if not 0.0 <= explore <= 1.0:
        raise ValueError(f"explore must be in [0, 1], got {explore!r}")
    # Never measured sorts first: -inf is below every latency.
    result = sorted(
        range(n), key=lambda i: -math.inf if (e := stats[i].ewma_s) is None else e
    )
    if explore > 0.0 and rng.random() < explore:
        result.insert(0, result.pop(1 + rng.randrange(n - 1)))
    return result
