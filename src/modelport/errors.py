"""The error hierarchy: the one place where HTTP statuses and error codes are chosen.

Services raise these; each protocol renders them in exactly one place (for the OpenAI
routes, ``modelport.protocol.openai.errors``). Foreign exceptions are translated where they
enter (``providers/_http.py`` for the HTTP client) with ``raise ... from exc``. Anything that
is not a ``ModelportError`` is a bug and becomes a 500 carrying the request id.

::

    ModelportError                    status  code                     fallback class
    +-- ConfigError                   -       config_invalid           -  (start-up only)
    +-- RequestError                  400     invalid_request          -
    |   +-- MalformedBody             400     invalid_json
    |   +-- PayloadTooLarge           413     payload_too_large
    |   +-- UnknownRoute              404     model_not_found
    |   +-- ModelRetired              410     model_retired            (names the successor)
    |   +-- UnsupportedOperation      400     unsupported_operation
    |   +-- ContextTooLong            400     context_length_exceeded
    |   +-- InputRejected             400     invalid_request          -  (by a local model)
    |   +-- InvalidFile               400     invalid_file             (a batch input line)
    |   +-- JobExpired                410     job_expired              (a queued request)
    |   +-- NotFound                  404     not_found
    |   +-- MethodNotAllowed          405     method_not_allowed
    |   +-- RequestTimeout            408     request_timeout          (headers or body too slow)
    |   +-- UnsupportedMediaType      415     unsupported_media_type
    |   +-- HeadersTooLarge           431     headers_too_large
    |   +-- UntrustedOrigin           403     untrusted_origin         (open mode: Host, Origin)
    +-- AuthError                     401     invalid_api_key          -
    +-- Forbidden                     403     permission_denied        -
    +-- RateLimited                   429     rate_limit_exceeded      -  (carries headers)
    |   +-- TooManyConnections        429     too_many_connections     -  (per address)
    |   +-- BudgetExceeded            429     budget_exceeded          -
    |   +-- OverShare                 429     over_share               -  (a full queue)
    +-- Overloaded                    503     overloaded               -  (carries headers)
    +-- Disabled                      503     disabled                 -  (a kill switch)
    +-- UpstreamError                 502     upstream_error           server_error
    |   +-- UpstreamUnreachable       502     upstream_unreachable     connection
    |   +-- UpstreamServerError       502     upstream_server_error    server_error
    |   +-- UpstreamAuthFailed        502     upstream_auth_failed     auth
    |   +-- UpstreamBadResponse       502     upstream_bad_response    server_error
    |   +-- UpstreamRateLimited       429     upstream_rate_limited    rate_limited
    |   +-- UpstreamTimeout           504     upstream_timeout         timeout
    |   +-- RuntimeCrashed            502     runtime_crashed          server_error (worker died)
    |   +-- RuntimeUnavailable        503     runtime_unavailable      server_error (loading)
    +-- ServiceUnavailable            503     not_ready                -
    +-- ClientDisconnected            499     client_closed_request    -  (nothing is sent)
    +-- InternalError                 500     internal_error           -

The fallback class is what a route's ``fallback_on`` rules know a failure by
(``inference.attempts.classify_error`` reads it, and docs/routing.md's table is checked
against it): retrying, falling back and the breaker follow from the class and the route's
rules, not from the error alone. ``-``: not a failure of a target; never retried.

An upstream's own 4xx answer (a bad parameter, a context-length error) is not raised: it is
passed back to the client with its status, after secrets are scrubbed from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType


class ModelportError(Exception):
    """Base of every error Modelport raises on purpose."""

    status: int = 500
    code: str = "internal_error"
    type: str = "server_error"
    headers: Mapping[str, str] = MappingProxyType({})  # sent with the error (Retry-After)
    # the class a route's fallback_on rules know this failure by; None: not a target's
    fallback_class: str | None = None
    problems: Sequence[str] = ()  # each with its key path, where there are several

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ConfigError(ModelportError):
    """The configuration is invalid; raised only while loading, never on a request."""

    code = "config_invalid"
    problems: list[str]

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


class RequestError(ModelportError):
    """The client sent something Modelport cannot serve."""

    status = 400
    code = "invalid_request"
    type = "invalid_request_error"


class InvalidConfig(RequestError):
    """A config version sent to a running server does not validate; the running one stays.
    Every problem is listed, each with its key path."""

    code = "config_invalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"The config was not applied: {len(problems)} problem(s); the "
                         "running config stays.")
        self.problems = tuple(problems)


class InvalidOutput(ModelportError):
    """No answer kept the route's output contract (after its repairs and fallbacks)."""

    status = 502
    code = "invalid_output"
    type = "server_error"


class ContentBlocked(RequestError):
    """A route's input rules refuse the request (the message never echoes its text)."""

    code = "content_blocked"

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule  # the kind of rule: regex, keyword, max_input_tokens


class Conflict(RequestError):
    """The request conflicts with the state of what it names (a review already decided)."""

    status = 409
    code = "conflict"


class MalformedBody(RequestError):
    code = "invalid_json"


class PayloadTooLarge(RequestError):
    status = 413
    code = "payload_too_large"


class UnknownRoute(RequestError):
    status = 404
    code = "model_not_found"

    def __init__(self, route: str) -> None:
        super().__init__(f"The model '{route}' does not exist.", param="model")


class ModelRetired(RequestError):
    """Every target of the route calls a model the catalogue retired (and no fallback route
    answered); the message names its successor."""

    status = 410
    code = "model_retired"


class UnsupportedOperation(RequestError):
    code = "unsupported_operation"


class ContextTooLong(RequestError):
    """The prompt does not fit any target's context window (OpenAI's own code for it)."""

    code = "context_length_exceeded"


class InputRejected(RequestError):
    """A model Modelport hosts refused the input: its shapes, types or values, or the chat
    format's rules. Raised in a worker only around the runtime's own call (or the parts of
    the request the runtime checks), so that a bug elsewhere in the worker is never taken for
    the caller's fault."""


class InvalidFile(RequestError):
    """A batch input file that is not JSON Lines in the batch format; names the line."""

    code = "invalid_file"


class JobExpired(RequestError):
    """A request queued with ``Prefer: respond-async`` whose window ended before it ran."""

    status = 410
    code = "job_expired"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class MethodNotAllowed(RequestError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str | None = None) -> None:
        super().__init__(message)
        if allow:
            self.headers = {"Allow": allow}


class RequestTimeout(RequestError):
    """The client sent its headers or its body too slowly; the connection is closed."""

    status = 408
    code = "request_timeout"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "unsupported_media_type"


class HeadersTooLarge(RequestError):
    status = 431
    code = "headers_too_large"


class UntrustedOrigin(RequestError):
    """In open mode, a request naming a host or a web origin that is not this machine's:
    what a web page would send to reach a gateway on 127.0.0.1 (cross-site requests, DNS
    rebinding)."""

    status = 403
    code = "untrusted_origin"


class AuthError(ModelportError):
    """No key, or one that is unknown, expired or revoked: never says which."""

    status = 401
    code = "invalid_api_key"
    type = "invalid_request_error"


class Forbidden(ModelportError):
    """A valid key asked for something outside its scope; names no other route or key."""

    status = 403
    code = "permission_denied"
    type = "invalid_request_error"


class ToolNotAllowed(Forbidden):
    """A request declares a tool its route or key does not permit."""

    code = "tool_not_allowed"


class RateLimited(ModelportError):
    """Over a limit. ``headers`` carries Retry-After and the x-ratelimit-* values."""

    status = 429
    code = "rate_limit_exceeded"
    type = "rate_limit_error"

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, param: str | None = None
    ) -> None:
        super().__init__(message, param=param)
        self.headers = headers or {}


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


class TooManyConnections(RateLimited):
    """One client address holds more open connections than ``server.max_connections_per_client``."""

    code = "too_many_connections"


class OverShare(RateLimited):
    """A target's queue is full and this caller already holds more than its fair share."""

    code = "over_share"


class Overloaded(ModelportError):
    """No target can take the request in time; answered at once with Retry-After."""

    status = 503
    code = "overloaded"
    type = "server_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class Disabled(ModelportError):
    """An operator turned this off with a kill switch; the message is the operator's."""

    status = 503
    code = "disabled"
    type = "server_error"


class UpstreamError(ModelportError):
    """The provider behind a target failed; the client's request was fine."""

    status = 502
    code = "upstream_error"
    fallback_class = "server_error"
    type = "upstream_error"


class UpstreamUnreachable(UpstreamError):
    code = "upstream_unreachable"
    fallback_class = "connection"


class UpstreamServerError(UpstreamError):
    code = "upstream_server_error"
    fallback_class = "server_error"


class UpstreamAuthFailed(UpstreamError):
    """The provider rejected Modelport's credential. Never echo what it said about the key."""

    code = "upstream_auth_failed"
    fallback_class = "auth"


class UpstreamBadResponse(UpstreamError):
    code = "upstream_bad_response"
    fallback_class = "server_error"


class UpstreamRateLimited(UpstreamError):
    status = 429
    code = "upstream_rate_limited"
    fallback_class = "rate_limited"
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        if retry_after_s is not None:  # passed on to the client when this is the answer
            self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"
    fallback_class = "timeout"


class RuntimeCrashed(UpstreamServerError):
    """The worker process hosting a local model died while it held this request."""

    code = "runtime_crashed"


class RuntimeUnavailable(UpstreamError):
    """A local model is not loaded: still loading, restarting after a crash, or failed."""

    status = 503
    code = "runtime_unavailable"

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        if retry_after_s is not None:
            self.headers = {"Retry-After": str(retry_after_s)}


class ServiceUnavailable(ModelportError):
    status = 503
    code = "not_ready"
    type = "server_error"


class ClientDisconnected(ModelportError):
    """The client went away before the answer; recorded, never rendered."""

    status = 499
    code = "client_closed_request"


class InternalError(ModelportError):
    """An unexpected failure; the message shown to clients names only the request id."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"Internal error; quote request id {request_id} when reporting it.")
