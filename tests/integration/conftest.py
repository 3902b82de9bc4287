from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream
from tests.gateway import InProcessGateway, basic_config, start_gateway
from tests.integration.access_setup import Keyed, keyed_gateway


@pytest.fixture
def gateway(
    tmp_path: Path, upstream: FakeUpstream, env: dict[str, str], sqlite_url: str
) -> Iterator[InProcessGateway]:
    gw = start_gateway(tmp_path, basic_config(upstream.base_url, sqlite_url), env)
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: InProcessGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as c:
        yield c


@pytest.fixture
def keyed(tmp_path: Path, upstream: FakeUpstream, sqlite_url: str) -> Iterator[Keyed]:
    yield from keyed_gateway(tmp_path, upstream, sqlite_url)
