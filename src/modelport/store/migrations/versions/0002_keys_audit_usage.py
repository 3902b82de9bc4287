"""API keys with their secret hashes, the audit log, the store revision, and the ledger
columns that usage reports and budgets read (key, environment, cost).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("environment", sa.String(16), nullable=False),
        sa.Column("routes", sa.Text),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("max_concurrency", sa.Integer),
        sa.Column("budget_usd", sa.Float),
        sa.Column("budget_period", sa.String(8)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "api_key_secrets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.String(32), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("secret_hash", name="uq_api_key_secrets_secret_hash"),
    )
    op.create_index("ix_api_key_secrets_key_id", "api_key_secrets", ["key_id"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64)),
        sa.Column("detail", sa.Text),
        sa.Column("client", sa.String(64)),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    revision_table = op.create_table(
        "store_revision",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(revision_table, [{"id": 1, "revision": 0}])

    # plain nullable columns: no table rewrite on either SQLite or PostgreSQL
    op.add_column("requests", sa.Column("key_id", sa.String(32)))
    op.add_column("requests", sa.Column("environment", sa.String(16)))
    op.add_column("requests", sa.Column("cost_usd", sa.Float))
    op.create_index("ix_requests_key_id_created_at", "requests", ["key_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_requests_key_id_created_at", table_name="requests")
    with op.batch_alter_table("requests") as batch:  # SQLite drops columns by copying
        batch.drop_column("cost_usd")
        batch.drop_column("environment")
        batch.drop_column("key_id")
    op.drop_table("store_revision")
    op.drop_table("audit_log")
    op.drop_table("api_key_secrets")
    op.drop_table("api_keys")
