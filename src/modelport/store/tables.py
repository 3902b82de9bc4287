"""The SQL schema, as SQLAlchemy Core tables. Migrations in ``migrations/`` create it.

Every timestamp column is ``UtcDateTime``: it refuses naive datetimes on the way in and
hands back aware UTC ones on the way out, so SQLite (which keeps no zone) and PostgreSQL
(``timestamptz``) read back the same values.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores UTC and always returns aware UTC values."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: store only timezone-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


metadata = MetaData()

requests = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
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
    Column("key_id", String(32)),
    Column("environment", String(16)),
    Column("cost_usd", Float),
    Column("attempts", Integer),
    Column("attempt_log", Text),  # JSON list of {target, status, error_class, ms}; only when
    # a request took more than one call or failed
    Column("model_version", String(256)),  # the answering target's model version
    Column("queue_ms", Float),  # time spent waiting for a target's admission slot
    Column("usage_estimated", Boolean),  # the provider reported no usage: tokens are a guess
    Column("prompt_version", String(128)),  # the route's prompt that was put before the request
    Column("shadow_of", String(128)),  # a shadow call: the id of the request it copied
    Column("shadow_match", Boolean),  # its answer's text was the served one's, exactly
    Column("validation", String(16)),  # the output contract's verdict: passed, repaired, failed
    Column("guards", String(200)),  # input guards: masked:email=2 or blocked:keyword=1
    Column("batch_id", String(40)),  # a batch line's request: its batch
    Index("ix_requests_request_id", "request_id"),
    Index("ix_requests_created_at", "created_at"),
    Index("ix_requests_route_created_at", "route", "created_at"),
    Index("ix_requests_key_id_created_at", "key_id", "created_at"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False),
    Column("key_id", String(32)),
    Column("route", String(256)),
    Column("model_version", String(256)),
    Column("outcome", String(16), nullable=False),  # accepted, edited, rejected
    Column("score", Float),
    Column("correction", Text),
    Column("comment", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_feedback_request_id", "request_id"),
    Index("ix_feedback_route_created_at", "route", "created_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("environment", String(16), nullable=False),
    Column("routes", Text),  # a JSON list of route names; NULL: every route of the environment
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("max_concurrency", Integer),
    Column("budget_usd", Float),
    Column("budget_period", String(8)),  # "day" or "month"
    Column("priority", String(16), nullable=False, server_default="interactive"),
    Column("role", String(16), nullable=False, server_default="caller"),
    Column("tools", Text, nullable=True),  # JSON {"allow": [...] or null, "deny": [...]}
    Column("expires_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime),
)

api_key_secrets = Table(
    "api_key_secrets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_id", String(32), ForeignKey("api_keys.id"), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),  # set on the old secret by a rotation
    UniqueConstraint("secret_hash", name="uq_api_key_secrets_secret_hash"),
    Index("ix_api_key_secrets_key_id", "key_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(64)),
    Column("detail", Text),  # a JSON object
    Column("client", String(64)),
    Index("ix_audit_log_at", "at"),
)

store_revision = Table(
    "store_revision",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", BigInteger, nullable=False),
)

# Canaries a server rolled back or an operator promoted or aborted; none: running as configured
canaries = Table(
    "canaries",
    metadata,
    Column("route", String(200), primary_key=True),
    Column("target", String(400), nullable=False),  # the canary target's label
    Column("state", String(16), nullable=False),  # rolled_back, promoted, aborted
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

# Kill switches that are off: one row per (scope, name); turning one back on deletes its row.
switches = Table(
    "switches",
    metadata,
    Column("scope", String(16), primary_key=True),  # all, route, model, provider, key
    Column("name", String(200), primary_key=True),  # "" for scope all
    Column("behaviour", String(16), nullable=False),  # refuse, answer, fallback
    Column("message", Text, nullable=False),  # refuse: the error's message; answer: the text
    Column("fallback_route", String(200)),
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# Every configuration applied to a server, one immutable row per application: the config as
# written (its secrets are references, never values), who applied it, how and why. A row's id
# is the number `modelport config history` shows; ``config_version`` is the content hash that
# every response and ledger row names.
config_versions = Table(
    "config_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("config_version", String(32), nullable=False),
    Column("text", Text, nullable=False),
    Column("action", String(16), nullable=False),  # start, apply, rollback, signal
    Column("source", String(400), nullable=False),  # the file, or "admin api"
    Column("reason", Text, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("client", String(200), nullable=True),
    Column("restores", Integer, nullable=True),  # a rollback: the id it brought back
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_config_versions_hash", "config_version"),
)

# The review queue: answers held for a person, and their decisions (store/reviews.py).
reviews = Table(
    "reviews",
    metadata,
    Column("id", String(40), primary_key=True),  # rev_<24 hex>
    Column("created_at", UtcDateTime, nullable=False),
    Column("route", String(200), nullable=False),
    Column("key_id", String(64), nullable=True),
    Column("request_id", String(128), nullable=False),
    Column("model_version", String(256), nullable=True),
    Column("reason", Text, nullable=False),  # always, sample, or the contract's problem
    Column("status", String(16), nullable=False),  # pending, approved, rejected
    Column("request", Text, nullable=False),  # the request as sent to the model
    Column("answer", Text, nullable=False),  # the answer; the edit, once approved with one
    Column("edited", Boolean, nullable=False),
    Column("original", Text, nullable=True),  # the model's answer, when it was edited
    Column("decided_at", UtcDateTime, nullable=True),
    Column("decided_by", String(200), nullable=True),
    Column("decision_reason", Text, nullable=False),
    Index("ix_reviews_status_created", "status", "created_at"),
)

# Files uploaded over the Files API (``purpose: batch``) and the output and error files of
# finished batches (``batch_output``). An uploaded file's bytes are kept, as sent, in
# ``file_chunks``; an output file's lines are the ``output`` of its batch's lines.
files = Table(
    "files",
    metadata,
    Column("id", String(40), primary_key=True),  # file-<24 hex>
    Column("key_id", String(64), nullable=True),  # the key that owns it; NULL in open mode
    Column("purpose", String(32), nullable=False),  # batch, batch_output
    Column("filename", String(256), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("lines", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("batch_id", String(40), nullable=True),  # an output or error file: its batch
    Column("errors_only", Boolean, nullable=False, default=False),  # the batch's error file
    Index("ix_files_key_created", "key_id", "created_at"),
)

file_chunks = Table(
    "file_chunks",
    metadata,
    Column("file_id", String(40), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),  # at most 1 MiB, whole lines only
)

# Batches and their lines (store/batches.py). A line is pending, running (leased by one
# server until ``lease_until``), or finished with its output line; the counts a batch
# reports are counted from its lines, so they are always current and never drift.
batches = Table(
    "batches",
    metadata,
    Column("id", String(40), primary_key=True),  # batch_<24 hex>
    Column("kind", String(8), nullable=False, server_default="batch"),  # job: one request
    Column("key_id", String(64), nullable=True),
    Column("endpoint", String(64), nullable=False),
    Column("input_file_id", String(40), nullable=False),
    Column("completion_window", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("paused_reason", Text, nullable=True),  # a paused batch: why (a budget ran out)
    Column("metadata", Text, nullable=True),  # the caller's JSON object
    Column("total", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("in_progress_at", UtcDateTime, nullable=True),
    Column("finalizing_at", UtcDateTime, nullable=True),
    Column("completed_at", UtcDateTime, nullable=True),
    Column("cancelling_at", UtcDateTime, nullable=True),
    Column("cancelled_at", UtcDateTime, nullable=True),
    Column("expired_at", UtcDateTime, nullable=True),
    Column("output_file_id", String(40), nullable=True),
    Column("error_file_id", String(40), nullable=True),
    # a job's Idempotency-Key, as "<key id>:<key>": the same caller's repeat finds it
    Column("idempotency_key", String(320), nullable=True),
    Index("ix_batches_status", "status"),
    Index("uq_batches_idempotency_key", "idempotency_key", unique=True),
    Index("ix_batches_key_created", "key_id", "created_at"),
)

batch_lines = Table(
    "batch_lines",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(40), nullable=False),
    Column("line_no", Integer, nullable=False),  # 1-based, as in the input file
    Column("custom_id", String(512), nullable=False),
    Column("body", Text, nullable=False),  # the request's JSON body
    Column("status", String(16), nullable=False),  # pending, running, done, failed
    Column("tries", Integer, nullable=False, default=0),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),  # epoch seconds
    Column("not_before", Float, nullable=False, default=0.0),  # epoch seconds
    Column("output", Text, nullable=True),  # the output (or error) file's line, once finished
    Column("finished_at", UtcDateTime, nullable=True),
    UniqueConstraint("batch_id", "line_no", name="uq_batch_lines_line"),
    Index("ix_batch_lines_batch_status", "batch_id", "status"),
)
