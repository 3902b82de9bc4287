"""No secret (admin key, inference keys, provider key, a minted key) ever appears in a
response body, a response header or a log line, across a run full of errors."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import UPSTREAM_KEY
from tests.fakes.upstream import FakeUpstream, Reply
from tests.gateway import ServeProcess, write_config
from tests.integration.access_setup import (
    ADMIN_KEY,
    KEY_ALL,
    KEY_R1,
    PLANTED,
    access_config,
    access_env,
    bearer,
    chat,
)


def test_planted_secrets_never_leak(
    tmp_path: Path, upstream: FakeUpstream, sqlite_url: str
) -> None:
    config = access_config(upstream.base_url, sqlite_url)
    config["routes"]["r1"]["capture"] = True
    proc = ServeProcess(write_config(tmp_path / "m.yaml", config), access_env(), tmp_path)
    proc.wait_ready()
    seen: list[str] = []
    minted: list[str] = []
    upstream.enqueue(
        Reply(status=401, body={"error": {"message": f"bad key {UPSTREAM_KEY}"}}),
        Reply(status=400, body={"error": {"message": f"echo {UPSTREAM_KEY}", "code": "x"}}),
        Reply(status=500, body=f"trace {UPSTREAM_KEY}"),
        Reply(stream_chunks=["a", "b"], break_after=1),
    )
    try:
        with httpx.Client(base_url=proc.url, timeout=10) as c:
            def keep(r: httpx.Response) -> None:
                seen.append(str(r.status_code) + str(dict(r.headers)) + r.text)

            for _ in range(3):
                keep(c.post("/v1/chat/completions", json=chat("r2"), headers=bearer(KEY_ALL)))
            keep(c.post("/v1/chat/completions", json=chat("r2", stream=True),
                        headers=bearer(KEY_ALL)))
            for key in (None, "wrong", ADMIN_KEY, KEY_R1, KEY_ALL[:-1], KEY_ALL + "x"):
                keep(c.post("/v1/chat/completions", json=chat("r2"), headers=bearer(key)))
            keep(c.post("/v1/chat/completions", json=chat("r1", note=KEY_ALL),
                        headers=bearer(KEY_R1)))  # a secret in a captured body is masked
            keep(c.post("/v1/chat/completions", content=KEY_ALL.encode(),
                        headers=bearer(KEY_ALL)))
            # a caller that sends a key as its request id gets its own header back, but the
            # log line (and the ledger) must not carry it
            echoed = c.post("/v1/chat/completions", json=chat("r1"),
                            headers={**bearer(KEY_ALL), "X-Request-ID": KEY_R1})
            assert echoed.headers["x-request-id"] == KEY_R1
            created = c.post("/admin/keys", json={"name": "leak-probe"},
                             headers=bearer(ADMIN_KEY))
            minted.append(created.json()["key"])
            for key in (KEY_ALL, minted[0]):
                keep(c.get("/admin/keys", headers=bearer(key)))
            keep(c.get("/admin/keys", headers=bearer(ADMIN_KEY)))
            keep(c.get("/admin/audit", headers=bearer(ADMIN_KEY)))
            keep(c.post("/admin/keys", json={"name": 5, "x": ADMIN_KEY},
                        headers=bearer(ADMIN_KEY)))
            rotated = c.post(f"/admin/keys/{created.json()['id']}/rotate",
                             headers=bearer(ADMIN_KEY))
            minted.append(rotated.json()["key"])
            keep(c.delete(f"/admin/keys/{created.json()['id']}", headers=bearer(ADMIN_KEY)))
            keep(c.post("/v1/chat/completions", json=chat("r1"), headers=bearer(minted[1])))
            token = c.post("/v1/tokens", json={"route": "r1"}, headers=bearer(KEY_ALL))
            keep(c.post("/v1/chat/completions", json=chat("r1"),
                        headers=bearer(token.json()["token"] + "x")))
            keep(c.get("/metrics"))
        time.sleep(0.4)
    finally:
        log = proc.stop()
    assert '"logger":"modelport.access"' in log
    for secret in (*PLANTED, *minted):
        assert secret not in log, f"a secret leaked into the log: {secret[:6]}..."
        for text in seen:
            assert secret not in text, f"a secret leaked into a response: {secret[:6]}..."
