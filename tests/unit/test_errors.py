"""The error hierarchy matches the table in the docstring of modelport.errors."""

from __future__ import annotations

import pytest

from modelport import errors as e

# (class, status, code, fallback class), as the table in errors.py draws them.
TABLE = [
    (e.RequestError, 400, "invalid_request", None),
    (e.MalformedBody, 400, "invalid_json", None),
    (e.PayloadTooLarge, 413, "payload_too_large", None),
    (e.UnsupportedOperation, 400, "unsupported_operation", None),
    (e.NotFound, 404, "not_found", None),
    (e.MethodNotAllowed, 405, "method_not_allowed", None),
    (e.UpstreamError, 502, "upstream_error", "server_error"),
    (e.UpstreamUnreachable, 502, "upstream_unreachable", "connection"),
    (e.UpstreamServerError, 502, "upstream_server_error", "server_error"),
    (e.UpstreamAuthFailed, 502, "upstream_auth_failed", "auth"),
    (e.UpstreamBadResponse, 502, "upstream_bad_response", "server_error"),
    (e.UpstreamRateLimited, 429, "upstream_rate_limited", "rate_limited"),
    (e.UpstreamTimeout, 504, "upstream_timeout", "timeout"),
    (e.ServiceUnavailable, 503, "not_ready", None),
    (e.Disabled, 503, "disabled", None),
    (e.ModelRetired, 410, "model_retired", None),
    (e.ClientDisconnected, 499, "client_closed_request", None),
]


@pytest.mark.parametrize(
    ("cls", "status", "code", "fallback_class"), TABLE, ids=[row[0].__name__ for row in TABLE]
)
def test_error_class_has_documented_status_code_and_fallback_class(
    cls: type[e.ModelportError], status: int, code: str, fallback_class: str | None
) -> None:
    exc = cls("boom")

    assert (exc.status, exc.code, exc.fallback_class) == (status, code, fallback_class)
    assert exc.message == "boom"
    assert isinstance(exc, e.ModelportError)


def test_unknown_route_is_404_model_not_found_on_param_model() -> None:
    exc = e.UnknownRoute("nope")

    assert (exc.status, exc.code, exc.fallback_class, exc.param) == (
        404,
        "model_not_found",
        None,
        "model",
    )
    assert "'nope'" in exc.message
    assert isinstance(exc, e.RequestError)


def test_internal_error_is_500_and_names_only_the_request_id() -> None:
    exc = e.InternalError("req-123")

    assert (exc.status, exc.code, exc.fallback_class) == (500, "internal_error", None)
    assert exc.message == "Internal error; quote request id req-123 when reporting it."


def test_config_error_keeps_every_problem_and_is_no_targets_failure() -> None:
    exc = e.ConfigError(["a: unknown key", "b: unknown key"])

    assert exc.problems == ["a: unknown key", "b: unknown key"]
    assert exc.code == "config_invalid"
    assert exc.fallback_class is None
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


def test_docs_routing_table_names_each_upstream_errors_fallback_class() -> None:
    """docs/routing.md's table of error codes and their classes is the code's."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "routing.md").read_text()
    documented = dict(re.findall(r"^\| `([a-z_]+)` \| `([a-z_]+)` \|$", doc, flags=re.M))
    declared = {cls.code: cls.fallback_class for cls in _subclasses(e.UpstreamError)}
    assert documented == declared


def _subclasses(cls: type[e.ModelportError]) -> list[type[e.ModelportError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found += _subclasses(sub)
    return found
