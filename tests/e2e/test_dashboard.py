"""The dashboard in headless Chromium against ``modelport serve``: sign in with the admin key,
see real traffic in every panel (numbers and plots), open one request, revoke a key with the
confirmation step, and find the key refused over HTTP afterwards.

Needs Debian's chromium (``/usr/bin/chromium``) and Playwright for Python; skipped with a
message without them. Playwright drives the system's browser (no ``playwright install``).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream, Reply, chat_answer
from tests.gateway import ServeProcess, write_config
from tests.integration.access_setup import (
    ADMIN_KEY,
    KEY_ALL,
    access_config,
    access_env,
    bearer,
    chat,
)

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="Playwright for Python is not installed (pip install playwright); "
           "dashboard browser tests skipped")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ADMIN = bearer(ADMIN_KEY)


@pytest.fixture
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); "
                    "dashboard browser tests skipped")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def server(tmp_path: Path, upstream: FakeUpstream) -> Iterator[ServeProcess]:
    config = access_config(upstream.base_url, f"sqlite:///{tmp_path}/ledger.db")
    config["routes"]["r1"]["targets"][0]["version"] = "m1-2026-01"
    path = write_config(tmp_path / "modelport.yaml", config)
    proc = ServeProcess(path, access_env(), tmp_path).wait_ready()
    yield proc
    proc.stop()


def _traffic(http: httpx.Client, upstream: FakeUpstream) -> dict[str, Any]:
    """A new key makes three answered calls and one that fails upstream, and sends
    feedback on its first answer; returns what the dashboard should show."""
    made = http.post("/admin/keys", json={"name": "web-frontend", "routes": ["r1"],
                                           "rpm": 600, "budget_usd": 5},
                     headers=ADMIN).json()
    key = bearer(made["key"])
    answered = []
    for _ in range(3):
        reply = http.post("/v1/chat/completions", json=chat("r1", max_tokens=16), headers=key)
        assert reply.status_code == 200
        answered.append(reply.headers["x-request-id"])
    upstream.enqueue(Reply(status=500, body={"error": {"message": "boom"}}))
    failed = http.post("/v1/chat/completions", json=chat("r1"), headers=key)
    assert failed.status_code == 502
    feedback = http.post("/v1/feedback", headers=key,
                         json={"request_id": answered[0], "outcome": "edited"})
    assert feedback.status_code == 201, feedback.text
    deadline = time.monotonic() + 10
    # The four inference calls in the ledger (feedback is not a request of its own).
    while len(rows := http.get("/admin/requests", headers=ADMIN).json()["data"]) < 4:
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    usage = http.get("/admin/usage?by=key", headers=ADMIN).json()["data"]
    return {"key": made, "answered": answered, "failed": failed.headers["x-request-id"],
            "cost": next(u["cost_usd"] for u in usage if u["key"] == made["id"])}


def _signed_in(browser: Any, url: str, key: str) -> tuple[Any, Any, list[str]]:
    """A new browser context signed in to the dashboard with ``key``: the context, its page,
    and the page's script errors as they happen."""
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(f"{url}/dashboard")
    page.fill("#login-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#app", state="visible")
    return context, page, problems


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text()).strip()


def test_the_dashboard_shows_real_traffic_and_revokes_a_key(
    server: ServeProcess, upstream: FakeUpstream, browser: Any
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        seen = _traffic(http, upstream)
    key_id = seen["key"]["id"]
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(20_000)
    urls: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)

    page.goto(f"{server.url}/dashboard")
    page.fill("#login-key", "not the admin key")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error", state="visible")
    assert page.locator("#app").is_hidden()
    problems.clear()  # the console's note of that 401
    page.fill("#login-key", ADMIN_KEY)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#app", state="visible")

    # Overview: totals from the ledger, three plots.
    expect = sync_api.expect  # waits without evaluating strings, which the page's CSP forbids
    expect(page.locator("#total-requests")).to_have_text("4")
    assert _text(page, "#total-errors") == "1"
    assert _text(page, "#total-error-rate") == "25.0%"
    assert _text(page, "#total-cost") == f"{seen['cost']:.6f}"
    for chart in ("traffic", "latency", "cost"):
        assert page.locator(f"#chart-{chart} canvas").count() == 1
    page.click("#range button[data-since='7d']")
    page.wait_for_selector("#range button.active[data-since='7d']")
    assert _text(page, "#total-requests") == "4"

    # Routes: the target's live state and its last hour.
    page.click("#tabs button[data-panel=routes]")
    target = "#routes-table tr[data-target='upstream-a/m1']"
    page.wait_for_selector(target)
    assert _text(page, f"{target} td[data-field=requests]") == "4"
    assert _text(page, f"{target} td[data-field=error_rate]") == "25.0%"
    assert _text(page, f"{target} td[data-field=model_version]") == "m1-2026-01"
    assert _text(page, f"{target} td[data-field=breaker]") == "closed"
    assert _text(page, f"{target} td[data-field=in_flight]") == "0"
    assert page.locator("#chart-routes-latency canvas").count() == 1
    assert page.locator("#chart-routes-errors canvas").count() == 1

    # Keys: this month's usage of the new key, and a plot of cost per key.
    page.click("#tabs button[data-panel=keys]")
    row = f"#keys-table tr[data-key-id='{key_id}']"
    page.wait_for_selector(row)
    assert _text(page, f"{row} td[data-field=name]") == "web-frontend"
    assert _text(page, f"{row} td[data-field=requests]") == "3"
    assert _text(page, f"{row} td[data-field=cost_usd]") == f"{seen['cost']:.6f}"
    assert _text(page, f"{row} td[data-field=limits]") == "600 rpm"
    assert _text(page, f"{row} td[data-field=budget]") == "$5 a month"
    assert page.locator("#chart-keys-cost canvas").count() == 1

    # Requests: the log, filtered, and one request in detail.
    page.click("#tabs button[data-panel=requests]")
    expect(page.locator("#requests-table tbody tr")).to_have_count(4)  # no feedback call
    page.select_option("#request-filters select[name=status]", "5xx")
    page.click("#request-filters button[type=submit]")
    expect(page.locator("#requests-table tbody tr")).to_have_count(1)
    assert _text(page, "#requests-table tbody tr td[data-field=request_id]") == seen["failed"]
    page.select_option("#request-filters select[name=status]", "")
    page.fill("#request-filters input[name=key]", key_id)
    page.click("#request-filters button[type=submit]")
    first = f"#requests-table tr[data-request-id='{seen['answered'][0]}']"
    page.wait_for_selector(first)
    page.click(first)
    page.wait_for_selector("#request-detail", state="visible")
    detail = _text(page, "#request-detail")
    assert f"Request {seen['answered'][0]}" in detail
    assert "m1-2026-01" in detail and "edited" in detail and "upstream" in detail
    assert page.locator("#request-detail .split-bar span").count() == 3

    # Feedback: the correction rate per route and model version, plotted.
    page.click("#tabs button[data-panel=feedback]")
    feedback = "#feedback-table tr[data-route=r1]"
    page.wait_for_selector(feedback)
    assert _text(page, f"{feedback} td[data-field=model_version]") == "m1-2026-01"
    assert _text(page, f"{feedback} td[data-field=edited]") == "1"
    assert _text(page, f"{feedback} td[data-field=correction_rate]") == "100.0%"
    assert page.locator("#chart-feedback canvas").count() == 1

    # Revoking takes a confirmation; cancelling keeps the key.
    page.click("#tabs button[data-panel=keys]")
    page.click(f"{row} button.revoke")
    page.click(f"{row} button.cancel-revoke")
    assert _text(page, f"{row} td[data-field=state]") == "active"
    page.click(f"{row} button.revoke")
    assert "Revoke web-frontend?" in _text(page, f"{row} td[data-field=actions]")
    page.click(f"{row} button.confirm-revoke")
    expect(page.locator(f"{row} td[data-field=state]")).to_have_text("revoked")
    refused = httpx.post(f"{server.url}/v1/chat/completions", json=chat("r1"),
                         headers=bearer(seen["key"]["key"]))
    assert refused.status_code == 401

    (cookie,) = [c for c in context.cookies() if c["name"] == "modelport_session"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/" and cookie["secure"] is False
    assert "modelport_session" not in page.evaluate("document.cookie")
    assert urls and not [u for u in urls if ADMIN_KEY in u]
    assert ADMIN_KEY not in page.url
    assert problems == []

    page.click("#logout")
    page.wait_for_selector("#login", state="visible")
    assert not [c for c in context.cookies() if c["name"] == "modelport_session"]
    context.close()


def test_the_dashboard_turns_a_route_off_and_back_on(
    server: ServeProcess, browser: Any
) -> None:
    """The Switches panel: a bad name is refused with the server's reason; a route turned
    off is refused over HTTP with the operator's message, listed, and turned back on."""
    from tests.integration.access_setup import KEY_ALL

    expect = sync_api.expect
    context, page, problems = _signed_in(browser, server.url, ADMIN_KEY)
    page.click("#tabs button[data-panel=switches]")
    page.wait_for_selector("#panel-switches", state="visible")
    expect(page.locator("#switches-table tbody tr")).to_have_count(0)

    form = "#switch-form"
    page.fill(f"{form} input[name=name]", "nosuch")
    page.fill(f"{form} input[name=reason]", "trying")
    page.click(f"{form} button[type=submit]")
    expect(page.locator("#status")).to_contain_text("unknown route 'nosuch'")

    page.fill(f"{form} input[name=name]", "r1")
    page.fill(f"{form} input[name=message]", "r1 is paused for a fix.")
    page.fill(f"{form} input[name=reason]", "wrong answers")
    page.click(f"{form} button[type=submit]")
    row = "#switches-table tr[data-switch='route:r1']"
    page.wait_for_selector(row)
    assert _text(page, f"{row} td[data-field=reason]") == "wrong answers"
    assert _text(page, f"{row} td[data-field=actor]") == "dashboard"
    refused = httpx.post(f"{server.url}/v1/chat/completions", json=chat("r1"),
                         headers=bearer(KEY_ALL))
    assert refused.status_code == 503
    assert refused.json()["error"]["message"] == "r1 is paused for a fix."

    page.click(f"{row} button.turn-on")
    expect(page.locator(row)).to_have_count(0)
    answered = httpx.post(f"{server.url}/v1/chat/completions", json=chat("r1"),
                          headers=bearer(KEY_ALL))
    assert answered.status_code == 200
    assert problems == []
    context.close()


def test_the_dashboard_shows_the_model_catalogue_with_a_days_traffic(
    tmp_path: Path, upstream: FakeUpstream, browser: Any
) -> None:
    from tests.integration.access_setup import KEY_ALL

    config = access_config(upstream.base_url, f"sqlite:///{tmp_path}/ledger.db")
    config["models"] = {
        "mini": {"provider": "upstream-a", "model": "m1", "owner": "platform",
                 "status": "approved", "input_per_mtok": 2.0, "output_per_mtok": 10.0},
        "old": {"provider": "upstream-a", "model": "m2", "status": "deprecated",
                "deprecated_at": "2026-01-01", "retire_at": "2099-01-01",
                "successor": "mini"},
    }
    config["routes"] = {"r1": {"targets": [{"model": "mini"}],
                               "shadow": {"target": {"model": "old"}, "percent": 100,
                                          "budget_usd": 1}},
                        "r2": {"targets": [{"model": "old"},
                                           {"model": "mini", "canary": {"percent": 5}}]}}
    proc = ServeProcess(write_config(tmp_path / "modelport.yaml", config), access_env(),
                        tmp_path).wait_ready()
    try:
        for _ in range(2):
            reply = httpx.post(f"{proc.url}/v1/chat/completions", json=chat("r1"),
                               headers=bearer(KEY_ALL))
            assert reply.status_code == 200, reply.text
        deadline = time.monotonic() + 10
        while httpx.get(f"{proc.url}/admin/routes/r1/shadow",
                        headers=ADMIN).json()["shadows"] < 2:  # the ledger has them all
            assert time.monotonic() < deadline
            time.sleep(0.05)
        page = browser.new_context().new_page()
        page.set_default_timeout(20_000)
        page.goto(f"{proc.url}/dashboard")
        page.fill("#login-key", ADMIN_KEY)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#app", state="visible")
        page.click("#tabs button[data-panel=models]")
        mini = "#models-table tr[data-model=mini]"
        page.wait_for_selector(mini)
        sync_api.expect(page.locator(f"{mini} td[data-field=requests]")).to_have_text("2")
        assert _text(page, f"{mini} td[data-field=status]") == "approved"
        assert _text(page, f"{mini} td[data-field=routes]") == "r1, r2"
        assert _text(page, f"{mini} td[data-field=error_rate]") == "0.0%"
        old = "#models-table tr[data-model=old]"
        assert _text(page, f"{old} td[data-field=status]") == "deprecated"
        assert _text(page, f"{old} td[data-field=successor]") == "mini"
        page.click("#tabs button[data-panel=routes]")
        canary = "#routes-table tr[data-route=r2][data-target='upstream-a/m1']"
        page.wait_for_selector(canary)
        assert _text(page, f"{canary} td[data-field=canary]") == "running (5%)"
        shadow = "#shadows-table tr[data-route=r1]"
        page.wait_for_selector(shadow)
        assert _text(page, f"{shadow} td[data-field=target]") == "upstream-a/m2"
        assert _text(page, f"{shadow} td[data-field=shadows]") == "2"
        assert _text(page, f"{shadow} td[data-field=match_rate]") == "100.0%"
    finally:
        proc.stop()


def test_a_reviewer_approves_a_draft_with_an_edit_in_the_dashboard(
    tmp_path: Path, upstream: FakeUpstream, browser: Any
) -> None:
    """A draft-only route: the caller gets 202; a reviewer signs in to the dashboard with a
    reviewer's key, sees the review queue only, edits the draft and approves it; the
    caller's poll then gets the edited answer, and the reviewer's session may do nothing
    else."""
    reviewer_key = "reviewer-planted-secret-41f7c2d9"
    config = access_config(upstream.base_url, f"sqlite:///{tmp_path}/ledger.db")
    config["routes"]["r1"]["review"] = "always"
    config["keys"]["maria"] = {"key": "env:REVIEWER_KEY", "role": "reviewer"}
    path = write_config(tmp_path / "modelport.yaml", config)
    proc = ServeProcess(path, {**access_env(), "REVIEWER_KEY": reviewer_key},
                        tmp_path).wait_ready()
    try:
        from tests.integration.access_setup import KEY_ALL

        upstream.enqueue(chat_answer("Dear customer, sorry."))
        held = httpx.post(f"{proc.url}/v1/chat/completions", json=chat("r1"),
                          headers=bearer(KEY_ALL))
        assert held.status_code == 202, held.text
        review_id = held.json()["id"]

        expect = sync_api.expect
        context, page, problems = _signed_in(browser, proc.url, reviewer_key)
        page.wait_for_selector("#panel-reviews", state="visible")
        assert page.locator("#tabs button[data-panel=keys]").is_hidden()
        row = f"#reviews-table tr[data-review='{review_id}']"
        page.wait_for_selector(row)
        assert _text(page, f"{row} td[data-field=why]") == "always"
        assert page.locator(f"{row} textarea").input_value() == "Dear customer, sorry."
        page.fill(f"{row} textarea", "Dear Ana, we are sorry.")
        page.fill(f"{row} input.review-reason", "her name")
        page.click(f"{row} button.approve")
        page.select_option("#review-filters select[name=status]", "approved")
        page.click("#review-filters button[type=submit]")
        expect(page.locator(f"{row} td[data-field=status]")).to_have_text("approved (edited)")

        seen = httpx.get(f"{proc.url}/v1/reviews/{review_id}", headers=bearer(KEY_ALL)).json()
        assert seen["status"] == "approved" and seen["edited"] is True
        assert seen["answer"]["choices"][0]["message"]["content"] == "Dear Ana, we are sorry."
        cookies = {c["name"]: c["value"] for c in context.cookies()}
        other = httpx.get(f"{proc.url}/admin/keys", cookies=cookies)
        assert other.status_code == 403
        assert problems == []
        context.close()
    finally:
        proc.stop()


def test_the_dashboard_lists_batches_with_their_progress(
    server: ServeProcess, upstream: FakeUpstream, browser: Any
) -> None:
    lines = "".join(json.dumps({"custom_id": f"c{i}", "url": "/v1/chat/completions",
                                "body": chat("r1")}) + "\n" for i in range(6))
    upstream.enqueue(Reply(), Reply(), *[Reply(delay_s=30) for _ in range(4)])
    with httpx.Client(base_url=server.url, timeout=10, headers=bearer(KEY_ALL)) as http:
        uploaded = http.post("/v1/files", data={"purpose": "batch"},
                             files={"file": ("in.jsonl", lines.encode())}).json()
        batch = http.post("/v1/batches", json={"input_file_id": uploaded["id"],
                                               "endpoint": "/v1/chat/completions"}).json()
        deadline = time.monotonic() + 10
        while http.get(f"/v1/batches/{batch['id']}").json()["request_counts"]["completed"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    context, page, problems = _signed_in(browser, server.url, ADMIN_KEY)
    try:
        page.click("nav button[data-panel=batches]")
        row = f"#batches-table tr[data-batch='{batch['id']}']"
        page.wait_for_selector(row)
        assert _text(page, f"{row} [data-field=status]") == "in_progress"
        assert _text(page, f"{row} [data-field=completed]") == "2"
        assert _text(page, f"{row} [data-field=total]") == "6"
        assert _text(page, f"{row} [data-field=progress]") == "33%"
        assert page.locator(f"{row} progress").get_attribute("value") == "2"
        assert problems == []
    finally:
        context.close()
    with httpx.Client(base_url=server.url, timeout=10, headers=bearer(KEY_ALL)) as http:
        http.post(f"/v1/batches/{batch['id']}/cancel")
