"""make_engine and migrate: the store's folder and schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from modelport.store.engine import make_engine, migrate


def test_make_engine_creates_the_sqlite_folder(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "deeper" / "ledger.db"

    engine = make_engine(f"sqlite:///{db}")
    try:
        assert db.parent.is_dir()
    finally:
        engine.dispose()


def test_make_engine_maps_plain_postgresql_urls_to_psycopg3() -> None:
    pytest.importorskip("psycopg")

    engine = make_engine("postgresql://user:pw@127.0.0.1:1/db")
    try:
        assert engine.url.drivername == "postgresql+psycopg"
    finally:
        engine.dispose()


def test_migrate_creates_the_requests_table_with_its_indexes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        migrate(engine)

        inspector = inspect(engine)
        assert "requests" in inspector.get_table_names()
        columns = {c["name"] for c in inspector.get_columns("requests")}
        assert {
            "request_id",
            "created_at",
            "route",
            "target",
            "status",
            "config_version",
            "prompt_tokens",
            "completion_tokens",
            "latency_ms",
        } <= columns
        indexes = {i["name"] for i in inspector.get_indexes("requests")}
        assert indexes == {
            "ix_requests_request_id",
            "ix_requests_created_at",
            "ix_requests_route_created_at",
            "ix_requests_key_id_created_at",
        }
    finally:
        engine.dispose()


def test_migrate_twice_is_harmless(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        migrate(engine)
        migrate(engine)

        inspector = inspect(engine)
        assert sorted(inspector.get_table_names()) == [
            "alembic_version", "api_key_secrets", "api_keys", "audit_log", "batch_lines",
            "batches", "canaries", "config_versions", "feedback", "file_chunks", "files",
            "requests", "reviews", "store_revision", "switches",
        ]
    finally:
        engine.dispose()
