"""The error hierarchy matches the table in the docstring of modelport.errors."""

from __future__ import annotations

import pytest

from modelport import errors as e

# (class, status, code, retryable), as the table in errors.py draws them.
TABLE = [
    (e.RequestError, 400, "invalid_request", False),
    (e.MalformedBody, 400, "invalid_json", False),
    (e.PayloadTooLarge, 413, "payload_too_large", False),
    (e.UnsupportedOperation, 400, "unsupported_operation", False),
    (e.NotFound, 404, "not_found", False),
    (e.MethodNotAllowed, 405, "method_not_allowed", False),
    (e.UpstreamError, 502, "upstream_error", True),
    (e.UpstreamUnreachable, 502, "upstream_unreachable", True),
    (e.UpstreamServerError, 502, "upstream_server_error", True),
    (e.UpstreamAuthFailed, 502, "upstream_auth_failed", False),
    (e.UpstreamBadResponse, 502, "upstream_bad_response", False),
    (e.UpstreamRateLimited, 429, "upstream_rate_limited", True),
    (e.UpstreamTimeout, 504, "upstream_timeout", True),
    (e.ServiceUnavailable, 503, "not_ready", True),
    (e.ClientDisconnected, 499, "client_closed_request", False),
]


@pytest.mark.parametrize(
    ("cls", "status", "code", "retryable"), TABLE, ids=[row[0].__name__ for row in TABLE]
)
def test_error_class_has_documented_status_code_and_retryable(
    cls: type[e.ModelportError], status: int, code: str, retryable: bool
) -> None:
    exc = cls("boom")

    assert (exc.status, exc.code, exc.retryable) == (status, code, retryable)
    assert exc.message == "boom"
    assert isinstance(exc, e.ModelportError)


def test_unknown_route_is_404_model_not_found_on_param_model() -> None:
    exc = e.UnknownRoute("nope")

    assert (exc.status, exc.code, exc.retryable, exc.param) == (
        404,
        "model_not_found",
        False,
        "model",
    )
    assert "'nope'" in exc.message
    assert isinstance(exc, e.RequestError)


def test_internal_error_is_500_and_names_only_the_request_id() -> None:
    exc = e.InternalError("req-123")

    assert (exc.status, exc.code, exc.retryable) == (500, "internal_error", False)
    assert exc.message == "Internal error; quote request id req-123 when reporting it."


def test_config_error_keeps_every_problem_and_is_not_retryable() -> None:
    exc = e.ConfigError(["a: unknown key", "b: unknown key"])

    assert exc.problems == ["a: unknown key", "b: unknown key"]
    assert exc.code == "config_invalid"
    assert exc.retryable is False
    assert str(exc) == "invalid configuration:\n  a: unknown key\n  b: unknown key"


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (e.MalformedBody, e.RequestError),
        (e.PayloadTooLarge, e.RequestError),
        (e.UnsupportedOperation, e.RequestError),
        (e.NotFound, e.RequestError),
        (e.MethodNotAllowed, e.RequestError),
        (e.UpstreamUnreachable, e.UpstreamError),
        (e.UpstreamServerError, e.UpstreamError),
        (e.UpstreamAuthFailed, e.UpstreamError),
        (e.UpstreamBadResponse, e.UpstreamError),
        (e.UpstreamRateLimited, e.UpstreamError),
        (e.UpstreamTimeout, e.UpstreamError),
    ],
)
def test_error_class_sits_under_its_documented_parent(
    cls: type[e.ModelportError], base: type[e.ModelportError]
) -> None:
    assert issubclass(cls, base)


def test_request_errors_use_openai_invalid_request_type() -> None:
    assert e.MalformedBody("x").type == "invalid_request_error"
    assert e.UpstreamRateLimited("x").type == "rate_limit_error"


def test_param_is_kept_when_given() -> None:
    assert e.RequestError("bad", param="stream").param == "stream"
    assert e.RequestError("bad").param is None
