"""What a request gets while a kill switch (``policy.switches``) stops it.

``refuse``: 503 ``disabled`` with the operator's message. ``answer``: the operator's text as
the answer, in the protocol's shape (a chat or text completion, whole or as a stream of
events), with no tokens and no cost; a request that cannot carry text (embeddings) is
refused with the text as the message. ``fallback`` is the use case's to follow: it serves
the request by the named route.
"""

from __future__ import annotations

from typing import Any

from modelport.core.context import RequestContext
from modelport.core.operation import Operation
from modelport.core.usage import Usage
from modelport.policy.switches import Switch
from modelport.protocol.openai.replies import ChunkWriter, completion_body
from modelport.protocol.openai.request import client_wants_usage
from modelport.providers.base import UpstreamReply

SWITCH_TARGET = "switch"  # the target of an answer a switch gave, in the record and metrics


def switched_reply(switch: Switch, operation: Operation, body: dict[str, Any],
                   ctx: RequestContext, *, stream: bool) -> UpstreamReply:
    """The answer of a switch that answers; raises ``Disabled`` for one that refuses."""
    if switch.behaviour != "answer" or operation is Operation.EMBEDDING:
        raise switch.refusal()
    model = str(body.get("model", ""))
    ctx.target = SWITCH_TARGET
    ctx.usage, ctx.cost_usd = Usage(0, 0), 0.0
    if not stream:
        return UpstreamReply(200, completion_body(operation, ctx.request_id, model,
                                                  switch.message, "stop", 0, 0))
    writer = ChunkWriter(operation, ctx.request_id, model)
    events = [writer.delta(switch.message), writer.delta("", "stop")]
    if client_wants_usage(body):
        events.append(writer.usage(0, 0))
    events.append(writer.done)
    return UpstreamReply(200, b"".join(events), "text/event-stream; charset=utf-8")
