"""The SQL schema, as SQLAlchemy Core tables. Migrations in ``migrations/`` create it."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
)

metadata = MetaData()

requests = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", String(256), nullable=False),
    Column("operation", String(32)),
    Column("route", String(256)),
    Column("target", String(512)),
    Column("stream", Boolean, nullable=False, default=False),
    Column("status", Integer, nullable=False),
    Column("error_code", String(64)),
    Column("latency_ms", Float, nullable=False),
    Column("upstream_ms", Float, nullable=False),
    Column("overhead_ms", Float, nullable=False),
    Column("first_chunk_ms", Float),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("config_version", String(32), nullable=False),
    Column("client_disconnected", Boolean, nullable=False, default=False),
    Column("request_body", LargeBinary),
    Column("response_body", LargeBinary),
    Index("ix_requests_request_id", "request_id"),
    Index("ix_requests_created_at", "created_at"),
    Index("ix_requests_route_created_at", "route", "created_at"),
)
