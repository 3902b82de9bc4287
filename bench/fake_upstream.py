"""Streaming fake upstream for the streaming benchmark (bench/streaming.py).

An aiohttp server on uvloop answering POST /v1/chat/completions like OpenAI:

- with "stream": true, an SSE stream of CHUNKS chat.completion.chunk events, INTERVAL ms apart
  on a fixed schedule (the first at once, chunk i at i * INTERVAL after the request arrived, so
  a late timer does not push later chunks back), then a closing chunk with finish_reason
  "stop", a usage chunk if stream_options.include_usage is set, and `data: [DONE]`;
- otherwise a canned chat.completion (for readiness probes), after --delay-ms (0 by default;
  the batch benchmark's provider answers in 50 ms).

Every content chunk carries a non-empty delta.content, so a client can time each one.
aiohttp sets TCP_NODELAY on its connections, so each chunk leaves at once.

Usage: python bench/fake_upstream.py [--host H] [--port P] [--chunks N] [--interval-ms MS]
                                     [--delay-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time

import orjson
import uvloop
from aiohttp import web

CHAT_PATH = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
COMPLETION = orjson.dumps({
    "id": "chatcmpl-fake",
    "object": "chat.completion",
    "created": 1700000000,
    "model": MODEL,
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
        "logprobs": None,
        "finish_reason": "stop",
    }],
    "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
})  # fmt: skip


def event(payload: dict[str, object]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def chunk(delta: dict[str, str], finish: str | None, created: int) -> dict[str, object]:
    return {
        "id": "chatcmpl-fake-stream",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


class FakeUpstream:
    def __init__(self, chunks: int, interval_s: float, delay_s: float = 0.0) -> None:
        self.interval_s = interval_s
        self.delay_s = delay_s
        self.answered = 0
        created = int(time.time())
        self.chunks = [
            event(chunk({"role": "assistant", "content": "tok0 "} if i == 0
                        else {"content": f"tok{i} "}, None, created))
            for i in range(chunks)
        ]  # fmt: skip
        self.finish = event(chunk({}, "stop", created))
        self.usage = event({
            "id": "chatcmpl-fake-stream", "object": "chat.completion.chunk", "created": created,
            "model": MODEL, "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": chunks,
                      "total_tokens": 9 + chunks},
        })  # fmt: skip

    async def chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.json_response({"error": {"message": "bad JSON"}}, status=400)
        if not isinstance(body, dict) or not body.get("stream"):
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            self.answered += 1
            return web.Response(body=COMPLETION, content_type="application/json")
        loop = asyncio.get_running_loop()
        start = loop.time()
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for i, data in enumerate(self.chunks):
            delay = start + i * self.interval_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await response.write(data)
        options = body.get("stream_options")
        tail = self.finish
        if isinstance(options, dict) and options.get("include_usage"):
            tail += self.usage
        await response.write(tail + b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def serve(host: str, port: int, chunks: int, interval_s: float,
                delay_s: float = 0.0) -> None:
    fake = FakeUpstream(chunks, interval_s, delay_s)
    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post(CHAT_PATH, fake.chat)

    async def answered(_request: web.Request) -> web.Response:
        return web.json_response({"answered": fake.answered})

    app.router.add_get("/answered", answered)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake upstream on http://{host}:{port}{CHAT_PATH}: {chunks} chunks, "
          f"{interval_s * 1e3:g} ms apart", flush=True)  # fmt: skip
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18600)
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.chunks, args.interval_ms / 1e3,
                     args.delay_ms / 1e3))


if __name__ == "__main__":
    main()
