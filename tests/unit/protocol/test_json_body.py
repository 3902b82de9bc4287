"""One nesting limit for every JSON body, cheap for ordinary ones."""

from __future__ import annotations

import orjson
import pytest

from modelport.errors import MalformedBody
from modelport.protocol.json_body import MAX_DEPTH, load_object, nesting_depth


def _nested(depth: int) -> bytes:
    return b'{"x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_the_limit_is_writable_by_the_serialiser_it_protects() -> None:
    doc = load_object(_nested(MAX_DEPTH))
    assert orjson.loads(orjson.dumps(doc)) == doc


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 254, 255, 1023])
def test_deeper_is_malformed(depth: int) -> None:
    with pytest.raises(MalformedBody, match=f"deeper than {MAX_DEPTH}"):
        load_object(_nested(depth))


def test_many_brackets_side_by_side_are_not_depth() -> None:
    wide = orjson.dumps({"x": [[] for _ in range(5000)], "y": "[[[[" * 100})
    assert len(load_object(wide)["x"]) == 5000


def test_nesting_depth_counts_objects_and_arrays_and_stops_early() -> None:
    assert nesting_depth(1) == 0
    assert nesting_depth({"a": [{"b": []}]}) == 4
    deep: list[object] = []
    for _ in range(10_000):
        deep = [deep]
    assert nesting_depth(deep, stop=50) == 50
