"""Jobs: a request sent with Prefer: respond-async is kept as a batch of one line.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False,
                                   server_default="batch"))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("kind")
