"""A batch's input file: JSON Lines in OpenAI's batch format, checked line by line.

Each line is one request: ``{"custom_id": "...", "method": "POST", "url":
"/v1/chat/completions", "body": {...}}``. A file is read one line at a time (a line longer
than the limit is refused without being read whole), so a file of any size is checked in
bounded memory; the first problem is refused with its line number and field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from modelport.config.settings import BatchSettings
from modelport.core.operation import Operation
from modelport.errors import InvalidFile

ENDPOINTS = {
    "/v1/chat/completions": Operation.CHAT,
    "/v1/completions": Operation.COMPLETION,
    "/v1/embeddings": Operation.EMBEDDING,
}
CHUNK_BYTES = 1024 * 1024  # stored chunks hold whole lines, this many bytes or one line
MAX_CUSTOM_ID = 512


@dataclass(frozen=True, slots=True)
class Line:
    line_no: int
    custom_id: str
    url: str
    body: dict[str, Any]
    raw_body: str  # the body as JSON text


@dataclass(frozen=True, slots=True)
class Checked:
    lines: int
    bytes: int


def parse_line(raw: bytes, line_no: int) -> Line:
    """One line, checked; ``InvalidFile`` names the line and the field."""
    where = f"Line {line_no}"
    try:
        item = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidFile(f"{where} is not valid JSON: the file must be JSON Lines, one "
                           "request object per line.", param="file") from None
    if not isinstance(item, dict):
        raise InvalidFile(f"{where} is not a JSON object.", param="file")
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or len(custom_id) > MAX_CUSTOM_ID \
            or "\x00" in custom_id:
        raise InvalidFile(f"{where}: custom_id must be a string of 1 to {MAX_CUSTOM_ID} "
                           "characters.", param="custom_id")
    if item.get("method", "POST") != "POST":
        raise InvalidFile(f"{where}: method must be POST.", param="method")
    url = item.get("url")
    if not isinstance(url, str) or url not in ENDPOINTS:
        raise InvalidFile(f"{where}: url {url!r} is not an endpoint batches run; use one "
                           f"of {', '.join(ENDPOINTS)}.", param="url")
    body = item.get("body")
    if not isinstance(body, dict):
        raise InvalidFile(f"{where}: body must be a JSON object.", param="body")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise InvalidFile(f"{where}: body.model must name a route.", param="body.model")
    if body.get("stream") is True:
        raise InvalidFile(f"{where}: body.stream cannot be true in a batch.",
                           param="body.stream")
    return Line(line_no, custom_id, url, body, orjson.dumps(body).decode())


def _lines(source: IO[bytes], limits: BatchSettings) -> Iterator[tuple[int, bytes]]:
    """Numbered lines of a file, each read with a bound; a blank last line ends it."""
    line_no = 0
    while True:
        raw = source.readline(limits.max_line_bytes + 1)
        if not raw:
            return
        line_no += 1
        if len(raw) > limits.max_line_bytes:
            raise InvalidFile(f"Line {line_no} is longer than the limit of "
                               f"{limits.max_line_bytes} bytes (batch.max_line_bytes).",
                               param="file")
        if not raw.strip():
            rest = source.read(1)
            if not rest:
                return
            raise InvalidFile(f"Line {line_no} is empty.", param="file")
        yield line_no, raw


def check(source: IO[bytes], limits: BatchSettings) -> Checked:
    """Every line of an input file checked, with no custom_id used twice."""
    seen: dict[str, int] = {}
    size = count = 0
    for line_no, raw in _lines(source, limits):
        line = parse_line(raw, line_no)
        first = seen.setdefault(line.custom_id, line_no)
        if first != line_no:
            raise InvalidFile(f"Line {line_no}: custom_id {line.custom_id!r} is already used "
                               f"on line {first}; each line needs its own.",
                               param="custom_id")
        count = line_no
        size += len(raw)
        if count > limits.max_lines:
            raise InvalidFile(f"The file has more than {limits.max_lines} lines "
                               "(batch.max_lines).", param="file")
    if count == 0:
        raise InvalidFile("The file has no lines.", param="file")
    return Checked(count, size)


def chunks(source: IO[bytes], limits: BatchSettings) -> Iterator[bytes]:
    """A checked file in chunks of whole lines, for keeping."""
    chunk = bytearray()
    for _line_no, raw in _lines(source, limits):
        if chunk and len(chunk) + len(raw) > CHUNK_BYTES:
            yield bytes(chunk)
            chunk.clear()
        chunk += raw if raw.endswith(b"\n") else raw + b"\n"
    if chunk:
        yield bytes(chunk)


def lines_of(chunks: Iterator[bytes]) -> Iterator[Line]:
    """The lines of a kept file (kept chunks end on a line's end)."""
    line_no = 0
    for chunk in chunks:
        for raw in chunk.split(b"\n")[:-1]:  # kept chunks end with one
            line_no += 1
            yield parse_line(raw, line_no)
