"""A fake OpenAI-compatible provider: a real aiohttp server on a free port, in its own thread.

By default it answers chat, completions and embeddings like OpenAI does (streaming too,
with a usage chunk when asked). Tests script other behaviour with ``enqueue``: a status and
body, a delay, a stream with a pause between chunks, a stream that stalls, a dropped
connection. Every request it received is kept in ``requests`` for assertions.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list -> JSON, bytes/str -> as is, None -> the default answer
    delay_s: float = 0.0
    stream_chunks: list[str] | None = None  # content pieces for a scripted stream
    chunk_interval_s: float = 0.0
    stall_after: int | None = None  # stop sending (but keep the connection) after N chunks
    break_after: int | None = None  # drop the connection after N chunks
    drop_connection: bool = False
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeUpstream:
    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.stream_cancelled = threading.Event()
        self._script: deque[Reply] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: Reply) -> None:
        self._script.extend(replies)

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(target=self._serve, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            fut.result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:  # replies still sleeping on a scripted delay
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        self.requests.append(Seen(request.method, request.path, dict(request.headers), body))
        reply = self._script.popleft() if self._script else Reply()
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.drop_connection:
            assert request.transport is not None
            request.transport.abort()
            await asyncio.sleep(0.1)
            return web.Response()
        if reply.body is not None or reply.status != 200:
            return _fixed(reply)
        is_stream = isinstance(body, dict) and body.get("stream") is True
        if is_stream or reply.stream_chunks is not None:
            return await self._stream(request, body if isinstance(body, dict) else {}, reply)
        return web.json_response(_default_answer(request.path, body), headers=reply.headers)

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: Reply
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **reply.headers})
        await resp.prepare(request)
        pieces = reply.stream_chunks or ["Hello", " from", " the", " fake"]
        model = body.get("model", "fake")
        chat = request.path.endswith("/chat/completions")
        include_usage = (body.get("stream_options") or {}).get("include_usage") is True
        try:
            for i, piece in enumerate(pieces):
                if reply.stall_after is not None and i == reply.stall_after:
                    await self._stall_until_client_leaves(request)
                    return resp
                if reply.break_after is not None and i == reply.break_after:
                    assert request.transport is not None
                    request.transport.abort()
                    return resp
                chunk = _chunk(model, piece, chat, include_usage)
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                if reply.chunk_interval_s:
                    await asyncio.sleep(reply.chunk_interval_s)
            if include_usage:
                usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                         "created": int(time.time()), "model": model, "choices": [],
                         "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces),
                                   "total_tokens": 5 + len(pieces)}}
                await resp.write(b"data: " + orjson.dumps(usage) + b"\n\n")
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.stream_cancelled.set()
            raise
        return resp

    async def _stall_until_client_leaves(self, request: web.Request) -> None:
        """Send nothing more, as a stuck model would, until the caller hangs up (or 60 s)."""
        for _ in range(1200):
            transport = request.transport
            if transport is None or transport.is_closing():
                self.stream_cancelled.set()
                return
            await asyncio.sleep(0.05)


def _fixed(reply: Reply) -> web.Response:
    if isinstance(reply.body, (dict, list)):
        return web.Response(status=reply.status, body=orjson.dumps(reply.body),
                            content_type="application/json", headers=reply.headers)
    text = reply.body if reply.body is not None else b""
    data = text.encode() if isinstance(text, str) else text
    return web.Response(status=reply.status, body=data, headers=reply.headers)


def _chunk(model: str, piece: str, chat: bool, include_usage: bool) -> dict[str, Any]:
    choice: dict[str, Any] = (
        {"index": 0, "delta": {"content": piece}, "finish_reason": None}
        if chat else {"index": 0, "text": piece, "finish_reason": None}
    )
    chunk: dict[str, Any] = {
        "id": "chatcmpl-fake" if chat else "cmpl-fake",
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def _default_answer(path: str, body: Any) -> dict[str, Any]:
    model = body.get("model", "fake") if isinstance(body, dict) else "fake"
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    if path.endswith("/chat/completions"):
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "Hello from the fake"}}],
            "usage": usage,
        }
    if path.endswith("/completions"):
        return {
            "id": "cmpl-fake", "object": "text_completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "text": "Hello from the fake", "finish_reason": "stop",
                         "logprobs": None}],
            "usage": usage,
        }
    if path.endswith("/embeddings"):
        inputs = body.get("input", "") if isinstance(body, dict) else ""
        count = len(inputs) if isinstance(inputs, list) else 1
        return {
            "object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                     for i in range(count)],
            "usage": {"prompt_tokens": 4, "total_tokens": 4},
        }
    return {"error": {"message": f"no such path {path}", "type": "invalid_request_error",
                      "param": None, "code": None}}


def chat_answer(content: str | None, model: str = "m", *,
                tool_calls: list[dict[str, Any]] | None = None) -> Reply:
    """A whole chat completion the fake answers with: this content (or these tool calls),
    10 prompt and 5 completion tokens."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return Reply(body={"id": "chatcmpl-fake", "object": "chat.completion", "created": 1,
                       "model": model, "usage": {"prompt_tokens": 10, "completion_tokens": 5,
                                                 "total_tokens": 15},
                       "choices": [{"index": 0, "message": message,
                                    "finish_reason": "tool_calls" if tool_calls else "stop"}]})
