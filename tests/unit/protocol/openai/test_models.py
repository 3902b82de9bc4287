"""The GET /v1/models payloads."""

from __future__ import annotations

from modelport.protocol.openai.models import model_list, model_object


def test_model_object_uses_the_route_as_id_and_its_owner() -> None:
    assert model_object("support-summary", "support", 1700000000) == {
        "id": "support-summary",
        "object": "model",
        "created": 1700000000,
        "owned_by": "support",
    }


def test_model_object_without_owner_is_owned_by_modelport() -> None:
    assert model_object("r", "", 0)["owned_by"] == "modelport"


def test_model_list_has_one_entry_per_route_in_order() -> None:
    listing = model_list([("a", "x"), ("b", "")], 5)

    assert listing["object"] == "list"
    assert [(m["id"], m["owned_by"]) for m in listing["data"]] == [("a", "x"), ("b", "modelport")]
