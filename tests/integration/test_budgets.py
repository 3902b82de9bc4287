"""Cost and budgets over real HTTP: the cost header, spending refused once a key's budget is
used, the overshoot bound under concurrency, budgets surviving a restart, and the admin
usage report read back from the ledger."""

from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.upstream import FakeUpstream, Reply
from tests.integration.access_setup import (
    ADMIN_KEY,
    KEY_ALL,
    Keyed,
    bearer,
    keyed_gateway,
)
from tests.integration.test_limits import burst, eventually, statuses

gateway_at = contextmanager(keyed_gateway)

# The fake upstream's default answer uses 7 prompt and 3 completion tokens; r1 costs $2 and
# $10 per million. "hello there" is estimated at 11 // 4 + 4 + 1 = 7 prompt tokens, so with
# max_tokens=3 the estimate of an r1 call equals its actual cost.
R1_CALL_USD = (7 * 2.0 + 3 * 10.0) / 1e6
COST = "x-modelport-cost-usd"


def estimate_usd(max_tokens: int) -> float:
    return (7 * 2.0 + max_tokens * 10.0) / 1e6


def seconds_to_next_month() -> float:
    now = datetime.now(UTC)
    nxt = (now.replace(year=now.year + 1, month=1) if now.month == 12
           else now.replace(month=now.month + 1))
    start = nxt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (start - now).total_seconds()


def seconds_to_midnight() -> float:
    now = datetime.now(UTC)
    return 86_400 - (now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6)


def assert_budget_exceeded(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    error = r.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["type"] == "rate_limit_error"
    assert COST not in r.headers


def usage(keyed: Keyed, **params: str) -> httpx.Response:
    return keyed.client.get("/admin/usage", params=params, headers=bearer(ADMIN_KEY))


def usage_row(keyed: Keyed, by: str, group: str, requests: int) -> dict[str, Any]:
    """The report's row for ``group`` once the ledger has flushed ``requests`` of them."""

    def probe() -> dict[str, Any] | None:
        r = usage(keyed, by=by, period="month")
        assert r.status_code == 200, r.text
        rows = [row for row in r.json()["data"] if row[by] == group]
        return rows[0] if rows and rows[0]["requests"] >= requests else None

    return eventually(probe)


def test_a_priced_route_reports_the_cost_of_the_call(keyed: Keyed) -> None:
    r = keyed.call("r1", KEY_ALL)
    assert r.status_code == 200
    assert r.headers[COST] == f"{R1_CALL_USD:.6f}" == "0.000044"


def test_an_unpriced_route_reports_zero_cost(keyed: Keyed) -> None:
    r = keyed.call("r2", KEY_ALL)
    assert r.status_code == 200
    assert r.headers[COST] == "0.000000"


def test_a_budget_spent_by_one_call_refuses_later_calls_until_the_period_ends(
    keyed: Keyed,
) -> None:
    made = keyed.create_key(budget_usd=R1_CALL_USD * 1.5)
    assert keyed.call("r1", made["key"], max_tokens=3).status_code == 200
    for _ in range(2):
        r = keyed.call("r1", made["key"], max_tokens=3)
        assert_budget_exceeded(r)
        assert int(r.headers["retry-after"]) == pytest.approx(seconds_to_next_month(), abs=5)
    # an unpriced route costs nothing, so it is still served
    assert keyed.call("r2", made["key"], max_tokens=3).status_code == 200
    assert len(keyed.upstream.requests) == 2
    row = usage_row(keyed, "key", made["id"], 1)
    assert row["cost_usd"] == pytest.approx(R1_CALL_USD)


def test_a_call_whose_estimate_does_not_fit_the_budget_is_refused_up_front(
    keyed: Keyed,
) -> None:
    made = keyed.create_key(budget_usd=0.001)
    # max_tokens=256 costs up to 7 * $2 + 256 * $10 per million = $0.002574 > $0.001
    assert_budget_exceeded(keyed.call("r1", made["key"], max_tokens=256))
    assert keyed.call("r1", made["key"], max_tokens=3).status_code == 200
    assert keyed.upstream.requests[0].body["max_tokens"] == 3


def test_a_budgeted_call_without_a_limit_gets_the_completion_the_budget_can_pay(
    keyed: Keyed,
) -> None:
    """No max_tokens under a budget: Modelport sets it to what the headroom pays for after
    the prompt, $0.001 - 7 * $2 / 1M = $0.000986 at $10 / 1M, so 98 tokens."""
    made = keyed.create_key(budget_usd=0.001)
    assert keyed.call("r1", made["key"]).status_code == 200
    assert keyed.upstream.requests[0].body["max_tokens"] == 98
    unbudgeted = keyed.call("r1", KEY_ALL)  # no budget: the request is left as it came
    assert unbudgeted.status_code == 200
    assert "max_tokens" not in keyed.upstream.requests[1].body


def test_concurrent_unlimited_calls_can_never_commit_more_than_the_budget(keyed: Keyed) -> None:
    """Nine at once with no max_tokens: what each may cost at most (its prompt and the
    max_tokens it was given) adds up to no more than the budget, so a provider that uses
    every token it was allowed still cannot overshoot it."""
    budget = 0.001
    made = keyed.create_key(budget_usd=budget)
    for _ in range(9):  # slow answers: all nine are in flight before any is settled
        keyed.upstream.enqueue(Reply(delay_s=0.3))
    responses = burst(keyed.gateway.url, 9, made["key"])
    served = [r for r in responses if r.status_code == 200]
    assert served
    worst = sum((7 * 2.0 + seen.body["max_tokens"] * 10.0) / 1e6
                for seen in keyed.upstream.requests)
    assert len(keyed.upstream.requests) == len(served)
    assert worst <= budget + 1e-9


def test_a_zero_budget_in_the_config_refuses_every_priced_call_for_a_day(
    tmp_path: Path, upstream: FakeUpstream, sqlite_url: str
) -> None:
    keys = {"all-prod": {"key": "env:KEY_ALL", "budget_usd": 0, "budget_period": "day"}}
    with gateway_at(tmp_path, upstream, sqlite_url, keys=keys) as keyed:
        r = keyed.call("r1", KEY_ALL, max_tokens=3)
        assert_budget_exceeded(r)
        assert int(r.headers["retry-after"]) == pytest.approx(seconds_to_midnight(), abs=5)
        assert upstream.requests == []


def test_a_call_refused_for_its_budget_takes_nothing_from_the_rate_limits(
    keyed: Keyed,
) -> None:
    made = keyed.create_key(rpm=2, budget_usd=R1_CALL_USD * 1.5)
    assert keyed.call("r1", made["key"], max_tokens=3).status_code == 200
    assert_budget_exceeded(keyed.call("r1", made["key"], max_tokens=3))
    # one request of two used: a free route is still within the key's rpm
    r = keyed.call("r2", made["key"], max_tokens=3)
    assert r.status_code == 200, r.text


def test_a_call_refused_for_its_budget_gives_back_its_tokens_and_slot(keyed: Keyed) -> None:
    made = keyed.create_key(tpm=1000, max_concurrency=1, budget_usd=R1_CALL_USD * 1.5)
    first = keyed.call("r1", made["key"], max_tokens=3)
    assert first.status_code == 200
    assert_budget_exceeded(keyed.call("r1", made["key"], max_tokens=500))
    free = keyed.call("r2", made["key"], max_tokens=3)  # estimated at 10 tokens, uses 10
    assert free.status_code == 200, "the refused call kept its concurrency slot"
    # 1000 - 10 (first) - 10 (this one): the refused estimate of 507 came back
    assert int(free.headers["x-ratelimit-remaining-tokens"]) >= 980


def test_concurrent_calls_with_exact_estimates_never_pass_the_budget(keyed: Keyed) -> None:
    budget = 0.00023  # room for 5 calls of $0.000044, not 6
    made = keyed.create_key(budget_usd=budget)
    responses = burst(keyed.gateway.url, 20, made["key"], max_tokens=3)
    assert statuses(responses) == {200: 5, 429: 15}
    charged = sum(float(r.headers[COST]) for r in responses if r.status_code == 200)
    assert charged <= budget
    for r in responses:
        if r.status_code == 429:
            assert_budget_exceeded(r)
    assert len(keyed.upstream.requests) == 5


def test_concurrent_overshoot_is_bounded_by_what_estimates_missed(keyed: Keyed) -> None:
    budget = 0.0001
    estimated = estimate_usd(max_tokens=1)  # $0.000024, but each call costs $0.000044
    made = keyed.create_key(budget_usd=budget)
    responses = burst(keyed.gateway.url, 20, made["key"], max_tokens=1)
    costs = [float(r.headers[COST]) for r in responses if r.status_code == 200]
    missed = sum(max(0.0, c - estimated) for c in costs)
    assert sum(costs) <= budget + missed + 1e-9
    # reserved together: 4 fit (0.000096); one at a time: 2 (0.000044, then 0.000088)
    assert 2 <= len(costs) <= 4
    assert len(keyed.upstream.requests) == len(costs)
    assert_budget_exceeded(keyed.call("r1", made["key"], max_tokens=1))


def test_a_stream_is_charged_to_the_budget_when_it_ends(keyed: Keyed) -> None:
    made = keyed.create_key(budget_usd=R1_CALL_USD * 1.5)
    r = keyed.call("r1", made["key"], max_tokens=3, stream=True)
    assert r.status_code == 200 and r.text.rstrip().endswith("data: [DONE]")
    assert_budget_exceeded(keyed.call("r1", made["key"], max_tokens=3))
    # the fake stream reports 5 prompt and 4 completion tokens
    row = usage_row(keyed, "key", made["id"], 1)
    assert row["cost_usd"] == pytest.approx((5 * 2.0 + 4 * 10.0) / 1e6)


def test_spending_survives_a_restart_of_the_gateway(
    tmp_path: Path, upstream: FakeUpstream, sqlite_url: str
) -> None:
    with gateway_at(tmp_path, upstream, sqlite_url) as keyed:
        made = keyed.create_key(budget_usd=R1_CALL_USD * 1.5)
        assert keyed.call("r1", made["key"], max_tokens=3).status_code == 200
        usage_row(keyed, "key", made["id"], 1)
    with gateway_at(tmp_path, upstream, sqlite_url) as keyed:
        assert_budget_exceeded(keyed.call("r1", made["key"], max_tokens=3))
    assert len(upstream.requests) == 1


def test_usage_by_key_reports_requests_tokens_and_cost(keyed: Keyed) -> None:
    made = keyed.create_key()
    for route in ("r1", "r1", "r2"):
        assert keyed.call(route, made["key"]).status_code == 200
    assert keyed.call("r1", KEY_ALL).status_code == 200
    row = usage_row(keyed, "key", made["id"], 3)
    assert row == {"key": made["id"], "requests": 3, "prompt_tokens": 21,
                   "completion_tokens": 9, "cost_usd": pytest.approx(2 * R1_CALL_USD)}
    other = usage_row(keyed, "key", "cfg_all-prod", 1)
    assert other["requests"] == 1 and other["cost_usd"] == pytest.approx(R1_CALL_USD)
    body = usage(keyed, by="key", period="month").json()
    assert body["by"] == "key" and body["period"] == "month"
    assert datetime.fromisoformat(body["since"]).day == 1


def test_usage_by_route_reports_each_route(keyed: Keyed) -> None:
    for route in ("r1", "r2", "r2"):
        assert keyed.call(route, KEY_ALL).status_code == 200
    r1 = usage_row(keyed, "route", "r1", 1)
    r2 = usage_row(keyed, "route", "r2", 2)
    assert r1["requests"] == 1 and r1["cost_usd"] == pytest.approx(R1_CALL_USD)
    assert r2["requests"] == 2 and r2["cost_usd"] == 0
    assert r2["prompt_tokens"] == 14 and r2["completion_tokens"] == 6
    assert usage(keyed, by="route", period="day").status_code == 200


def test_usage_report_rejects_unknown_groupings_and_periods(keyed: Keyed) -> None:
    for params, param in (({"by": "nonsense"}, "by"), ({"period": "year"}, "period"),
                          ({"by": "key", "period": "year"}, "period")):
        r = usage(keyed, **params)
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["param"] == param and param in error["message"]
        assert set(error) == {"message", "type", "param", "code"}


def test_usage_report_needs_the_admin_key(keyed: Keyed) -> None:
    assert keyed.client.get("/admin/usage", headers=bearer(KEY_ALL)).status_code == 401
    assert keyed.client.get("/admin/usage").status_code == 401


def test_usage_report_is_empty_before_any_request(keyed: Keyed) -> None:
    r = usage(keyed, by="key", period="month")
    assert r.status_code == 200 and r.json()["data"] == []


def test_budgets_and_spend_are_exported_per_key_id(keyed: Keyed) -> None:
    made = keyed.create_key(budget_usd=0.5)
    assert keyed.call("r1", made["key"], max_tokens=3).status_code == 200
    text = keyed.client.get("/metrics", headers=bearer(ADMIN_KEY)).text
    assert f'modelport_key_budget_usd{{key="{made["id"]}"}} 0.5' in text
    spent = re.search(rf'modelport_key_budget_spent_usd{{key="{made["id"]}"}} (\S+)', text)
    assert spent is not None and float(spent.group(1)) == pytest.approx(R1_CALL_USD)
    assert made["key"] not in text


def test_answers_without_usage_are_charged_an_estimate_and_say_so(keyed: Keyed) -> None:
    """A provider that reports no usage does not serve for free: the prompt as admitted and
    the answer's text are charged, and the ledger row is marked estimated."""
    answer = {"id": "x", "object": "chat.completion", "choices": [{
        "index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "Hello from the fake"}}]}
    per_call = (7 * 2.0 + (len("Hello from the fake") // 4 + 1) * 10.0) / 1e6
    made = keyed.create_key(budget_usd=per_call * 4)
    served = 0
    for _ in range(20):
        keyed.upstream.enqueue(Reply(body=answer))
        r = keyed.call("r1", made["key"], max_tokens=3)
        if r.status_code == 200:
            served += 1
            assert r.headers[COST] == f"{per_call:.6f}"
        else:
            assert_budget_exceeded(r)
    assert 3 <= served <= 5

    def ledger() -> list[dict[str, Any]] | None:
        rows = keyed.client.get("/admin/requests", headers=bearer(ADMIN_KEY),
                                params={"key": made["id"], "status": "200"})
        assert rows.status_code == 200, rows.text
        return rows.json()["data"] if len(rows.json()["data"]) == served else None

    assert all(row["usage_estimated"] and row["completion_tokens"] == 5
               for row in eventually(ledger))
