"""``modelport keys`` and ``modelport usage``, run as a user would: subprocesses against a
temporary config file whose store is a temporary SQLite file."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select

from modelport.store.keys import KeyStore
from modelport.store.tables import api_key_secrets, api_keys, requests
from tests.gateway import run_modelport as modelport
from tests.gateway import write_config

KEY_LINE = re.compile(r"^key: (mpk_[A-Za-z0-9]{40})$", re.M)
ID_LINE = re.compile(r"^id: +(key_[0-9a-f]{16})$", re.M)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder holding ``modelport.yaml`` (two routes in two environments) and its store."""
    write_config(tmp_path / "modelport.yaml", {
        "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
        "providers": {"p": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}},
        "routes": {
            "support-summary": {"targets": [{"provider": "p", "model": "m"}]},
            "playground": {"environment": "dev", "targets": [{"provider": "p", "model": "m"}]},
        },
    })
    return tmp_path


def create_key(workdir: Path, *args: str) -> tuple[str, str]:
    """Run ``keys create``; returns the key id and the key."""
    result = modelport(workdir, "keys", "create", *args)
    assert result.returncode == 0, result.stderr
    key_match, id_match = KEY_LINE.search(result.stdout), ID_LINE.search(result.stdout)
    assert key_match and id_match, result.stdout
    return id_match.group(1), key_match.group(1)


def list_json(workdir: Path) -> list[dict[str, Any]]:
    result = modelport(workdir, "keys", "list", "--json")
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def store_bytes(workdir: Path) -> bytes:
    """Every byte SQLite keeps for the store: the file and its WAL."""
    return b"".join(p.read_bytes() for p in sorted(workdir.glob("store.db*")))


def stored(workdir: Path, table: Any) -> list[Any]:
    engine = create_engine(f"sqlite:///{workdir / 'store.db'}")
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(table)))
    finally:
        engine.dispose()


# create


def test_create_prints_the_key_once_and_the_store_keeps_only_its_sha256(workdir: Path) -> None:
    result = modelport(workdir, "keys", "create", "support bot", "--route", "support-summary",
                       "--rpm", "60", "--budget-usd", "5")

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    [key] = re.findall(r"mpk_[A-Za-z0-9]{40}", output)
    id_match = ID_LINE.search(result.stdout)
    assert id_match is not None and KEY_LINE.search(result.stdout)
    assert "will not be shown again" in result.stderr
    [secret] = stored(workdir, api_key_secrets)
    assert secret.secret_hash == hashlib.sha256(key.encode()).hexdigest()
    assert secret.key_id == id_match.group(1)
    assert key.encode() not in store_bytes(workdir)
    assert key[12:].encode() not in store_bytes(workdir)  # not even the part after the prefix


def test_create_stores_the_limits_budget_routes_and_who_did_it(workdir: Path) -> None:
    key_id, key = create_key(workdir, "batch", "--environment", "dev", "--route", "playground",
                             "--tpm", "1000", "--max-concurrency", "2", "--budget-usd", "1.5",
                             "--budget-period", "day", "--expires-at", "2999-01-01T00:00:00Z")

    [row] = list_json(workdir)
    assert row["id"] == key_id and row["prefix"] == key[:12]
    assert (row["environment"], row["routes"], row["tpm"], row["max_concurrency"]) == (
        "dev", ["playground"], 1000, 2)
    assert (row["budget_usd"], row["budget_period"]) == (1.5, "day")
    assert row["expires_at"] == "2999-01-01T00:00:00+00:00"
    with KeyStore.open(f"sqlite:///{workdir / 'store.db'}") as store:
        [entry] = store.audit_entries()
    assert entry.action == "key.create" and entry.actor.startswith("cli:")


def test_a_budget_without_a_period_is_monthly(workdir: Path) -> None:
    create_key(workdir, "k", "--budget-usd", "0")

    [row] = list_json(workdir)
    assert (row["budget_usd"], row["budget_period"]) == (0.0, "month")


@pytest.mark.parametrize(("args", "message"), [
    (("--rpm", "0"), "Invalid value for '--rpm': 0 is not in the range"),
    (("--tpm", "-5"), "Invalid value for '--tpm'"),
    (("--max-concurrency", "0"), "Invalid value for '--max-concurrency'"),
    (("--rpm", "many"), "'many' is not a valid integer"),
    (("--budget-usd", "-1"), "Invalid value for '--budget-usd': must be a number of dollars"),
    (("--budget-usd", "nan"), "Invalid value for '--budget-usd': must be a number of dollars"),
    (("--budget-period", "day"), "--budget-period needs --budget-usd"),
    (("--budget-usd", "1", "--budget-period", "week"), "'week' is not one of 'day', 'month'"),
    (("--expires-at", "2001-01-01"), "Invalid value for '--expires-at': must be in the future"),
    (("--expires-at", "next tuesday"), "'next tuesday' is not an ISO 8601 time"),
    (("--environment", "staging"), "'staging' is not one of 'dev', 'test', 'prod'"),
    (("--route", "nope"), "unknown route 'nope' (in modelport.yaml)"),
    (("--route", "playground"), "route 'playground' is in environment 'dev', the key in 'prod'"),
])
def test_bad_create_input_exits_2_with_a_clear_message_and_creates_nothing(
    workdir: Path, args: tuple[str, ...], message: str
) -> None:
    result = modelport(workdir, "keys", "create", "k", *args)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "mpk_" not in result.stdout + result.stderr
    assert not (workdir / "store.db").exists() or stored(workdir, api_keys) == []


def test_a_blank_name_is_refused(workdir: Path) -> None:
    result = modelport(workdir, "keys", "create", "  ")

    assert result.returncode == 2 and "Invalid value for 'NAME'" in result.stderr


def test_a_missing_config_file_is_reported_as_serve_reports_it(tmp_path: Path) -> None:
    result = modelport(tmp_path, "keys", "list", "--config", "modelport.yaml")

    assert result.returncode == 2
    assert "modelport.yaml: file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_without_any_config_the_offline_default_store_is_used(tmp_path: Path) -> None:
    result = modelport(tmp_path, "keys", "list")

    assert result.returncode == 0, result.stderr
    assert "No keys yet" in result.stdout
    assert (tmp_path / ".modelport" / "modelport.db").exists()


def test_an_unusable_store_url_exits_2_naming_store_url(tmp_path: Path) -> None:
    write_config(tmp_path / "other.yaml", {"store": {"url": "nosuchdb://x"}})

    result = modelport(tmp_path, "keys", "list", "--config", "other.yaml")

    assert result.returncode == 2 and "store.url" in result.stderr
    assert "Traceback" not in result.stderr


# list


def test_list_shows_every_key_with_its_prefix_and_never_a_secret(workdir: Path) -> None:
    first_id, first = create_key(workdir, "first", "--rpm", "10")
    second_id, second = create_key(workdir, "second", "--budget-usd", "3")

    table = modelport(workdir, "keys", "list")
    as_json = modelport(workdir, "keys", "list", "--json")

    assert table.returncode == 0, table.stderr
    for output in (table.stdout, as_json.stdout):
        assert first not in output and second not in output
        assert first[:12] in output and second[:12] in output
        assert "hash" not in output
    header, *lines = table.stdout.splitlines()
    assert header.split()[:4] == ["ID", "NAME", "PREFIX", "ENV"]
    assert "LAST USED" in header
    assert [line.split()[0] for line in lines] == [first_id, second_id]
    assert "rpm=10" in lines[0] and "$3.00/month" in lines[1]


def test_list_says_so_when_there_are_no_keys(workdir: Path) -> None:
    result = modelport(workdir, "keys", "list")

    assert result.returncode == 0 and "No keys yet" in result.stdout


# revoke and rotate


def test_revoke_marks_the_key_revoked_and_a_second_revoke_says_so(workdir: Path) -> None:
    key_id, _ = create_key(workdir, "k")

    first = modelport(workdir, "keys", "revoke", key_id)
    second = modelport(workdir, "keys", "revoke", key_id)

    assert first.returncode == 0 and f"Revoked {key_id}" in first.stdout
    assert second.returncode == 0 and "was already revoked" in second.stdout
    [row] = list_json(workdir)
    assert row["revoked_at"] is not None


def test_rotate_prints_a_new_key_once_and_the_old_one_keeps_its_grace(workdir: Path) -> None:
    key_id, old = create_key(workdir, "k")

    result = modelport(workdir, "keys", "rotate", key_id, "--grace-seconds", "3600")

    assert result.returncode == 0, result.stderr
    [new] = re.findall(r"mpk_[A-Za-z0-9]{40}", result.stdout + result.stderr)
    assert new != old and ID_LINE.search(result.stdout)
    hashes = {r.secret_hash: r.expires_at for r in stored(workdir, api_key_secrets)}
    new_hash, old_hash = (hashlib.sha256(k.encode()).hexdigest() for k in (new, old))
    assert set(hashes) == {old_hash, new_hash} and hashes[new_hash] is None
    grace_left = hashes[old_hash].replace(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(minutes=55) < grace_left <= timedelta(hours=1)
    assert new.encode() not in store_bytes(workdir)
    assert list_json(workdir)[0]["prefix"] == new[:12]


def test_rotate_without_grace_ends_the_old_secret_now(workdir: Path) -> None:
    key_id, old = create_key(workdir, "k")

    result = modelport(workdir, "keys", "rotate", key_id)

    assert result.returncode == 0, result.stderr
    assert "stops working now" in result.stderr
    old_hash = hashlib.sha256(old.encode()).hexdigest()
    [expires] = [r.expires_at for r in stored(workdir, api_key_secrets)
                 if r.secret_hash == old_hash]
    assert expires.replace(tzinfo=UTC) <= datetime.now(UTC)


def test_rotating_a_revoked_key_exits_1_and_prints_no_key(workdir: Path) -> None:
    key_id, _ = create_key(workdir, "k")
    modelport(workdir, "keys", "revoke", key_id)

    result = modelport(workdir, "keys", "rotate", key_id)

    assert result.returncode == 1
    assert f"cannot rotate the revoked key '{key_id}'" in result.stderr
    assert "mpk_" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", ["revoke", "rotate"])
def test_an_unknown_key_id_exits_1_with_a_clear_message(workdir: Path, command: str) -> None:
    result = modelport(workdir, "keys", command, "key_0000000000000000")

    assert result.returncode == 1
    assert "no key with id 'key_0000000000000000'" in result.stderr
    assert "Traceback" not in result.stderr


def test_rotate_refuses_a_negative_grace(workdir: Path) -> None:
    key_id, _ = create_key(workdir, "k")

    result = modelport(workdir, "keys", "rotate", key_id, "--grace-seconds", "-1")

    assert result.returncode == 2 and "Invalid value for '--grace-seconds'" in result.stderr


# usage


def add_requests(workdir: Path, *rows: tuple[str | None, str, float]) -> None:
    """Ledger rows made now, as (key id, route, cost)."""
    engine = create_engine(f"sqlite:///{workdir / 'store.db'}")
    now = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(insert(requests), [{
                "request_id": f"r{i}", "created_at": now, "method": "POST",
                "path": "/v1/chat/completions", "route": route, "status": 200, "operation": "chat",
                "latency_ms": 1.0, "upstream_ms": 1.0, "overhead_ms": 0.0,
                "prompt_tokens": 100, "completion_tokens": 20, "config_version": "v",
                "stream": False, "client_disconnected": False, "key_id": key_id,
                "cost_usd": cost,
            } for i, (key_id, route, cost) in enumerate(rows)])
    finally:
        engine.dispose()


def test_usage_reports_requests_tokens_and_cost_per_key_with_key_names(workdir: Path) -> None:
    key_id, _ = create_key(workdir, "support bot")
    add_requests(workdir, (key_id, "support-summary", 0.5), (key_id, "support-summary", 0.25),
                 (None, "support-summary", 0.0))

    table = modelport(workdir, "usage", "--by", "key", "--period", "day")
    as_json = modelport(workdir, "usage", "--by", "key", "--period", "month", "--json")

    assert table.returncode == 0, table.stderr
    assert "Usage by key since" in table.stdout
    [line] = [line for line in table.stdout.splitlines() if line.startswith(key_id)]
    assert line.split() == [key_id, "support", "bot", "2", "200", "40", "0.7500"]
    report = json.loads(as_json.stdout)
    assert (report["by"], report["period"]) == ("key", "month")
    assert report["rows"][0] == {"group": key_id, "name": "support bot", "requests": 2,
                                 "prompt_tokens": 200, "completion_tokens": 40,
                                 "cost_usd": 0.75}
    assert report["rows"][1]["group"] is None


def test_usage_by_route_and_an_empty_period(workdir: Path) -> None:
    empty = modelport(workdir, "usage", "--by", "route", "--period", "month")
    key_id, _ = create_key(workdir, "k")
    add_requests(workdir, (key_id, "support-summary", 0.1), (key_id, "playground", 0.2))

    result = modelport(workdir, "usage", "--by", "route", "--period", "month")

    assert empty.returncode == 0 and "No requests in this period." in empty.stdout
    assert result.returncode == 0, result.stderr
    routes = [line.split()[0] for line in result.stdout.splitlines()[2:]]
    assert routes == ["playground", "support-summary"]
