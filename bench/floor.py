"""The Python floor: the thinnest honest Python proxy, for the gateway-overhead benchmark.

A raw ASGI app on uvicorn (httptools, uvloop, one worker, no access log) with one aiohttp
ClientSession and orjson. For POST /v1/chat/completions it reads the body, parses it, swaps
"model" for the target model, re-serialises it, forwards it to the upstream, awaits the whole
upstream body and answers with the upstream status and body. It does what any real gateway
must do for a non-streaming request and nothing more, so a gateway cannot be faster in Python.

Usage: python bench/floor.py [UPSTREAM_BASE_URL] [--host H] [--port P]
Environment: UPSTREAM (base URL, default http://127.0.0.1:18100/v1), FLOOR_TARGET_MODEL
(default gpt-4o-mini), BENCH_UPSTREAM_KEY (sent upstream as a bearer token, if set).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
import orjson
import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHAT_PATH = "/v1/chat/completions"


class Floor:
    """ASGI app: parse, swap the model, forward, answer."""

    def __init__(self, upstream: str, model: str, api_key: str | None) -> None:
        self.url = upstream.rstrip("/") + "/chat/completions"
        self.model = model
        self.headers = {"Content-Type": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "http":
            await self.http(scope, receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
                self.session = aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=60)
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST" or scope["path"] != CHAT_PATH:
            await respond(send, 404, b'{"error":{"message":"not found"}}')
            return
        body = await read_body(receive)
        try:
            request = orjson.loads(body)
            request["model"] = self.model
        except (orjson.JSONDecodeError, TypeError):
            await respond(send, 400, b'{"error":{"message":"body must be a JSON object"}}')
            return
        assert self.session is not None, "lifespan startup did not run"
        try:
            async with self.session.post(
                self.url, data=orjson.dumps(request), headers=self.headers
            ) as upstream:
                status, data = upstream.status, await upstream.read()
        except (aiohttp.ClientError, TimeoutError):
            await respond(send, 502, b'{"error":{"message":"upstream unavailable"}}')
            return
        await respond(send, status, data)


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


async def respond(send: Send, status: int, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "upstream", nargs="?", default=os.environ.get("UPSTREAM", "http://127.0.0.1:18100/v1")
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18200)
    args = parser.parse_args()
    app = Floor(
        args.upstream,
        os.environ.get("FLOOR_TARGET_MODEL", "gpt-4o-mini"),
        os.environ.get("BENCH_UPSTREAM_KEY"),
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        lifespan="on",
        access_log=False,
        log_level="warning",
        workers=1,
    )


if __name__ == "__main__":
    main()
