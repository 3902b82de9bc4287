"""A gateway with keys on: an admin key, keys declared in the config, routes in two
environments, prices on the targets. Shared by the access-control tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream
from tests.gateway import InProcessGateway, start_gateway

ADMIN_KEY = "admin-planted-secret-93b1d0"
KEY_ALL = "cfgkey-all-prod-5e2a71c4"
KEY_R1 = "cfgkey-r1-only-0c8d3f19"
KEY_DEV = "cfgkey-dev-env-7a4b6e02"
PLANTED = (ADMIN_KEY, KEY_ALL, KEY_R1, KEY_DEV, UPSTREAM_KEY)


def access_config(base_url: str, store_url: str, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "admin_key": "env:TEST_ADMIN_KEY",
        "store": {"url": store_url, "flush_interval_s": 0.05},
        "providers": {"upstream-a": {"kind": "openai", "base_url": base_url,
                                     "api_key": "env:UPSTREAM_A_KEY"}},
        "routes": {
            "r1": {"owner": "team-1", "targets": [
                {"provider": "upstream-a", "model": "m1", "input_per_mtok": 2.0,
                 "output_per_mtok": 10.0}]},
            "r2": {"owner": "team-2", "targets": [{"provider": "upstream-a", "model": "m2"}]},
            "rdev": {"owner": "team-dev", "environment": "dev",
                     "targets": [{"provider": "upstream-a", "model": "m3"}]},
        },
        "keys": {
            "all-prod": {"key": "env:KEY_ALL"},
            "r1-only": {"key": "env:KEY_R1", "routes": ["r1"]},
            "dev": {"key": "env:KEY_DEV", "environment": "dev"},
        },
    }
    for key, value in overrides.items():
        config[key] = value
    return config


def access_env() -> dict[str, str]:
    return {"UPSTREAM_A_KEY": UPSTREAM_KEY, "TEST_ADMIN_KEY": ADMIN_KEY, "KEY_ALL": KEY_ALL,
            "KEY_R1": KEY_R1, "KEY_DEV": KEY_DEV}


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def chat(route: str, **extra: Any) -> dict[str, Any]:
    return {"model": route, "messages": [{"role": "user", "content": "hello there"}], **extra}


@dataclass
class Keyed:
    gateway: InProcessGateway
    client: httpx.Client
    upstream: FakeUpstream
    store_url: str

    def create_key(self, **spec: Any) -> dict[str, Any]:
        r = self.client.post("/admin/keys", json={"name": "made", **spec},
                             headers=bearer(ADMIN_KEY))
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def call(self, route: str, key: str | None, **extra: Any) -> httpx.Response:
        return self.client.post("/v1/chat/completions", json=chat(route, **extra),
                                headers=bearer(key))


def keyed_gateway(
    tmp_path: Path, upstream: FakeUpstream, store_url: str, **overrides: Any
) -> Iterator[Keyed]:
    gw = start_gateway(tmp_path, access_config(upstream.base_url, store_url, **overrides),
                       access_env())
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            yield Keyed(gw, client, upstream, store_url)
    finally:
        gw.stop()
