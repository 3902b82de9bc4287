"""EventSplitter and event_data: whole SSE events out of a byte stream split anywhere."""

from __future__ import annotations

import pytest

from modelport.protocol.sse import EventSplitter, event_data

STREAM = (
    b'data: {"id":"1","choices":[{"delta":{"content":"Hel"}}]}\n\n'
    b": keep-alive comment\n\n"
    b'event: message\ndata: {"id":"2","choices":[{"delta":{"content":"lo"}}]}\n\n'
    b"data: [DONE]\n\n"
)
EVENTS = [
    b'data: {"id":"1","choices":[{"delta":{"content":"Hel"}}]}\n\n',
    b": keep-alive comment\n\n",
    b'event: message\ndata: {"id":"2","choices":[{"delta":{"content":"lo"}}]}\n\n',
    b"data: [DONE]\n\n",
]
CRLF_STREAM = b"data: a\r\n\r\ndata: b\r\nid: 2\r\n\r\ndata: [DONE]\r\n\r\n"
CRLF_EVENTS = [b"data: a\r\n\r\n", b"data: b\r\nid: 2\r\n\r\n", b"data: [DONE]\r\n\r\n"]


def feed_all(chunks: list[bytes]) -> tuple[list[bytes], bytes]:
    splitter = EventSplitter()
    events: list[bytes] = []
    for chunk in chunks:
        events.extend(splitter.feed(chunk))
    return events, splitter.flush()


def test_whole_stream_in_one_chunk_splits_into_its_events() -> None:
    assert feed_all([STREAM]) == (EVENTS, b"")


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_one_split_at_any_byte_gives_the_same_events(cut: int) -> None:
    assert feed_all([STREAM[:cut], STREAM[cut:]]) == (EVENTS, b"")


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    assert feed_all([STREAM[i : i + 1] for i in range(len(STREAM))]) == (EVENTS, b"")


@pytest.mark.parametrize("cut", range(1, len(CRLF_STREAM)))
def test_crlf_separated_events_split_at_any_byte_give_the_same_events(cut: int) -> None:
    assert feed_all([CRLF_STREAM[:cut], CRLF_STREAM[cut:]]) == (CRLF_EVENTS, b"")


def test_event_is_returned_as_soon_as_its_blank_line_arrives() -> None:
    splitter = EventSplitter()

    assert splitter.feed(b"data: a\n") == []
    assert splitter.feed(b"\ndata: b") == [b"data: a\n\n"]


def test_empty_chunk_yields_nothing_and_keeps_the_tail() -> None:
    splitter = EventSplitter()
    splitter.feed(b"data: partial")

    assert splitter.feed(b"") == []
    assert splitter.flush() == b"data: partial"


def test_flush_returns_the_incomplete_tail_once() -> None:
    splitter = EventSplitter()
    events = splitter.feed(b"data: whole\n\ndata: cut off")

    assert events == [b"data: whole\n\n"]
    assert splitter.flush() == b"data: cut off"
    assert splitter.flush() == b""


def test_flush_resets_so_later_feeds_do_not_see_the_old_tail() -> None:
    splitter = EventSplitter()
    splitter.feed(b"data: old")
    splitter.flush()

    assert splitter.feed(b"data: new\n\n") == [b"data: new\n\n"]


def test_event_data_strips_the_data_prefix_and_one_space() -> None:
    assert event_data(b"data: {}\n\n") == b"{}"
    assert event_data(b"data:{}\n\n") == b"{}"
    assert event_data(b"data:  two spaces\n\n") == b" two spaces"


def test_event_data_joins_multiple_data_lines_with_newlines() -> None:
    event = b'event: message\ndata: {"a":\ndata: 1}\nid: 7\n\n'

    assert event_data(event) == b'{"a":\n1}'


def test_event_data_reads_crlf_lines() -> None:
    assert event_data(b"data: x\r\ndata: y\r\n\r\n") == b"x\ny"


def test_event_data_of_an_event_without_data_is_empty() -> None:
    assert event_data(b": comment\n\n") == b""
