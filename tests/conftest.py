"""Fixtures shared by the integration and end-to-end suites."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.upstream import FakeUpstream

UPSTREAM_KEY = "sk-planted-secret-7f3a9c1e5b"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def env() -> dict[str, str]:
    return {"UPSTREAM_A_KEY": UPSTREAM_KEY}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("MODELPORT_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("MODELPORT_TEST_POSTGRES_URL is not set; PostgreSQL tests skipped")
    return url
