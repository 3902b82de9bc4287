"""The review queue over HTTP: a draft-only route answers 202 and the caller polls; a
reviewer's key lists, edits and approves (a second decision is 409) and may do nothing else;
a broken contract held instead of refused, then rejected; a sampled route answers and queues;
the decision posted to a webhook whose signature a test receiver checks, after a failed
first delivery; decisions in the feedback figures and the queue in the metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelport.config import load_settings
from tests.fakes.upstream import FakeUpstream
from tests.fakes.upstream import chat_answer as answer
from tests.gateway import InProcessGateway, write_config

ADMIN_KEY = "admin-planted-secret-77c0a1e4"
APP_KEY = "app-planted-secret-5d2e9b10"
OTHER_KEY = "other-planted-secret-3a6f4c28"
REVIEWER_KEY = "reviewer-planted-secret-9e1b7d05"
HOOK_SECRET = "hook-planted-secret-0c4d8a62"
ENV = {"RV_ADMIN": ADMIN_KEY, "RV_APP": APP_KEY, "RV_OTHER": OTHER_KEY,
       "RV_REVIEWER": REVIEWER_KEY, "RV_HOOK": HOOK_SECRET}


class Receiver:
    """A webhook receiver: answers with the statuses it is given, then 200; keeps what came."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(500)
    yield running
    running.server.shutdown()


@pytest.fixture
def gateway(tmp_path: Path, upstream: FakeUpstream, sqlite_url: str, receiver: Receiver,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[InProcessGateway]:
    monkeypatch.setattr("modelport.inference.reviews.WEBHOOK_BACKOFF_S", 0.2)
    config = {
        "admin_key": "env:RV_ADMIN",
        "store": {"url": sqlite_url, "flush_interval_s": 0.05},
        "keys": {"app": {"key": "env:RV_APP"}, "other": {"key": "env:RV_OTHER"},
                 "reviewer": {"key": "env:RV_REVIEWER", "role": "reviewer"}},
        "providers": {"p": {"kind": "openai", "base_url": upstream.base_url}},
        "routes": {
            "drafts": {"targets": [{"provider": "p", "model": "m"}], "review": "always",
                       "review_webhook": {"url": receiver.url, "secret": "env:RV_HOOK"}},
            "checked": {"targets": [{"provider": "p", "model": "m"}],
                        "output": {"labels": ["yes", "no"], "repair_attempts": 0},
                        "review": "on_failure"},
            "sampled": {"targets": [{"provider": "p", "model": "m"}],
                        "review": {"sample": 100}},
            "guarded": {"targets": [{"provider": "p", "model": "m"}],
                        "guards": {"deny": {"keywords": ["hi"], "review": True},
                                   "mask": ["email"]}},
        },
    }
    path = write_config(tmp_path / "modelport.yaml", config)
    running = InProcessGateway(load_settings(path, ENV)).start()
    yield running
    running.stop()


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(gw: InProcessGateway, route: str, key: str = APP_KEY) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/chat/completions", headers=as_key(key), timeout=10,
                      json={"model": route, "messages": [{"role": "user", "content": "Hi"}]})


def test_a_draft_only_route_is_approved_with_an_edit_and_the_caller_sees_it(
    gateway: InProcessGateway, upstream: FakeUpstream, receiver: Receiver
) -> None:
    upstream.enqueue(answer("Dear customer, we refund you."))
    held = chat(gateway, "drafts")
    assert held.status_code == 202
    item = held.json()
    assert item["object"] == "review" and item["status"] == "pending"
    poll = f"{gateway.url}{item['poll']}"
    assert httpx.get(poll, headers=as_key(APP_KEY)).json()["status"] == "pending"
    assert httpx.get(poll, headers=as_key(OTHER_KEY)).status_code == 404
    assert httpx.get(f"{gateway.url}/v1/reviews/rev_nosuch",
                     headers=as_key(APP_KEY)).status_code == 404

    queue = httpx.get(f"{gateway.url}/admin/reviews", params={"status": "pending"},
                      headers=as_key(REVIEWER_KEY)).json()["data"]
    assert [q["id"] for q in queue] == [item["id"]]
    assert queue[0]["answer"]["choices"][0]["message"]["content"] == \
        "Dear customer, we refund you."
    assert queue[0]["request"]["messages"][-1]["content"] == "Hi"
    decided = httpx.post(f"{gateway.url}/admin/reviews/{item['id']}", headers=as_key(
        REVIEWER_KEY), json={"decision": "approve", "answer": "Dear Ana, we refund you.",
                            "reason": "name"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["decided_by"] == "reviewer:cfg_reviewer"
    again = httpx.post(f"{gateway.url}/admin/reviews/{item['id']}", headers=as_key(
        ADMIN_KEY), json={"decision": "reject", "reason": "too late"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "review_decided"

    seen = httpx.get(poll, headers=as_key(APP_KEY)).json()
    assert seen["status"] == "approved" and seen["edited"] is True
    assert seen["answer"]["choices"][0]["message"]["content"] == "Dear Ana, we refund you."

    deadline = time.monotonic() + 10
    while len(receiver.received) < 2:  # the first delivery failed (500), the retry took
        assert time.monotonic() < deadline, receiver.received
        time.sleep(0.05)
    headers, body = receiver.received[-1]
    stamp, mac = dict(p.split("=", 1) for p in headers["X-Modelport-Signature"].split(","))\
        .values()
    expected = hmac.new(HOOK_SECRET.encode(), f"{stamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    assert json.loads(body)["status"] == "approved"

    deadline = time.monotonic() + 5
    while True:
        figures = httpx.get(f"{gateway.url}/admin/feedback", headers=as_key(ADMIN_KEY)).json()
        rows = [r for r in figures["data"] if r["route"] == "drafts"]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rows and rows[0]["edited"] == 1, figures


def test_a_reviewers_key_decides_reviews_and_nothing_else(gateway: InProcessGateway) -> None:
    assert httpx.get(f"{gateway.url}/admin/keys",
                     headers=as_key(REVIEWER_KEY)).status_code == 403
    assert httpx.get(f"{gateway.url}/admin/config",
                     headers=as_key(REVIEWER_KEY)).status_code == 403
    assert chat(gateway, "sampled", REVIEWER_KEY).status_code == 403
    assert httpx.get(f"{gateway.url}/admin/reviews",
                     headers=as_key(APP_KEY)).status_code == 401
    bad = httpx.post(f"{gateway.url}/admin/reviews/rev_x", headers=as_key(REVIEWER_KEY),
                     json={"decision": "maybe"})
    assert bad.status_code == 400


def test_a_broken_contract_is_held_then_rejected(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer("perhaps"))
    held = chat(gateway, "checked")
    assert held.status_code == 202
    assert held.headers["x-modelport-validation"] == "failed"
    review_id = held.json()["id"]
    item = httpx.get(f"{gateway.url}/admin/reviews/{review_id}",
                     headers=as_key(ADMIN_KEY)).json()
    assert item["held_because"].startswith("invalid_output: the answer must be exactly one of")
    httpx.post(f"{gateway.url}/admin/reviews/{review_id}", headers=as_key(ADMIN_KEY),
               json={"decision": "reject", "reason": "off topic"})
    seen = httpx.get(f"{gateway.url}/v1/reviews/{review_id}", headers=as_key(APP_KEY)).json()
    assert (seen["status"], seen["reason"], seen["answer"]) == ("rejected", "off topic", None)


def test_a_sampled_route_answers_and_queues_a_copy(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    upstream.enqueue(answer("Sure."))
    reply = chat(gateway, "sampled")
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "Sure."
    deadline = time.monotonic() + 5
    while not (rows := httpx.get(f"{gateway.url}/admin/reviews", params={"route": "sampled"},
                                 headers=as_key(ADMIN_KEY)).json()["data"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert rows[0]["held_because"] == "sample" and rows[0]["status"] == "pending"
    metrics = httpx.get(f"{gateway.url}/metrics", headers=as_key(ADMIN_KEY)).text
    assert 'modelport_reviews_pending{route="sampled"} 1.0' in metrics
    assert 'modelport_review_oldest_pending_seconds{route="sampled"}' in metrics


def test_a_refused_request_can_be_queued_for_a_person(
    gateway: InProcessGateway, upstream: FakeUpstream
) -> None:
    refused = httpx.post(f"{gateway.url}/v1/chat/completions", headers=as_key(APP_KEY),
                         json={"model": "guarded", "messages": [
                             {"role": "user", "content": "Hi, I am ana@example.com"}]})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "content_blocked"
    assert upstream.requests == []
    rows = httpx.get(f"{gateway.url}/admin/reviews", params={"route": "guarded"},
                     headers=as_key(REVIEWER_KEY)).json()["data"]
    assert [(r["held_because"], r["answer"]) for r in rows] == [
        ("content_blocked: keyword", None)]
    assert rows[0]["request"]["messages"][-1]["content"] == "Hi, I am [EMAIL_1]"
