"""Batches: uploaded files, batches and their lines; the ledger names a line's batch.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

UtcDateTime = sa.DateTime(timezone=True)

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(256), nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("lines", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("batch_id", sa.String(40), nullable=True),
        sa.Column("errors_only", sa.Boolean, nullable=False),
    )
    op.create_index("ix_files_key_created", "files", ["key_id", "created_at"])
    op.create_table(
        "file_chunks",
        sa.Column("file_id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("input_file_id", sa.String(40), nullable=False),
        sa.Column("completion_window", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("paused_reason", sa.Text, nullable=True),
        sa.Column("metadata", sa.Text, nullable=True),
        sa.Column("total", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
        *(sa.Column(f"{stage}_at", UtcDateTime, nullable=True)
          for stage in ("in_progress", "finalizing", "completed", "cancelling", "cancelled",
                        "expired")),
        sa.Column("output_file_id", sa.String(40), nullable=True),
        sa.Column("error_file_id", sa.String(40), nullable=True),
    )
    op.create_index("ix_batches_status", "batches", ["status"])
    op.create_index("ix_batches_key_created", "batches", ["key_id", "created_at"])
    op.create_table(
        "batch_lines",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(40), nullable=False),
        sa.Column("line_no", sa.Integer, nullable=False),
        sa.Column("custom_id", sa.String(512), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("not_before", sa.Float, nullable=False),
        sa.Column("output", sa.Text, nullable=True),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.UniqueConstraint("batch_id", "line_no", name="uq_batch_lines_line"),
    )
    op.create_index("ix_batch_lines_batch_status", "batch_lines", ["batch_id", "status"])
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(40)))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("batch_id")
    for table in ("batch_lines", "batches", "file_chunks", "files"):
        op.drop_table(table)
