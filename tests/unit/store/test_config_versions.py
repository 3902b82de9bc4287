"""ConfigVersionStore: every applied config kept, numbered, found by number or hash, and
audited, on SQLite and (where MODELPORT_TEST_POSTGRES_URL is set) PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelport.store.config_versions import ConfigVersionStore
from modelport.store.engine import make_engine, migrate
from tests.unit.store.test_keys import isolated_database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConfigVersionStore]:
    for url in isolated_database(request.param, tmp_path, request):
        engine = make_engine(url)
        migrate(engine)
        yield ConfigVersionStore(engine)
        engine.dispose()


def test_versions_are_numbered_kept_whole_and_audited(store: ConfigVersionStore) -> None:
    assert store.latest() is None and store.history() == []
    first = store.record(config_version="aaaaaaaaaaaa", text="routes: {}\n", action="start",
                         source="modelport.yaml", reason="", actor="modelport", client=None)
    second = store.record(config_version="bbbbbbbbbbbb", text="routes: {x: 1}\n",
                          action="apply", source="admin api", reason="try x", actor="admin",
                          client="10.0.0.1")
    third = store.record(config_version="aaaaaaaaaaaa", text="routes: {}\n",
                         action="rollback", source="rollback to 1", reason="", actor="admin",
                         client=None, restores=first.id)
    assert [r.id for r in store.history()] == [third.id, second.id, first.id]
    assert store.latest() == third
    assert store.find(str(second.id)) == second
    assert store.find("bbbbbb") == second
    assert store.find("aaaaaaaa") == third  # a hash names its latest application
    assert store.find("aaa") is None  # too short to name one
    assert store.find("999") is None and store.find("cccccc") is None
    assert second.text == "routes: {x: 1}\n" and second.client == "10.0.0.1"
    assert third.restores == first.id
    actions = [e.action for e in store.audit_entries()]
    assert actions == ["config.rollback", "config.apply", "config.start"]


def test_a_hash_prefix_of_digits_alone_is_found_when_no_version_has_that_number(
    store: ConfigVersionStore,
) -> None:
    first = store.record(config_version="20240612abcd", text="routes: {}\n", action="start",
                         source="modelport.yaml", reason="", actor="modelport", client=None)
    assert store.find("20240612") == first  # no version 20240612: the hash's prefix
    assert store.find(str(first.id)) == first  # a number that names a version stays one
    assert store.find("9" * 30) is None  # too long for a number, and no hash starts so
