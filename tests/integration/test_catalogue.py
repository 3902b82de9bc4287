"""The model catalogue over HTTP: a deprecated model's answers say so (RFC 9745, RFC 8594, a
successor link), a retired one is 410 naming its successor or goes to the route's fallback,
and ``/admin/models`` shows each model's status in force with its last day of traffic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.upstream import FakeUpstream
from tests.integration.access_setup import ADMIN_KEY, KEY_ALL, Keyed, bearer, keyed_gateway

ADMIN = bearer(ADMIN_KEY)
DEPRECATED = datetime.now(UTC) - timedelta(days=30)
SUNSET = (datetime.now(UTC) + timedelta(days=60)).replace(microsecond=0)
RETIRED = datetime.now(UTC) - timedelta(days=1)


def catalogue() -> dict[str, Any]:
    return {
        "mini": {"provider": "upstream-a", "model": "m1", "owner": "platform",
                 "status": "approved", "input_per_mtok": 2.0, "output_per_mtok": 10.0},
        "old": {"provider": "upstream-a", "model": "m2", "status": "deprecated",
                "deprecated_at": DEPRECATED.isoformat(), "retire_at": SUNSET.isoformat(),
                "successor": "mini"},
        "gone": {"provider": "upstream-a", "model": "m3", "status": "deprecated",
                 "deprecated_at": (RETIRED - timedelta(days=30)).isoformat(),
                 "retire_at": RETIRED.isoformat(), "successor": "mini"},
    }


@pytest.fixture
def keyed(tmp_path: Path, upstream: FakeUpstream, sqlite_url: str) -> Iterator[Keyed]:
    yield from keyed_gateway(tmp_path, upstream, sqlite_url, models=catalogue(), routes={
        "r1": {"targets": [{"model": "mini"}]},
        "legacy": {"targets": [{"model": "old"}]},
        "retired": {"targets": [{"model": "gone"}]},
        "retired-with-fallback": {"targets": [{"model": "gone"}], "fallback_routes": ["r1"]},
    })


def test_an_approved_models_answer_carries_no_lifecycle_headers_and_its_prices(
    keyed: Keyed,
) -> None:
    reply = keyed.call("r1", KEY_ALL)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-modelport-target"] == "upstream-a/m1"
    assert not {"deprecation", "sunset", "link"} & set(reply.headers)
    assert float(reply.headers["x-modelport-cost-usd"]) > 0  # the catalogue's prices


def test_a_deprecated_models_answers_say_so_whole_and_streamed(keyed: Keyed) -> None:
    for extra in ({}, {"stream": True}):
        reply = keyed.call("legacy", KEY_ALL, **extra)
        assert reply.status_code == 200, reply.text
        assert reply.headers["deprecation"] == f"@{int(DEPRECATED.timestamp())}"
        assert parsedate_to_datetime(reply.headers["sunset"]) == SUNSET
        assert reply.headers["link"] == '</admin/models/mini>; rel="successor-version"'


def test_a_retired_model_is_410_naming_its_successor_without_a_call(keyed: Keyed) -> None:
    calls = len(keyed.upstream.requests)
    reply = keyed.call("retired", KEY_ALL)
    assert reply.status_code == 410
    error = reply.json()["error"]
    assert (error["code"], error["param"]) == ("model_retired", "model")
    assert "'gone'" in error["message"] and "'mini'" in error["message"]
    assert len(keyed.upstream.requests) == calls


def test_a_retired_model_goes_to_the_routes_fallback_when_it_has_one(keyed: Keyed) -> None:
    reply = keyed.call("retired-with-fallback", KEY_ALL)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-modelport-target"] == "upstream-a/m1"


def test_admin_models_shows_the_status_in_force_routes_and_the_last_days_traffic(
    keyed: Keyed,
) -> None:
    for _ in range(2):
        assert keyed.call("r1", KEY_ALL).status_code == 200
    assert keyed.call("legacy", KEY_ALL).status_code == 200
    deadline = time.monotonic() + 5
    while True:
        models = {m["id"]: m for m in keyed.client.get(
            "/admin/models", headers=ADMIN).json()["data"]}
        if models["mini"]["last_day"]["requests"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (models["mini"]["status"], models["mini"]["owner"]) == ("approved", "platform")
    assert models["mini"]["routes"] == ["r1"]
    assert models["gone"]["routes"] == ["retired", "retired-with-fallback"]
    assert models["mini"]["last_day"]["requests"] == 2
    assert models["mini"]["last_day"]["error_rate"] == 0
    assert models["mini"]["last_day"]["cost_usd"] > 0
    assert models["old"]["status"] == "deprecated" and models["old"]["successor"] == "mini"
    assert (models["gone"]["status"], models["gone"]["declared_status"]) == (
        "retired", "deprecated")
    one = keyed.client.get("/admin/models/old", headers=ADMIN)
    assert one.status_code == 200 and one.json()["retire_at"].startswith(
        SUNSET.isoformat()[:19])
    assert keyed.client.get("/admin/models/nosuch", headers=ADMIN).status_code == 404
    assert keyed.client.get("/admin/models", headers=bearer(KEY_ALL)).status_code == 401
