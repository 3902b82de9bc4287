"""The request log: one JSON line per request, written in batches.

Going through the ``logging`` module costs tens of microseconds a line (a record object, a
formatter, a lock and a write call each time), which is more than the rest of Modelport's
work on a request. Lines here are rendered with orjson in the same shape as every other log
line, redacted, and appended to a buffer that is written out every ``flush_interval_s``, when
it grows past ``max_buffer_bytes``, and at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from typing import Any, BinaryIO

import orjson

from modelport.observability.logging import redaction_forms

LOGGER = "modelport.access"


class AccessLog:
    def __init__(
        self,
        stream: BinaryIO,
        secrets: Iterable[str] = (),
        *,
        flush_interval_s: float = 0.2,
        max_buffer_bytes: int = 64 * 1024,
    ) -> None:
        self._stream = stream
        self._secrets = tuple(s.encode() for s in redaction_forms(secrets))
        self._interval = flush_interval_s
        self._max = max_buffer_bytes
        self._lines: list[bytes] = []
        self._size = 0
        self._task: asyncio.Task[None] | None = None
        self._second = 0
        self._stamp = ""

    def learn(self, secrets: Iterable[str]) -> None:
        """Redact these too (a reloaded config's): the earlier ones stay redacted."""
        known = {s.decode() for s in self._secrets}
        self._secrets = tuple(s.encode() for s in redaction_forms((*known, *secrets)))

    def write(self, fields: dict[str, Any]) -> None:
        line = orjson.dumps(
            {"ts": self._timestamp(), "level": "info", "logger": LOGGER, "msg": "request",
             **fields},
            default=str,
        )
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, b"***")
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= self._max:
            self.flush()

    def _timestamp(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((now - second) * 1000):03d}Z"

    def flush(self) -> None:
        if not self._lines:
            return
        data = b"\n".join(self._lines) + b"\n"
        self._lines.clear()
        self._size = 0
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(data)
            self._stream.flush()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="modelport-access-log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            self.flush()
