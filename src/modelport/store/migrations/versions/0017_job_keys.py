"""A queued request's Idempotency-Key: the same key from the same caller finds its job.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(320), nullable=True))
    op.create_index("uq_batches_idempotency_key", "batches", ["idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_batches_idempotency_key", "batches")
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("idempotency_key")
