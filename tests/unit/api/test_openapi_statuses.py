"""The OpenAPI document declares the statuses the server answers, so that a schema-driven
client or fuzzer finds no undeclared status."""

from __future__ import annotations

from modelport.api.openapi import document

BEFORE_ANY_ENDPOINT = {"400", "403", "405", "408", "415", "431", "500"}


def _operations() -> list[tuple[str, str, dict[str, object]]]:
    return [(path, method, op) for path, item in document()["paths"].items()
            for method, op in item.items()]


def test_every_operation_declares_what_any_request_can_get() -> None:
    missing = {f"{method.upper()} {path}": sorted(BEFORE_ANY_ENDPOINT - set(op["responses"]))
               for path, method, op in _operations()
               if not path.startswith("/v2") and BEFORE_ANY_ENDPOINT - set(op["responses"])}
    assert missing == {}


def test_keyed_and_loading_statuses_are_declared() -> None:
    paths = document()["paths"]
    assert "401" in paths["/v1/models"]["get"]["responses"]
    assert "401" in paths["/metrics"]["get"]["responses"]
    assert "503" in paths["/health/ready"]["get"]["responses"]
    for status in ("401", "404", "503"):
        assert status in paths["/admin/keys"]["get"]["responses"]
    for status in ("401", "403", "404", "429", "502", "503", "504"):
        assert status in paths["/v1/chat/completions"]["post"]["responses"]


def test_an_empty_request_id_is_declared_valid() -> None:
    chat = document()["paths"]["/v1/chat/completions"]["post"]
    [request_id] = [p for p in chat["parameters"] if p["name"] == "X-Request-ID"]
    assert "minLength" not in request_id["schema"]
