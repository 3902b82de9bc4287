"""The Open Inference Protocol (KServe V2) over REST, for tensor models.

Health, server and model metadata, readiness, inference (JSON tensors, or Triton's binary
tensor data extension framed by ``Inference-Header-Content-Length``), the Triton-style
model configuration, and the model repository extension (index, load, unload) for the admin
key. Errors use the protocol's shape, ``{"error": "..."}`` (rendered by the middleware).
Inference is a use case like a route's request (``tensors.inference``): with keys
configured, inference and metadata need a key allowed to call the model by name, as if it
were a route; the key's and the model's limits, the key's budget and the model's admission
gate apply, and every request, refusals included, is recorded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.routing import Route

from modelport import __version__
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.body import header, read_body, request_priority
from modelport.api.middleware import CTX_KEY
from modelport.api.responses import send_json
from modelport.api.services import Services, services_of
from modelport.core.datatypes import DATATYPES
from modelport.errors import AuthError, MethodNotAllowed, NotFound, RequestError
from modelport.policy.keys import Principal

if TYPE_CHECKING:
    from modelport.tensors.inference import TensorInference
    from modelport.tensors.service import TensorService

EXTENSIONS = ["binary_tensor_data", "model_repository"]
# Triton's model-config names: TYPE_ and the datatype, but BYTES is TYPE_STRING
_CONFIG_TYPES = {name: "TYPE_STRING" if name == "BYTES" else f"TYPE_{name}"
                 for name in DATATYPES}


def _inference(services: Services) -> TensorInference:
    if services.tensor_inference is None:
        raise NotFound("No tensor models are served: set model_repository in the config.")
    return services.tensor_inference


def _tensors(services: Services) -> TensorService:
    return _inference(services).tensors


async def server_metadata(scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, {"name": "modelport", "version": __version__,
                           "extensions": EXTENSIONS})


async def live(scope: Scope, receive: Receive, send: Send) -> None:
    await send_json(send, {"live": True})


async def ready(scope: Scope, receive: Receive, send: Send) -> None:
    services = services_of(scope)
    ok = services.readiness.ready and (services.tensors is None or services.tensors.all_ready())
    await send_json(send, {"ready": ok}, status=200 if ok else 503)


async def model(scope: Scope, receive: Receive, send: Send) -> None:
    """``/v2/models/{name}[/versions/{version}][/ready|/config|/infer]``."""
    services = services_of(scope)
    tensors = _tensors(services)
    parts = scope["path"].split("/")[3:]
    name, version, action = _parse_model_path(parts)
    method = scope["method"]
    if action == "infer":
        if method != "POST":
            raise MethodNotAllowed("Inference takes POST.")
        await _infer(services, scope, receive, send, name, version)
        return
    if method != "GET":
        raise MethodNotAllowed("This path takes GET.")
    _authorize(services, scope, name)
    if action == "ready":
        ok = tensors.is_ready(name, version)
        await send_json(send, {"name": name, "ready": ok}, status=200 if ok else 400)
    elif action == "config":
        await send_json(send, _model_config(tensors, name, version))
    else:
        await send_json(send, tensors.metadata(name, version))


def _parse_model_path(parts: list[str]) -> tuple[str, str | None, str | None]:
    if not parts or not parts[0]:
        raise NotFound("There is nothing at this path.")
    name, rest = parts[0], parts[1:]
    version = None
    if len(rest) >= 2 and rest[0] == "versions":
        version, rest = rest[1], rest[2:]
    if not rest:
        return name, version, None
    if len(rest) == 1 and rest[0] in ("ready", "infer", "config"):
        return name, version, rest[0]
    raise NotFound("There is nothing at this path.")


def _authorize(services: Services, scope: Scope, name: str) -> Principal | None:
    """The caller's principal (``None`` in open mode); 401/403 as for routes."""
    principal = services.access.authenticate(header(scope, b"authorization"))
    _inference(services).authorize(principal, name, scope[CTX_KEY])
    return principal


async def _infer(services: Services, scope: Scope, receive: Receive, send: Send, name: str,
                 version: str | None) -> None:
    ctx = scope[CTX_KEY]
    ctx.recorded = True  # an inference use case: recorded from here on, a refusal too
    inference = _inference(services)
    principal = services.access.authenticate(header(scope, b"authorization"))
    model = inference.authorize(principal, name, ctx)  # before the body: a 403 reads none
    priority = request_priority(header(scope, b"x-priority"))
    if principal is not None:
        priority = min(priority, principal.priority)  # a key may lower it, never raise
    length_header = header(scope, b"inference-header-content-length")
    header_length = None
    if length_header is not None:
        try:
            header_length = int(length_header)
        except ValueError:
            raise RequestError("Inference-Header-Content-Length must be an integer.") from None
    body = await read_body(scope, receive, services.settings.server.max_body_bytes)
    from modelport.protocol.v2 import parse_infer_request, render_infer_response

    request = parse_infer_request(body, header_length)
    chosen, outputs = await inference.infer(principal, model, version, request, ctx,
                                            priority=priority)
    payload, json_length = render_infer_response(name, str(chosen), request.id, outputs)
    headers = [(b"content-length", str(len(payload)).encode())]
    if json_length is None:
        headers.append((b"content-type", b"application/json"))
    else:
        headers.append((b"content-type", b"application/octet-stream"))
        headers.append((b"inference-header-content-length", str(json_length).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def _model_config(tensors: TensorService, name: str, version: str | None) -> dict[str, Any]:
    """Triton's model configuration, as ``tritonclient``'s ``get_model_config`` reads it."""
    model, _ = tensors.get(name, version)
    meta = tensors.metadata(name, version)
    config = model.source.config
    batched = config.max_batch_size > 0

    def entry(spec: dict[str, Any]) -> dict[str, Any]:
        dims = list(spec["shape"][1:] if batched else spec["shape"])
        return {"name": spec["name"], "data_type": _CONFIG_TYPES.get(spec["datatype"], ""),
                "dims": dims}

    body: dict[str, Any] = {
        "name": name,
        "platform": meta["platform"],
        "max_batch_size": config.max_batch_size,
        "input": [entry(i) for i in meta["inputs"]],
        "output": [entry(o) for o in meta["outputs"]],
        "version_policy": ({"specific": {"versions": list(config.specific)}}
                           if config.specific is not None else
                           {"latest": {"num_versions": config.latest}}
                           if config.latest is not None else {"all": {}}),
    }
    if batched:
        body["dynamic_batching"] = {
            "max_queue_delay_microseconds": int(config.max_batch_delay_s * 1_000_000),
        }
    return body


def _require_admin(services: Services, scope: Scope) -> None:
    if not services.access.is_admin(header(scope, b"authorization")) and (
        services.settings.auth_required
    ):
        raise AuthError("The model repository API needs the admin key (MODELPORT_ADMIN_KEY).")


async def repository(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v2/repository/index`` and ``/v2/repository/models/{name}/load|unload``."""
    services = services_of(scope)
    tensors = _tensors(services)
    if scope["method"] != "POST":
        raise MethodNotAllowed("The repository API takes POST.")
    _require_admin(services, scope)
    parts = scope["path"].split("/")[3:]
    if parts == ["index"]:
        await read_body(scope, receive, services.settings.server.max_body_bytes)
        await send_json(send, tensors.index())
        return
    if len(parts) == 3 and parts[0] == "models" and parts[2] in ("load", "unload"):
        await read_body(scope, receive, services.settings.server.max_body_bytes)
        name = parts[1]
        if parts[2] == "load":
            loaded = await tensors.load(name)
            if loaded.state != "ready":
                raise RequestError(f"Model '{name}' failed to load: {loaded.reason}")
        else:
            await tensors.unload(name)
        await send_json(send, {})
        return
    raise NotFound("There is nothing at this path.")


def routes() -> list[Route]:
    return [
        Route("/v2", AsgiEndpoint(server_metadata), methods=["GET"]),
        Route("/v2/health/live", AsgiEndpoint(live), methods=["GET"]),
        Route("/v2/health/ready", AsgiEndpoint(ready), methods=["GET"]),
        Route("/v2/models/{rest:path}", AsgiEndpoint(model), methods=["GET", "POST"]),
        Route("/v2/repository/{rest:path}", AsgiEndpoint(repository), methods=["GET", "POST"]),
    ]
