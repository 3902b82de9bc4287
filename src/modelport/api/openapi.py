"""The OpenAPI document served at ``/openapi.json``.

Written out by hand: request bodies are deliberately lenient (unknown fields pass through
to the provider), so only the fields Modelport itself reads are described.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from modelport import __version__
from modelport.api.asgi import AsgiEndpoint, Receive, Scope, Send
from modelport.api.responses import send_json

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
                "problems": {"type": "array", "items": {"type": "string"},
                             "description": "config_invalid: every problem, each with its "
                                            "key path."},
            },
        }
    },
}
_ERRORS = {
    str(status): {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for status, text in (
        (400, "Malformed JSON, a body that is not an object, or an invalid field."),
        (401, "No key, or an unknown, expired or revoked one."),
        (403, "The key may not call this route (or environment); in open mode, a Host or "
              "Origin that is not this machine's."),
        (404, "Unknown route (the `model` field)."),
        (405, "The path does not take this method (see Allow)."),
        (408, "The request's headers or body came too slowly."),
        (409, "The review was decided already (review_decided)."),
        (410, "Every target of the route calls a retired model (the message names its "
              "successor)."),
        (413, "The body is larger than the limit (`server.max_body_bytes` for inference)."),
        (415, "In open mode, a body sent as a form or plain text."),
        (429, "Over a rate limit or budget (see Retry-After, x-ratelimit-*), the provider "
              "is rate limiting, or this address holds too many connections."),
        (431, "The request's headers are larger than `server.max_header_bytes`."),
        (500, "Unexpected failure; the message carries the request id."),
        (502, "The provider is unreachable or failed."),
        (503, "No target can take the request now, a local model is loading (see "
              "Retry-After), or a kill switch turned this off."),
        (504, "The provider did not answer in time."),
    )
}
# What any request can get before it reaches its endpoint (api/connections.py, origins.py).
_ANY = {s: _ERRORS[s] for s in ("400", "403", "405", "408", "413", "415", "431", "500")}
_HEADERS = {
    "x-request-id": {"schema": {"type": "string"}, "description": "The request's id."},
    "x-modelport-route": {"schema": {"type": "string"}},
    "x-modelport-target": {"schema": {"type": "string"}, "description": "provider/model"},
    "x-modelport-config-version": {"schema": {"type": "string"}},
}


def _inference(summary: str, streams: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {"model": {"type": "string", "description": "The route."}}
    content: dict[str, Any] = {"application/json": {"schema": {"type": "object"}}}
    if streams:
        properties["stream"] = {"type": "boolean"}
        properties["stream_options"] = {
            "type": "object",
            "properties": {"include_usage": {"type": "boolean"}},
        }
        content["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "post": {
            "summary": summary,
            "parameters": [
                {"name": "X-Request-ID", "in": "header", "required": False,
                 "description": "Your id for the request (empty: one is made).",
                 "schema": {"type": "string", "maxLength": 128,
                            "pattern": "^[\\x20-\\x7e]*$"}},
                {"name": "Prefer", "in": "header", "required": False,
                 "description": "respond-async: queue the request as a job (RFC 7240).",
                 "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["model"],
                            "properties": properties,
                            "additionalProperties": True,
                        }
                    }
                },
            },
            "responses": {"200": {"description": "The provider's answer.", "headers": _HEADERS,
                                  "content": content},
                          "202": {"description": "Held for review (a draft-only route, or a "
                                                 "broken output contract held for a person): "
                                                 "the review's id and where to poll it; or, "
                                                 "sent with Prefer: respond-async, queued as "
                                                 "a job (Location: /v1/jobs/{id})."},
                          **_ERRORS},
        }
    }


def _get(summary: str, content_type: str = "application/json",
         errors: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"get": {"summary": summary,
                    "responses": {"200": {"description": "OK",
                                          "content": {content_type: {"schema": {}}}},
                                  **_ANY, **{e: _ERRORS[e] for e in errors}}}}


_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_ADMIN: list[dict[str, list[str]]] = [{"admin": []}]
_KEY_SPEC = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 200},
        "routes": {"type": ["array", "null"], "items": {"type": "string"}},
        "environment": {"enum": ["dev", "test", "prod"], "default": "prod"},
        "rpm": {"type": ["integer", "null"], "minimum": 1},
        "tpm": {"type": ["integer", "null"], "minimum": 1},
        "max_concurrency": {"type": ["integer", "null"], "minimum": 1},
        "budget_usd": {"type": ["number", "null"], "minimum": 0},
        "budget_period": {"enum": ["day", "month"], "default": "month"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "priority": {"enum": ["interactive", "batch"], "default": "interactive"},
        "role": {"enum": ["caller", "reviewer"], "default": "caller"},
        "tools": {"type": ["object", "null"], "additionalProperties": False,
                  "properties": {"allow": {"type": ["array", "null"],
                                           "items": {"type": "string"}},
                                 "deny": {"type": "array", "items": {"type": "string"}}}},
    },
}


def _admin(summary: str, method: str = "get", body: dict[str, Any] | None = None,
           status: str = "200", params: tuple[str, ...] = ()) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": _ADMIN,
        "responses": {status: {"description": "OK"}, **_ANY, "401": _ERRORS["401"],
                      "404": _ERRORS["404"], "503": _ERRORS["503"]},
    }
    if body is not None:
        operation["requestBody"] = {"content": {"application/json": {"schema": body}}}
    if params:
        operation["parameters"] = [{"name": p, "in": "path", "required": True,
                                    "schema": {"type": "string"}} for p in params]
    return {method: operation}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Modelport", "version": __version__},
        "paths": {**_client_paths(), **_batch_paths(), **_admin_paths(), **_other_paths()},
        "components": {
            "schemas": {"Error": _ERROR},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An inference key (mpk_...) or browser token."},
                "admin": {"type": "http", "scheme": "bearer",
                          "description": "The admin key."},
            },
        },
    }


def _client_paths() -> dict[str, Any]:
    """What applications call: inference, models, browser tokens, feedback."""
    return {
        "/v1/chat/completions": _inference("Chat completion through a route.", True),
        "/v1/completions": _inference("Text completion through a route.", True),
        "/v1/embeddings": _inference("Embeddings through a route.", False),
        "/v1/models": _get("The routes, as OpenAI model objects.", errors=("401",)),
        "/v1/models/{model}": {
            "get": {
                "summary": "One route, as an OpenAI model object.",
                "parameters": [{"name": "model", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OK"}, **_ANY, "401": _ERRORS["401"],
                              "404": _ERRORS["404"]},
            }
        },
        "/v1/tokens": {"post": {
            "summary": "Mint a short-lived browser token for one route.",
            "security": _BEARER,
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["route"], "additionalProperties": False,
                "properties": {"route": {"type": "string"},
                               "ttl_s": {"type": "integer", "minimum": 1, "maximum": 3600},
                               "rpm": {"type": "integer", "minimum": 1},
                               "tpm": {"type": "integer", "minimum": 1},
                               "max_concurrency": {"type": "integer", "minimum": 1}}}}}},
            "responses": {"201": {"description": "The token."}, **_ANY,
                          "401": _ERRORS["401"], "404": _ERRORS["404"]},
        }},
        "/v1/reviews/{review_id}": {"get": {
            "summary": "What became of an answer held for review: pending, approved (with the "
                       "answer as approved) or rejected (with the reason).",
            "security": _BEARER,
            "parameters": [{"name": "review_id", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The review."}, **_ANY,
                          "401": _ERRORS["401"], "404": _ERRORS["404"],
                          "503": _ERRORS["503"]},
        }},
        "/v1/feedback": {"post": {
            "summary": "A user's verdict on one answer made with the same key.",
            "security": _BEARER,
            "requestBody": {"content": {"application/json": {"schema": {
                "type": "object", "required": ["request_id", "outcome"],
                "additionalProperties": False,
                "properties": {"request_id": {"type": "string", "maxLength": 128},
                               "outcome": {"enum": ["accepted", "edited", "rejected"]},
                               "correction": {"type": "string", "maxLength": 65536},
                               "score": {"type": "number", "minimum": -1000,
                                         "maximum": 1000},
                               "comment": {"type": "string", "maxLength": 4096}}}}}},
            "responses": {"201": {"description": "Recorded."}, **_ANY,
                          "401": _ERRORS["401"], "404": _ERRORS["404"]},
        }},
    }


def _keyed(summary: str, *, status: str = "200", errors: tuple[str, ...] = ("404",),
           params: tuple[str, ...] = (), query: tuple[str, ...] = (),
           body: dict[str, Any] | None = None, content_type: str = "application/json",
           ) -> dict[str, Any]:
    """An operation of the Files and Batches APIs: a key's own files and batches."""
    operation: dict[str, Any] = {
        "summary": summary, "security": _BEARER,
        "parameters": [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                       for p in params] + [{"name": q, "in": "query", "required": False,
                                            "schema": {"type": "string"}} for q in query],
        "responses": {status: {"description": "OK", "content": {content_type: {"schema": {}}}},
                      **_ANY, "401": _ERRORS["401"], "503": _ERRORS["503"],
                      **{e: _ERRORS[e] for e in errors}},
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    return operation


_BATCH_SPEC = {"application/json": {"schema": {
    "type": "object", "required": ["input_file_id", "endpoint"],
    "properties": {
        "input_file_id": {"type": "string"},
        "endpoint": {"enum": ["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]},
        "completion_window": {"type": "string", "pattern": "^[1-9][0-9]{0,2}h$",
                              "default": "24h"},
        "metadata": {"type": ["object", "null"], "additionalProperties": {"type": "string"}},
    }}}}
_UPLOAD_SPEC = {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {"file": {"type": "string", "format": "binary"},
                   "purpose": {"enum": ["batch"]}}}}}


def _batch_paths() -> dict[str, Any]:
    """OpenAI's Files and Batches APIs (api/batches.py), and queued requests (jobs)."""
    job = _keyed("A request queued with Prefer: respond-async: 202 while it waits, then its "
                 "answer, with the status it was answered with.", params=("job_id",),
                 errors=("404", "410"))
    job["responses"]["202"] = {"description": "Queued or running: the job."}
    job["responses"]["default"] = {"description": "The answer, with its own status."}
    return {
        "/v1/files": {
            "post": _keyed("Upload a batch input file (JSON Lines), checked line by line.",
                           errors=("413",), body=_UPLOAD_SPEC),
            "get": _keyed("The key's files, newest first.", errors=(),
                          query=("purpose", "limit", "after")),
        },
        "/v1/files/{file_id}": {
            "get": _keyed("One file.", params=("file_id",)),
            "delete": _keyed("Delete a file.", params=("file_id",)),
        },
        "/v1/files/{file_id}/content": {
            "get": _keyed("A file's content: an input file as uploaded, or a batch's output "
                          "or error lines.", params=("file_id",),
                          content_type="application/jsonl"),
        },
        "/v1/batches": {
            "post": _keyed("Run a file's requests as a batch.", errors=(), body=_BATCH_SPEC),
            "get": _keyed("The key's batches, newest first.", errors=(),
                          query=("limit", "after")),
        },
        "/v1/batches/{batch_id}": {
            "get": _keyed("One batch, with its request counts.", params=("batch_id",)),
        },
        "/v1/jobs/{job_id}": {"get": job},
        "/v1/batches/{batch_id}/cancel": {
            "post": _keyed("Stop running a batch's lines; it ends as cancelled once the "
                           "running ones finish.", params=("batch_id",)),
        },
    }


_SWITCH_SPEC: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["scope", "state"],
    "properties": {
        "scope": {"enum": ["all", "route", "key", "provider", "model"]},
        "name": {"type": "string", "maxLength": 200},
        "state": {"enum": ["off", "on"]},
        "behaviour": {"enum": ["refuse", "answer", "fallback"]},
        "message": {"type": "string", "maxLength": 4000},
        "fallback_route": {"type": "string", "minLength": 1, "maxLength": 200},
        "reason": {"type": "string", "maxLength": 1000},
    },
}


def _switch_post() -> dict[str, Any]:
    """201 with the switch turned off, 200 when one is turned back on."""
    post = _admin("Turn everything, a route, a key, a provider or a model off (with how it "
                  "answers meanwhile) or back on.", "post", _SWITCH_SPEC, "201")
    post["post"]["responses"]["200"] = {"description": "Turned back on."}
    return post


def _config_paths() -> dict[str, Any]:
    """Config versions: the one in force, applying one, the kept ones, diff, rollback."""
    apply = _admin("Apply a config without a restart: the YAML itself (reason and dry_run in "
                   "the query), or JSON. 400 config_invalid lists every problem; the running "
                   "config stays.", "put",
                   {"type": "object", "additionalProperties": False, "required": ["text"],
                    "properties": {"text": {"type": "string"},
                                   "reason": {"type": "string", "maxLength": 1000},
                                   "dry_run": {"type": "boolean"}}})
    apply["put"]["requestBody"]["content"]["application/yaml"] = {"schema": {"type": "string"}}
    apply["put"]["parameters"] = [
        {"name": "reason", "in": "query", "schema": {"type": "string"}},
        {"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}]
    versions = _admin("The config versions kept, newest first (current: the one in force).")
    versions["get"]["parameters"] = [{"name": "limit", "in": "query",
                                      "schema": {"type": "integer", "minimum": 1,
                                                 "maximum": 1000}}]
    diff = _admin("A unified diff between two kept versions (to: the one in force).")
    diff["get"]["parameters"] = [{"name": n, "in": "query", "required": n == "from",
                                  "schema": {"type": "string"}} for n in ("from", "to")]
    return {
        "/admin/config": {**_admin("The config in force: its version and text."), **apply},
        "/admin/config/rollback": _admin(
            "Put a kept version (number or hash) in force again, as a new version.", "post",
            {"type": "object", "additionalProperties": False, "required": ["version"],
             "properties": {"version": {"type": ["string", "integer"]},
                            "reason": {"type": "string", "maxLength": 1000}}}),
        "/admin/config/versions": versions,
        "/admin/config/versions/{ref}": _admin("One kept version, with its text.",
                                               params=("ref",)),
        "/admin/config/diff": diff,
    }


def _review_paths() -> dict[str, Any]:
    """The review queue: the admin key or a reviewer's key."""
    decide = _admin("Decide an item: approve (with an edited answer, optionally) or reject. "
                    "409 when it was decided already.", "post",
                    {"type": "object", "additionalProperties": False, "required": ["decision"],
                     "properties": {"decision": {"enum": ["approve", "reject"]},
                                    "answer": {"type": "string"},
                                    "reason": {"type": "string", "maxLength": 4000}}},
                    params=("review_id",))
    decide["post"]["responses"]["409"] = _ERRORS["409"]
    return {
        "/admin/batches": _admin("Every key's batches, newest first, with their progress "
                                 "(limit)."),
        "/admin/reviews": _admin("The review queue, oldest first (status, route, limit); the "
                                 "admin key or a reviewer's key."),
        "/admin/reviews/{review_id}": {
            **_admin("One review item, with its request and answer.", params=("review_id",)),
            **decide,
        },
    }


def _admin_paths() -> dict[str, Any]:
    """The admin API (admin key only)."""
    return {
        "/admin/keys": {
            **_admin("Create a key; its secret is in the answer, once.", "post",
                     _KEY_SPEC, "201"),
            **_admin("List keys, without secrets."),
        },
        "/admin/keys/{key_id}": _admin("Revoke a key, at once.", "delete",
                                       params=("key_id",)),
        "/admin/keys/{key_id}/rotate": _admin(
            "Issue a new secret; the old one stays valid for grace_seconds.", "post",
            {"type": "object", "additionalProperties": False,
             "properties": {"grace_seconds": {"type": "integer", "minimum": 0}}},
            params=("key_id",)),
        "/admin/audit": _admin("The audit log, newest first."),
        "/admin/usage": {"get": {
            **_admin("Requests, tokens and cost per key or route this period.")["get"],
            "parameters": [
                {"name": "by", "in": "query", "schema": {"enum": ["key", "route"]}},
                {"name": "period", "in": "query", "schema": {"enum": ["month", "day"]}},
            ],
        }},
        "/admin/requests": {"get": {
            **_admin("The request ledger, newest first, a page at a time.")["get"],
            "parameters": [
                {"name": name, "in": "query", "schema": {"type": "string"}}
                for name in ("route", "key", "status", "since", "until", "limit", "cursor")
            ],
        }},
        "/admin/requests/{request_id}": _admin(
            "One request: attempts, latency split, tokens, cost, bodies, feedback.",
            params=("request_id",)),
        "/admin/feedback": _admin("Feedback and correction rate per route and model "
                                  "version."),
        "/admin/stats": _admin("Requests, errors, latency and cost over time."),
        "/admin/routes": _admin("Each route's targets: breaker, load, latency, errors."),
        "/admin/routes/{route}/canary": _admin(
            "Promote a route's canary (all traffic), abort it (none) or resume it.", "post",
            {"type": "object", "additionalProperties": False, "required": ["action"],
             "properties": {"action": {"enum": ["promote", "abort", "resume"]},
                            "reason": {"type": "string", "maxLength": 1000}}},
            params=("route",)),
        "/admin/routes/{route}/shadow": _admin(
            "The route's shadow calls over the last day against the answers they copied.",
            params=("route",)),
        "/admin/models": _admin("The model catalogue: each model's status in force, its "
                                "routes, and its last day's requests, errors and cost."),
        "/admin/models/{model_id}": _admin("One model of the catalogue.",
                                           params=("model_id",)),
        "/admin/switches": {
            **_switch_post(),
            **_admin("The kill switches that are off, with who, why and since when."),
        },
        **_config_paths(),
        **_review_paths(),
    }


def _other_paths() -> dict[str, Any]:
    """Tensor models (V2), health, metrics and this document."""
    return {
        "/v2/models/{name}/infer": {"post": {
            "summary": "Tensor inference (Open Inference Protocol V2; JSON or binary "
                       "tensors).",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The output tensors."},
                          "400": {"description": "Bad tensors: {\"error\": ...}"},
                          "404": {"description": "Unknown model or version."},
                          "503": {"description": "The model is not ready."}},
        }},
        "/v2/models/{name}": {"get": {
            "summary": "Tensor model metadata (V2).",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string"}}],
            "responses": {"200": {"description": "Versions, platform, inputs, outputs."},
                          "404": {"description": "Unknown model."}},
        }},
        "/health/live": _get("The process is up."),
        "/health/ready": _get("Serving, and every local model loaded (503 while they "
                              "load; each one's state either way).", errors=("503",)),
        "/metrics": _get("Prometheus metrics (with keys: the admin key or the metrics "
                         "token).", "text/plain", errors=("401",)),
        "/openapi.json": _get("This document."),
    }


def routes() -> list[Route]:
    doc = document()

    async def openapi(scope: Scope, receive: Receive, send: Send) -> None:
        await send_json(send, doc)

    return [Route("/openapi.json", AsgiEndpoint(openapi), methods=["GET"])]
