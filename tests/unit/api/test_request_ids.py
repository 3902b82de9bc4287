"""Generated request ids: unique, fixed-size, and ordered by time."""

from __future__ import annotations

import time

from modelport.api.middleware import RequestIds


def test_ids_are_unique_hex_of_fixed_length() -> None:
    ids = RequestIds()
    made = [ids() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in made)


def test_ids_made_later_sort_after_earlier_ones() -> None:
    ids = RequestIds()
    first = ids()
    time.sleep(0.002)
    assert ids() > first


def test_two_generators_do_not_repeat_each_other() -> None:
    a, b = RequestIds(), RequestIds()
    assert {a() for _ in range(1000)}.isdisjoint({b() for _ in range(1000)})
