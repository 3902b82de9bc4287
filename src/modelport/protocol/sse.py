"""Server-sent events: splitting a byte stream into complete events, as a small state object.

Chunks arrive split anywhere; ``EventSplitter.feed`` returns the complete events seen so far
(each with its terminating blank line) and keeps only the incomplete tail, so that events
are forwarded the moment they are whole and nothing else is held back.
"""

from __future__ import annotations

_SEPARATORS = (b"\n\n", b"\r\n\r\n")


class EventSplitter:
    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._tail + chunk if self._tail else chunk
        events: list[bytes] = []
        start = 0
        while True:
            end, sep_len = _next_boundary(data, start)
            if end < 0:
                break
            events.append(data[start : end + sep_len])
            start = end + sep_len
        self._tail = data[start:]
        return events

    def flush(self) -> bytes:
        """Whatever incomplete event is left when the stream ends."""
        tail, self._tail = self._tail, b""
        return tail


def _next_boundary(data: bytes, start: int) -> tuple[int, int]:
    best, best_len = -1, 0
    for sep in _SEPARATORS:
        i = data.find(sep, start)
        if i >= 0 and (best < 0 or i < best):
            best, best_len = i, len(sep)
    return best, best_len


def event_data(event: bytes) -> bytes:
    """The joined ``data:`` lines of one event (the SSE spec's data buffer)."""
    lines = [
        line[5:].removeprefix(b" ")
        for line in event.splitlines()
        if line.startswith(b"data:")
    ]
    return b"\n".join(lines)
