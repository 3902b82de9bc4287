"""Worker entry points for the worker-process tests: an echo model, one that streams, one
that dies on request, and one that cannot load."""

from __future__ import annotations

import os
import time
from typing import Any

from modelport.errors import InputRejected, UpstreamServerError
from modelport.runtimes.workers import ChildChannel, child_error


def echo(channel: ChildChannel, spec: Any) -> None:
    channel.ready({"pid": os.getpid(), "spec": spec})
    while True:
        message = channel.recv()
        if message is None:
            return
        request_id, op, payload = message
        if op == "echo":
            channel.reply(request_id, payload)
        elif op == "count":
            for i in range(payload):
                channel.part(request_id, i)
            channel.reply(request_id, None)
        elif op == "sleep":
            time.sleep(payload)
            channel.reply(request_id, "slept")
        elif op == "bad":
            channel.error(request_id, *child_error(InputRejected("bad input")))
        elif op == "bug":
            channel.error(request_id, *child_error(KeyError("missing")))
        elif op == "model-failed":
            channel.error(request_id, *child_error(UpstreamServerError("the model failed")))
        elif op == "die":
            os._exit(7)


def cannot_load(channel: ChildChannel, spec: Any) -> None:
    raise FileNotFoundError("no such model file: /nowhere/model.gguf")
